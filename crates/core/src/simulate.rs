//! Synthetic mailings with a known pass-along R.
//!
//! Each campaign is one send of `recipients` mails at `start`. Every recipient
//! clicks with probability `click_through`, after a Gamma response delay
//! (mean 30 min, sd 30 min). Every clicker forwards the mail with probability
//! `p_forward(t)`, one forward to `1 + Geometric` addressees (mean
//! `addressees`, raised where R would need `p_forward` above 0.8), after a delay of `1 min + Gamma(1, 6.25 min)`; each
//! addressee clicks with probability `forward_click_through` after a further
//! `Gamma(1.56, 6.25 min)`. The click → offspring-click delay is therefore
//! `1 min + Gamma(2.56, 6.25 min)`: mean 17 min, sd 10 min — exactly the
//! offset Gamma that EpiEstim's `discr_si(k, 17, 10)` discretises.
//!
//! The true reproduction number of a clicker is
//! `R = p_forward × addressees × forward_click_through`; `p_forward` is set
//! from the campaign's R, which may jump at `jump_after` (the clicker's own
//! click time decides which R applies). The log of a campaign ends at
//! `start + duration`: nothing later is written (like a mailing that
//! stops being read), so estimates are checked up to that time only.
//!
//! **Heavy-tailed delays.** A campaign with `lognormal` set draws its delays
//! from lognormal distributions instead (send → click and forward → click:
//! `response`; click → forward: `forward`), typically with an sd above the
//! mean: most readers act within minutes, a long tail days later. The
//! generation interval is then no longer the one the engine assumes (that
//! is the point of [`heavy_tailed_scenarios`]).
//!
//! Deterministic for a seed: a SplitMix64 generator and Marsaglia–Tsang Gamma
//! sampling, no external RNG crate whose stream could change between versions.

use serde::{Deserialize, Serialize};

use crate::time::format_rfc3339_ms;

/// One campaign to simulate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CampaignSpec {
    /// Campaign id.
    pub campaign: String,
    /// Target service.
    pub target: String,
    /// The `audience` its send names (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Send time, epoch ms.
    pub start_ms: i64,
    /// Recipients of the send.
    pub recipients: u64,
    /// Direct click-through.
    pub click_through: f64,
    /// R of clickers who click before `jump_after_ms` (all, if none).
    pub r: f64,
    /// R of clickers after the jump.
    pub r_after: Option<f64>,
    /// Jump time (ms after the send).
    pub jump_after_ms: Option<i64>,
    /// Mean addressees per forward.
    pub addressees: f64,
    /// Click-through of a forwarded copy.
    pub forward_click_through: f64,
    /// Length of the campaign's log, ms after the send.
    pub duration_ms: i64,
    /// Lognormal delays instead of the Gamma ones; absent: Gamma.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lognormal: Option<LognormalDelays>,
}

/// A lognormal delay given by its mean and sd (ms).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Lognormal {
    /// Mean delay (ms).
    pub mean_ms: f64,
    /// Standard deviation of the delay (ms).
    pub sd_ms: f64,
}

/// The delays of a heavy-tailed campaign.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct LognormalDelays {
    /// Forward → click of a forwarded copy, and send → direct click unless
    /// `direct` is given.
    pub response: Lognormal,
    /// Send → direct click, if not `response` (an audience's own response
    /// delay; the pass-along delays stay those of `response`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<Lognormal>,
    /// Click → forward.
    pub forward: Lognormal,
}

impl CampaignSpec {
    /// The true R of a clicker who clicked at `t_ms`.
    pub fn r_at(&self, t_ms: i64) -> f64 {
        match (self.r_after, self.jump_after_ms) {
            (Some(after), Some(j)) if t_ms >= self.start_ms + j => after,
            _ => self.r,
        }
    }

    /// End of the campaign's log.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.duration_ms
    }
}

/// Simulation settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SimSpec {
    /// RNG seed.
    pub seed: u64,
    /// Campaigns.
    pub campaigns: Vec<CampaignSpec>,
    /// Probability that a click line is written twice (same id).
    pub duplicate_rate: f64,
}

/// A simulated event, before formatting.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// Event time.
    pub ts_ms: i64,
    /// The NDJSON line (no newline).
    pub line: String,
    /// Generation of a click (`None` for sends and forwards).
    pub generation: Option<u32>,
    /// Index of the campaign in the spec.
    pub campaign: usize,
}

/// SplitMix64: small, fast, and stable forever.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in (0, 1).
    fn open(&mut self) -> f64 {
        loop {
            let u = self.uniform();
            if u > 0.0 {
                return u;
            }
        }
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.open(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, scale), Marsaglia & Tsang (2000).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape < 1.0 {
            let u = self.open();
            return self.gamma(shape + 1.0, scale) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.open();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * scale;
            }
        }
    }

    /// Lognormal with the given mean and sd (both > 0): `exp(μ + σZ)` with
    /// `σ² = ln(1 + sd²/mean²)`, `μ = ln(mean) − σ²/2`.
    pub fn lognormal(&mut self, d: Lognormal) -> f64 {
        let s2 = (1.0 + (d.sd_ms / d.mean_ms).powi(2)).ln();
        let mu = d.mean_ms.ln() - s2 / 2.0;
        (mu + s2.sqrt() * self.normal()).exp()
    }

    /// Bernoulli(p).
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// 1 + Geometric with the given mean (≥ 1).
    pub fn one_plus_geometric(&mut self, mean: f64) -> u64 {
        let p = 1.0 / mean.max(1.0);
        let mut n = 1;
        while !self.chance(p) && n < 10_000 {
            n += 1;
        }
        n
    }
}

const MINUTE: f64 = 60_000.0;
/// Scale of the Gamma pieces of the generation interval (6.25 min).
const THETA: f64 = 6.25 * MINUTE;

/// Runs the simulation; events sorted by time (ties keep generation order).
pub fn simulate(spec: &SimSpec) -> Vec<SimEvent> {
    let mut rng = Rng::new(spec.seed);
    let mut events = Vec::new();
    let mut ts_buf = String::new();
    for (ci, c) in spec.campaigns.iter().enumerate() {
        let mut fmt_ts = |ms: i64| {
            ts_buf.clear();
            format_rfc3339_ms(ms, &mut ts_buf);
            ts_buf.clone()
        };
        let end = c.end_ms();
        let audience = c.audience.as_ref().map_or(String::new(), |a| format!(r#","audience":"{a}""#));
        events.push(SimEvent {
            ts_ms: c.start_ms,
            line: format!(
                r#"{{"type":"send","campaign":"{}","ts":"{}","recipients":{},"target":"{}"{audience},"id":"s-{ci}"}}"#,
                c.campaign,
                fmt_ts(c.start_ms),
                c.recipients,
                c.target
            ),
            generation: None,
            campaign: ci,
        });
        // (click time, generation, person number, parent number)
        let mut queue: std::collections::VecDeque<(i64, u32, u64, Option<u64>)> = Default::default();
        let mut next_person = 0u64;
        for _ in 0..c.recipients {
            if rng.chance(c.click_through) {
                let delay = match &c.lognormal {
                    Some(l) => rng.lognormal(l.direct.unwrap_or(l.response)),
                    None => rng.gamma(1.0, 30.0 * MINUTE),
                };
                let t = c.start_ms + delay as i64;
                if t < end {
                    queue.push_back((t, 0, next_person, None));
                }
                next_person += 1;
            }
        }
        let mut fwd_no = 0u64;
        while let Some((t, generation, person, parent)) = queue.pop_front() {
            let mut line = format!(
                r#"{{"type":"click","campaign":"{}","ts":"{}","id":"c-{ci}-{person}","person":"p-{ci}-{person}","generation":{generation}"#,
                c.campaign,
                fmt_ts(t)
            );
            if let Some(p) = parent {
                line.push_str(&format!(r#","parent":"p-{ci}-{p}""#));
            }
            line.push_str(&format!(r#","target":"{}"}}"#, c.target));
            if rng.chance(spec.duplicate_rate) {
                events.push(SimEvent { ts_ms: t, line: line.clone(), generation: Some(generation), campaign: ci });
            }
            events.push(SimEvent { ts_ms: t, line, generation: Some(generation), campaign: ci });
            // R = p_forward × mean addressees × forward click-through; when R
            // needs p_forward > 0.8, forwards go to more addressees instead.
            let r = c.r_at(t);
            let mean_addressees = c.addressees.max(r / (0.8 * c.forward_click_through));
            let p_forward = r / (mean_addressees * c.forward_click_through);
            if !rng.chance(p_forward) {
                continue;
            }
            let fwd_delay = match &c.lognormal {
                Some(l) => rng.lognormal(l.forward),
                None => MINUTE + rng.gamma(1.0, THETA),
            };
            let t_fwd = t + fwd_delay as i64;
            let addressees = rng.one_plus_geometric(mean_addressees);
            if t_fwd < end {
                events.push(SimEvent {
                    ts_ms: t_fwd,
                    line: format!(
                        r#"{{"type":"forward","campaign":"{}","ts":"{}","id":"f-{ci}-{fwd_no}","person":"p-{ci}-{person}","recipients":{addressees}}}"#,
                        c.campaign,
                        fmt_ts(t_fwd)
                    ),
                    generation: None,
                    campaign: ci,
                });
                fwd_no += 1;
            }
            for _ in 0..addressees {
                if rng.chance(c.forward_click_through) {
                    let click_delay = match &c.lognormal {
                        Some(l) => rng.lognormal(l.response),
                        None => rng.gamma(1.56, THETA),
                    };
                    let tc = t_fwd + click_delay as i64;
                    if tc < end {
                        queue.push_back((tc, generation + 1, next_person, Some(person)));
                    }
                    next_person += 1;
                }
            }
        }
    }
    events.sort_by_key(|e| e.ts_ms);
    events
}

/// The scenario set used by `floodgate simulate`, the acceptance tests and
/// the backtest: campaigns with R from 0.3 to 2.5 plus one whose R jumps
/// from 0.5 to 1.8 an hour after its send. Sends are 20 min apart.
pub fn standard_scenarios(seed: u64, start_ms: i64) -> SimSpec {
    let mut campaigns = Vec::new();
    let rs: [f64; 10] = [0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.8, 2.1, 2.5];
    for (i, &r) in rs.iter().enumerate() {
        // Fewer recipients for the explosive ones so the log stays small.
        let recipients = if r >= 2.0 {
            4_000
        } else if r >= 1.5 {
            8_000
        } else {
            20_000
        };
        let duration = if r >= 2.0 {
            110.0
        } else if r >= 1.5 {
            130.0
        } else {
            180.0
        };
        campaigns.push(CampaignSpec {
            campaign: format!("mailing-r{}", (r * 10.0).round() as u32),
            target: if i % 2 == 0 { "shop-web".into() } else { "blog-web".into() },
            audience: None,
            start_ms: start_ms + i as i64 * 20 * MINUTE as i64,
            recipients,
            click_through: 0.05,
            r,
            r_after: None,
            jump_after_ms: None,
            addressees: 4.0,
            forward_click_through: 0.35,
            duration_ms: (duration * MINUTE) as i64,
            lognormal: None,
        });
    }
    campaigns.push(CampaignSpec {
        campaign: "mailing-jump".into(),
        target: "shop-web".into(),
        audience: None,
        start_ms: start_ms + 30 * MINUTE as i64,
        recipients: 20_000,
        click_through: 0.05,
        r: 0.5,
        r_after: Some(1.8),
        jump_after_ms: Some((60.0 * MINUTE) as i64),
        addressees: 4.0,
        forward_click_through: 0.35,
        duration_ms: (170.0 * MINUTE) as i64,
        lognormal: None,
    });
    SimSpec { seed, campaigns, duplicate_rate: 0.0 }
}

/// The `heavy-tailed` scenario set: delays lognormal with an sd above the
/// mean (send → direct click: mean 40 min, sd 90 min for the newsletter,
/// 20/45 min for customers, 80/150 min for prospects; forward → click: 40/90
/// min; click → forward: mean 10 min, sd 25 min), so a campaign's clicks trail on for
/// hours; three audiences with a stable click-through and response delay
/// each, several campaigns per audience, large direct waves and
/// sub-critical pass-along (R 0.2–0.95), and two super-critical campaigns
/// (R 1.3 and 1.6). Sends are 40 min apart; each log runs 6 h after its
/// send. Each send names its `audience` (also the first part of the
/// campaign id, `<audience>-<n>-r<R×100>`).
pub fn heavy_tailed_scenarios(seed: u64, start_ms: i64) -> SimSpec {
    // (audience, recipients, click-through, response delay mean and sd in
    // minutes, target, R of its campaigns)
    type Audience = (&'static str, u64, f64, (f64, f64), &'static str, &'static [f64]);
    let audiences: [Audience; 3] = [
        ("newsletter", 100_000, 0.015, (40.0, 90.0), "blog-web", &[0.2, 0.5, 0.8, 0.95]),
        ("customers", 60_000, 0.025, (20.0, 45.0), "shop-web", &[0.3, 0.6, 0.9, 1.6]),
        ("prospects", 150_000, 0.008, (80.0, 150.0), "shop-web", &[0.4, 0.7, 1.3]),
    ];
    let mut campaigns = Vec::new();
    // Interleave the audiences: newsletter 1, customers 1, prospects 1, newsletter 2, …
    for round in 0..4 {
        for &(audience, recipients, click_through, (mean, sd), target, rs) in &audiences {
            let Some(&r) = rs.get(round) else { continue };
            let delays = LognormalDelays {
                response: Lognormal { mean_ms: 40.0 * MINUTE, sd_ms: 90.0 * MINUTE },
                direct: Some(Lognormal { mean_ms: mean * MINUTE, sd_ms: sd * MINUTE }),
                forward: Lognormal { mean_ms: 10.0 * MINUTE, sd_ms: 25.0 * MINUTE },
            };
            campaigns.push(CampaignSpec {
                campaign: format!("{audience}-{}-r{}", round + 1, (r * 100.0).round() as u32),
                target: target.into(),
                audience: Some(audience.into()),
                start_ms: start_ms + campaigns.len() as i64 * 40 * MINUTE as i64,
                recipients,
                click_through,
                r,
                r_after: None,
                jump_after_ms: None,
                addressees: 4.0,
                forward_click_through: 0.35,
                duration_ms: (360.0 * MINUTE) as i64,
                lognormal: Some(delays),
            });
        }
    }
    SimSpec { seed, campaigns, duplicate_rate: 0.0 }
}

/// The small demo shipped as `examples/viral-mailing.ndjson`.
pub fn demo_scenario(seed: u64, start_ms: i64) -> SimSpec {
    let base = |name: &str, target: &str, offset_min: i64, recipients: u64, r: f64| CampaignSpec {
        campaign: name.into(),
        target: target.into(),
        audience: None,
        start_ms: start_ms + offset_min * MINUTE as i64,
        recipients,
        click_through: 0.05,
        r,
        r_after: None,
        jump_after_ms: None,
        addressees: 4.0,
        forward_click_through: 0.35,
        duration_ms: (120.0 * MINUTE) as i64,
        lognormal: None,
    };
    let mut jump = base("webinar-invite", "events-web", 20, 8_000, 0.5);
    jump.r_after = Some(1.8);
    jump.jump_after_ms = Some((40.0 * MINUTE) as i64);
    jump.duration_ms = (120.0 * MINUTE) as i64;
    SimSpec {
        seed,
        campaigns: vec![base("spring-sale", "shop-web", 0, 5_000, 1.6), base("weekly-newsletter", "blog-web", 10, 12_000, 0.4), jump],
        duplicate_rate: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_sampler_moments() {
        let mut rng = Rng::new(1);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.gamma(2.56, 6.25)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 16.0).abs() < 0.1, "{mean}");
        assert!((var.sqrt() - 10.0).abs() < 0.1, "{}", var.sqrt());
        let g: Vec<f64> = (0..n).map(|_| rng.gamma(0.5, 2.0)).collect();
        assert!((g.iter().sum::<f64>() / n as f64 - 1.0).abs() < 0.02);
    }

    #[test]
    fn lognormal_sampler_moments() {
        let mut rng = Rng::new(5);
        let n = 400_000;
        let d = Lognormal { mean_ms: 40.0, sd_ms: 90.0 };
        let xs: Vec<f64> = (0..n).map(|_| rng.lognormal(d)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        // Heavy tail: the sample sd converges slowly, so check the mean and
        // the median exp(μ) = mean / sqrt(1 + sd²/mean²) = 16.4.
        assert!((mean - 40.0).abs() < 1.5, "{mean}");
        let median = sorted[n / 2];
        assert!((median - 40.0 / (1.0f64 + (90.0f64 / 40.0).powi(2)).sqrt()).abs() < 0.5, "{median}");
    }

    #[test]
    fn heavy_tailed_scenario_has_long_delays_and_stable_audiences() {
        let spec = heavy_tailed_scenarios(1, 0);
        assert_eq!(spec.campaigns.len(), 11);
        let rs: Vec<f64> = spec.campaigns.iter().map(|c| c.r).collect();
        assert_eq!(rs.iter().filter(|&&r| r > 1.0).count(), 2, "two super-critical campaigns");
        assert!(rs.iter().filter(|&&r| r < 1.0).all(|&r| (0.2..=0.95).contains(&r)));
        // Same audience, same click-through and response delay; different
        // audiences, different ones; every send names its audience.
        for c in &spec.campaigns {
            let audience = c.audience.as_deref().expect("an audience");
            assert!(c.campaign.starts_with(audience));
            for o in &spec.campaigns {
                let same = o.audience == c.audience;
                assert_eq!(same, o.click_through == c.click_through, "{} / {}", c.campaign, o.campaign);
                assert_eq!(same, o.lognormal.map(|l| l.direct) == c.lognormal.map(|l| l.direct), "{} / {}", c.campaign, o.campaign);
            }
        }
        // Only the sends (no click fits in a log of length 0).
        let mut sends_only = spec.clone();
        sends_only.campaigns.iter_mut().for_each(|c| c.duration_ms = 0);
        let sends: Vec<String> = simulate(&sends_only)
            .into_iter()
            .filter(|e| e.generation.is_none() && e.line.contains(r#""type":"send""#))
            .map(|e| e.line)
            .collect();
        assert_eq!(sends.len(), 11);
        assert!(sends.iter().all(|l| l.contains(r#","audience":""#)), "{sends:?}");
        // Direct click delays: sd above the mean (among clicks inside the log).
        let mut one = spec.clone();
        one.campaigns.truncate(1);
        let ev = simulate(&one);
        let delays: Vec<f64> =
            ev.iter().filter(|e| e.generation == Some(0)).map(|e| (e.ts_ms - one.campaigns[0].start_ms) as f64).collect();
        let n = delays.len() as f64;
        let mean = delays.iter().sum::<f64>() / n;
        let sd = (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(n > 1000.0, "a large direct wave: {n} clicks");
        assert!(sd > mean, "sd {sd} ms vs mean {mean} ms");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let spec = demo_scenario(3, 1_772_438_400_000);
        let a = simulate(&spec);
        let b = simulate(&spec);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    }

    #[test]
    fn realised_r_matches_spec() {
        // Offspring per clicker, over clickers whose offspring all fit in the log.
        let mut spec = demo_scenario(11, 0);
        spec.campaigns.truncate(1);
        spec.campaigns[0].r = 1.2;
        spec.campaigns[0].duration_ms = 100 * 60_000;
        let ev = simulate(&spec);
        let clicks = ev.iter().filter(|e| e.generation.is_some() && e.ts_ms < 30 * 60_000).count() as f64;
        let children = ev
            .iter()
            .filter(|e| e.generation.is_some() && e.line.contains("\"parent\""))
            .filter(|e| {
                // parent clicked before 30 min: recover its click time
                let p = e.line.split("\"parent\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("");
                ev.iter().any(|x| x.ts_ms < 30 * 60_000 && x.line.contains(&format!("\"person\":\"{p}\",\"generation\"")))
            })
            .count() as f64;
        let r = children / clicks;
        assert!((r - 1.2).abs() < 0.2, "realised R {r}");
    }
}

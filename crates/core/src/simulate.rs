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
        events.push(SimEvent {
            ts_ms: c.start_ms,
            line: format!(
                r#"{{"type":"send","campaign":"{}","ts":"{}","recipients":{},"target":"{}","id":"s-{ci}"}}"#,
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
                let t = c.start_ms + rng.gamma(1.0, 30.0 * MINUTE) as i64;
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
            let t_fwd = t + (MINUTE + rng.gamma(1.0, THETA)) as i64;
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
                    let tc = t_fwd + rng.gamma(1.56, THETA) as i64;
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
            start_ms: start_ms + i as i64 * 20 * MINUTE as i64,
            recipients,
            click_through: 0.05,
            r,
            r_after: None,
            jump_after_ms: None,
            addressees: 4.0,
            forward_click_through: 0.35,
            duration_ms: (duration * MINUTE) as i64,
        });
    }
    campaigns.push(CampaignSpec {
        campaign: "mailing-jump".into(),
        target: "shop-web".into(),
        start_ms: start_ms + 30 * MINUTE as i64,
        recipients: 20_000,
        click_through: 0.05,
        r: 0.5,
        r_after: Some(1.8),
        jump_after_ms: Some((60.0 * MINUTE) as i64),
        addressees: 4.0,
        forward_click_through: 0.35,
        duration_ms: (170.0 * MINUTE) as i64,
    });
    SimSpec { seed, campaigns, duplicate_rate: 0.0 }
}

/// The small demo shipped as `examples/viral-mailing.ndjson`.
pub fn demo_scenario(seed: u64, start_ms: i64) -> SimSpec {
    let base = |name: &str, target: &str, offset_min: i64, recipients: u64, r: f64| CampaignSpec {
        campaign: name.into(),
        target: target.into(),
        start_ms: start_ms + offset_min * MINUTE as i64,
        recipients,
        click_through: 0.05,
        r,
        r_after: None,
        jump_after_ms: None,
        addressees: 4.0,
        forward_click_through: 0.35,
        duration_ms: (120.0 * MINUTE) as i64,
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

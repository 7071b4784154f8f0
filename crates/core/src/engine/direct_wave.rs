//! The direct wave of a target's mailings, learned from its past campaigns:
//! the response curve (delay from the send to a recipient's click) and the
//! click-through.
//!
//! Every campaign with a send records its direct (generation-0) clicks by
//! delay since its first send ([`CampaignDelays`]), one event bin at a time
//! as bins close. As the campaign ages, the delay bins it has completed are
//! handed to its target's [`DelayLearner`] (right truncation corrected, the
//! configured curve as prior: see there). Each campaign also keeps an entry
//! in its target's click-through pool (the last [`POOL`] campaigns): its
//! direct clicks so far, its recipients and its age, so that its rate can be
//! read against the *current* learned curve — direct clicks over the
//! recipients that have had time to respond, `E_i = recipients · F(age)` —
//! once that curve says its wave is at least half over.
//!
//! **Click-through: a Beta–Binomial hierarchy, fitted by moments (empirical
//! Bayes; e.g. Gelman et al., *Bayesian Data Analysis*, 3rd ed., §5.3).**
//! Campaign `i`'s click-through `p_i ~ Beta(m κ, (1 − m) κ)`; its observed
//! rate `x_i = G_i / E_i` has variance `m(1 − m)/E_i` around `p_i`. With
//! `x̄` and `s²` the mean and variance of the `x_i`, `m = x̄` and the
//! between-campaign variance is `τ² = s² − x̄(1 − x̄)·mean(1/E_i)`, so
//! `κ = m(1 − m)/τ² − 1`. A new campaign then starts from `m` with weight
//! `κ` recipients — the forecast's Beta prior (see
//! [`click_through`](super::forecast::click_through)) — and its own direct
//! clicks refine it as before: narrow when past campaigns agree, wide when
//! they do not. Until [`MIN_CAMPAIGNS`] campaigns have joined, the
//! configured `forecast.click_through` and its weight are used.
//!
//! **Audiences: one level down.** A send may name its `audience` (the list
//! or segment). Each audience of a target has a [`DirectWave`] of its own,
//! made by [`DirectWave::audience_of`], whose priors are its target's
//! *learned* values, kept current at every refresh
//! ([`DirectWave::refresh_under`]): the response-curve prior is the
//! target's learned curve, worth `forecast.learn_weight` delays, and the
//! click-through prior is the target's fitted Beta `(m, κ)`. The audience's
//! mean click-through is the Beta–Binomial posterior mean over its own
//! campaigns, `(κ m + Σ G_i) / (κ + Σ E_i)` (partial pooling: an audience
//! with few exposed recipients stays near its target's mean, a well-observed
//! one follows its own rate), and its weight is the moment fit of its own
//! campaigns' spread once [`MIN_CAMPAIGNS`] count, the target's `κ` before.
//! A campaign's matured bins go to both learners at once
//! ([`DirectWave::observe_bin`]): the target keeps learning from all its
//! campaigns exactly as without audiences. (The target's curve already holds
//! the audience's delays, so they count twice, once through the prior; the
//! prior weighs only `learn_weight` delays, which the audience's own data
//! outweigh after a campaign or two.)
//!
//! The learned state changes only when bins close, in bin order, so it does
//! not depend on arrival order within the allowed lateness.

use super::delay_learner::{DelayLearner, DelayStream, BINS};
use std::collections::VecDeque;

use super::forecast::ResponseCurve;
use super::model_file::{DirectWaveModel, PoolCampaign};

/// Campaigns whose click-through must count before the pool is used.
pub const MIN_CAMPAIGNS: u32 = 3;
/// Share of its direct wave (by the learned curve) a campaign must have
/// shown for its click-through to count.
const CTR_MIN_SHARE: f64 = 0.5;
/// Campaigns a target's click-through pool keeps (the most recent).
pub const POOL: usize = 256;

/// One campaign's direct clicks by delay since its first send, as much as
/// its target's learner still needs.
///
/// Clicks are counted as their event bin closes, at the bin's delay since
/// the send, so delays only grow, and a [`DelayStream`] holds what the
/// learners have not taken yet: the campaign keeps a few words (88 bytes
/// with its audience's pool entry), not a histogram (it was 57 counters,
/// +664 B per busy campaign in the memory bench).
#[derive(Clone, Debug)]
pub struct CampaignDelays {
    /// The first send's time (ms).
    pub first_send_ms: i64,
    /// Recipients of the sends known so far.
    pub recipients: u64,
    /// Direct clicks counted (in closed event bins).
    pub direct_clicks: u64,
    /// Direct clicks not yet handed to the target's learner.
    stream: DelayStream,
    /// Its entry in the target's click-through pool (gone once `POOL`
    /// later campaigns have joined).
    pool_id: Option<u64>,
    /// The audience (slot in its target's) whose wave it also teaches: the
    /// campaign's audience when its learning started, if any.
    pub audience: Option<u32>,
    /// Its entry in that audience's click-through pool.
    audience_pool_id: Option<u64>,
}

impl CampaignDelays {
    /// A campaign first sent at `first_send_ms`, teaching `audience`'s
    /// wave too (if any).
    pub fn new(first_send_ms: i64, recipients: u64, audience: Option<u32>) -> Self {
        CampaignDelays {
            first_send_ms,
            recipients,
            direct_clicks: 0,
            stream: DelayStream::default(),
            pool_id: None,
            audience,
            audience_pool_id: None,
        }
    }
}

/// One campaign in a target's click-through pool.
#[derive(Clone, Copy, Debug)]
struct PoolEntry {
    /// Direct clicks seen.
    direct_clicks: f64,
    /// Recipients of its sends.
    recipients: f64,
    /// Age of its first send when last seen, ms.
    age_ms: f64,
}

/// A target's (or one of its audiences') learned direct wave.
#[derive(Clone, Debug)]
pub struct DirectWave {
    /// Send → direct click delays, pooled over the target's campaigns.
    delays: DelayLearner,
    /// The learned response curve (refreshed from `delays`).
    curve: ResponseCurve,
    /// Whether `curve` is older than `delays`.
    stale: bool,
    /// The most recent campaigns' click-through observations.
    pool: VecDeque<PoolEntry>,
    /// Id of `pool[0]` (ids count every campaign that ever joined).
    pool_base: u64,
    /// The click-through prior as of the last refresh: (mean, weight).
    click_through: (f64, f64),
    /// Campaigns that counted in it.
    campaigns: u32,
    /// The prior click-through and its weight (recipients): the configured
    /// one for a target, the target's fitted Beta for an audience.
    prior: (f64, f64),
    /// Whether this is an audience's wave, whose priors follow its target's
    /// ([`DirectWave::refresh_under`]) and whose mean is partially pooled.
    audience: bool,
}

impl DirectWave {
    /// A target with no past: the configured curve and click-through.
    pub fn new(prior_curve: &ResponseCurve, prior_weight: f64, click_through: f64, click_through_weight: f64) -> Self {
        let delays = DelayLearner::new(|x| prior_curve.cdf(x), prior_weight);
        DirectWave::starting_from(delays, (click_through, click_through_weight), false)
    }

    /// A wave that has pooled no campaign yet: `delays` (with its prior),
    /// the click-through prior `(mean, weight)`, and whether it is an
    /// audience's.
    fn starting_from(delays: DelayLearner, click_through: (f64, f64), audience: bool) -> Self {
        DirectWave {
            curve: ResponseCurve::learned(*delays.cdf_at_edges()),
            delays,
            stale: false,
            pool: VecDeque::new(),
            pool_base: 0,
            click_through,
            campaigns: 0,
            prior: click_through,
            audience,
        }
    }

    /// A new audience of the target whose wave is `target`: it starts from
    /// the target's learned curve (as prior, worth `prior_weight` delays)
    /// and click-through (see the module documentation).
    pub fn audience_of(target: &DirectWave, prior_weight: f64) -> Self {
        let mut delays = target.delays.clone();
        delays.set_sums([0.0; BINS], [0.0; BINS], 0.0);
        delays.set_prior(target.delays.cdf_at_edges(), prior_weight);
        delays.refresh();
        DirectWave::starting_from(delays, target.click_through, true)
    }

    /// An audience's refresh: its priors become `target`'s learned values
    /// as of `target`'s last refresh (made just before), then
    /// [`refresh`](Self::refresh).
    pub fn refresh_under(&mut self, target: &DirectWave, prior_weight: f64) {
        if self.delays.set_prior(target.delays.cdf_at_edges(), prior_weight) {
            self.stale = true;
        }
        self.prior = target.click_through;
        self.refresh();
    }

    /// The learned response curve (as of the last refresh).
    pub fn current_curve(&self) -> &ResponseCurve {
        &self.curve
    }

    /// Brings the curve and the click-through prior up to date with what
    /// was observed (once per bin step).
    pub fn refresh(&mut self) {
        if self.stale {
            self.delays.refresh();
            self.curve = ResponseCurve::learned(*self.delays.cdf_at_edges());
            self.stale = false;
        }
        self.click_through = self.fit_click_through();
    }

    /// The prior a new campaign's click-through starts from: (mean, weight
    /// in recipients), as of the last refresh. See the module documentation.
    pub fn click_through_prior(&self) -> (f64, f64) {
        self.click_through
    }

    /// The moment fit of the module documentation over the pooled
    /// campaigns whose wave is at least `CTR_MIN_SHARE` over.
    fn fit_click_through(&mut self) -> (f64, f64) {
        let (mut n, mut sum_x, mut sum_x2, mut sum_inv) = (0u32, 0.0, 0.0, 0.0);
        let (mut clicks, mut exposed_all) = (0.0, 0.0);
        for e in &self.pool {
            let share = self.curve.cdf(e.age_ms);
            if share < CTR_MIN_SHARE || e.recipients <= 0.0 {
                continue;
            }
            let exposed = e.recipients * share;
            let x = (e.direct_clicks / exposed).min(1.0);
            n += 1;
            sum_x += x;
            sum_x2 += x * x;
            sum_inv += 1.0 / exposed;
            clicks += e.direct_clicks.min(exposed);
            exposed_all += exposed;
        }
        self.campaigns = n;
        if self.audience {
            // Partial pooling under the target's Beta (module documentation).
            let (m0, k0) = self.prior;
            let m = ((k0 * m0 + clicks) / (k0 + exposed_all)).clamp(1e-9, 1.0 - 1e-9);
            let kappa = if n < MIN_CAMPAIGNS { k0 } else { moment_fit(n, sum_x, sum_x2, sum_inv).1 };
            return (m, kappa);
        }
        if n < MIN_CAMPAIGNS {
            return self.prior;
        }
        moment_fit(n, sum_x, sum_x2, sum_inv)
    }

    /// What it has learned from data, for the model file (`model_file.rs`):
    /// the delay sums and the click-through pool. The priors are not in it:
    /// they come from the configuration (a target) or the target (an
    /// audience) of the engine that loads it.
    pub fn to_model(&self) -> DirectWaveModel {
        DirectWaveModel {
            delays: self.delays.to_sums(),
            click_through_pool: self
                .pool
                .iter()
                .map(|e| PoolCampaign { direct_clicks: e.direct_clicks, recipients: e.recipients, age_ms: e.age_ms })
                .collect(),
        }
    }

    /// Takes what [`to_model`](Self::to_model) gave (checked by
    /// [`LearnedModel::check`](super::model_file::LearnedModel::check):
    /// arrays of [`BINS`] values, at most [`POOL`] campaigns), in place of
    /// what it had learned, and refreshes. An audience is then refreshed
    /// with [`refresh_under`](Self::refresh_under) by its caller.
    pub fn load(&mut self, m: &DirectWaveModel) {
        if !self.delays.load_sums(&m.delays) {
            return;
        }
        self.pool = m
            .click_through_pool
            .iter()
            .take(POOL)
            .map(|e| PoolEntry { direct_clicks: e.direct_clicks, recipients: e.recipients, age_ms: e.age_ms })
            .collect();
        // No campaign of this engine refers to an entry yet: ids start after them.
        self.pool_base = 0;
        self.stale = true;
        self.refresh();
    }

    /// What it has learned, for views and metrics (as of the last refresh,
    /// which every bin step makes).
    pub fn view(&self) -> super::DirectWaveView {
        let (click_through, click_through_weight) = self.click_through_prior();
        super::DirectWaveView {
            response_median_s: self.delays.quantile(0.5) / 1000.0,
            response_p90_s: self.delays.quantile(0.9) / 1000.0,
            delays: self.delays.observed(),
            click_through,
            click_through_weight,
            campaigns: self.campaigns,
        }
    }

    /// The event bin `[start_ms, end_ms)` of a campaign has closed with
    /// `clicks` direct clicks (placed at the middle of the part of the bin
    /// after the first send): the delay bins this completes go to the
    /// learner (and to `audience`'s, the wave of the campaign's audience
    /// under this target, if any), and the campaign's entries in the
    /// click-through pools are updated. Also called with no clicks when a
    /// campaign is forgotten (`start_ms = end_ms` = the end of the closed bins).
    pub fn observe_bin(&mut self, mut audience: Option<&mut DirectWave>, c: &mut CampaignDelays, start_ms: i64, end_ms: i64, clicks: u32) {
        if clicks > 0 && end_ms > c.first_send_ms {
            let from = start_ms.max(c.first_send_ms);
            let delay = (from + end_ms) as f64 / 2.0 - c.first_send_ms as f64;
            c.stream.add(&mut self.delays, audience.as_deref_mut().map(|a| &mut a.delays), delay, clicks);
            c.direct_clicks += u64::from(clicks);
        }
        let age = (end_ms - c.first_send_ms) as f64;
        if c.stream.mature(&mut self.delays, audience.as_deref_mut().map(|a| &mut a.delays), age) {
            self.stale = true;
            if let Some(a) = audience.as_deref_mut() {
                a.stale = true;
            }
        }
        let entry = PoolEntry { direct_clicks: c.direct_clicks as f64, recipients: c.recipients as f64, age_ms: age };
        self.pool_update(&mut c.pool_id, entry);
        if let Some(a) = audience {
            a.pool_update(&mut c.audience_pool_id, entry);
        }
    }

    /// Puts a campaign's latest `entry` in the click-through pool: in place
    /// if its `id` is still there, as a new entry (the oldest leaving past
    /// [`POOL`]) if it has none.
    fn pool_update(&mut self, id: &mut Option<u64>, entry: PoolEntry) {
        match *id {
            Some(id) if id >= self.pool_base => {
                if let Some(e) = self.pool.get_mut((id - self.pool_base) as usize) {
                    *e = entry;
                }
            }
            Some(_) => {} // left the pool: `POOL` later campaigns joined
            None => {
                *id = Some(self.pool_base + self.pool.len() as u64);
                self.pool.push_back(entry);
                if self.pool.len() > POOL {
                    self.pool.pop_front();
                    self.pool_base += 1;
                }
            }
        }
    }
}

/// The Beta–Binomial moment fit of the module documentation: `(m, κ)`
/// from `n ≥ 2` campaigns' rates (sum, sum of squares) and `Σ 1/E_i`.
fn moment_fit(n: u32, sum_x: f64, sum_x2: f64, sum_inv: f64) -> (f64, f64) {
    let nf = f64::from(n);
    let m = (sum_x / nf).clamp(1e-9, 1.0 - 1e-9);
    let var = ((sum_x2 - nf * m * m) / (nf - 1.0)).max(0.0);
    let binomial = m * (1.0 - m) * sum_inv / nf;
    let between = (var - binomial).max(m * (1.0 - m) * 1e-7);
    let kappa = (m * (1.0 - m) / between - 1.0).clamp(1.0, 1e7);
    (m, kappa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delay_learner::{self, bin_of_delay, mature_bins};

    fn wave() -> DirectWave {
        DirectWave::new(&ResponseCurve::new(1_800_000.0, 1_800_000.0), 100.0, 0.05, 2000.0)
    }

    /// A campaign whose one click per closed event bin is observed.
    fn campaign_with(w: &mut DirectWave, clicks_by_bin: &[(i64, u32)], recipients: u64, end_ms: i64) -> CampaignDelays {
        let mut c = CampaignDelays::new(0, recipients, None);
        for &(bin, n) in clicks_by_bin {
            w.observe_bin(None, &mut c, bin * 60_000, (bin + 1) * 60_000, n);
        }
        w.observe_bin(None, &mut c, end_ms, end_ms, 0);
        c
    }

    #[test]
    fn the_pool_keeps_the_most_recent_campaigns() {
        let mut w = wave();
        let mut first = CampaignDelays::new(0, 1000, None);
        w.observe_bin(None, &mut first, 0, 60_000, 0);
        for _ in 0..POOL {
            w.observe_bin(None, &mut CampaignDelays::new(0, 1000, None), 0, 60_000, 0);
        }
        assert_eq!(w.pool.len(), POOL);
        // The first campaign's entry has left; observing it again adds nothing.
        w.observe_bin(None, &mut first, 60_000, 120_000, 999);
        assert_eq!(w.pool.len(), POOL);
        assert!(w.pool.iter().all(|e| e.direct_clicks == 0.0));
    }

    #[test]
    fn a_new_target_uses_the_configured_curve_and_click_through() {
        let w = wave();
        let prior = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        for x in [60_000.0, 1_800_000.0, 7_200_000.0] {
            assert!((w.current_curve().cdf(x) - prior.cdf(x)).abs() < 0.01, "{x}");
        }
        assert_eq!(w.click_through_prior(), (0.05, 2000.0));
    }

    /// Clicks are placed at the middle of the part of their event bin after
    /// the send, and reach the learner exactly as the histogram folding of
    /// [`DelayLearner::mature`] would (same sums, same curve).
    #[test]
    fn streamed_bins_fold_like_the_whole_histogram() {
        let mut w = DirectWave::new(&ResponseCurve::new(1_800_000.0, 1_800_000.0), 0.0, 0.05, 2000.0);
        let mut c = CampaignDelays::new(90_000, 1000, None);
        w.observe_bin(None, &mut c, 0, 60_000, 5); // before the send: not a delay
        assert_eq!(c.direct_clicks, 0);
        w.observe_bin(None, &mut c, 60_000, 120_000, 4); // send mid-bin: 15 s after it
        w.observe_bin(None, &mut c, 120_000, 180_000, 2); // 60 s after it
        w.observe_bin(None, &mut c, 300_000, 360_000, 3); // 4.5 min after it
        w.observe_bin(None, &mut c, 86_400_000, 86_400_000, 0); // a day later
        assert_eq!(c.direct_clicks, 9);
        let mut counts = [0u32; delay_learner::BINS];
        counts[bin_of_delay(15_000.0)] += 4;
        counts[bin_of_delay(60_000.0)] += 2;
        counts[bin_of_delay(240_000.0 + 30_000.0)] += 3;
        let mut whole = DelayLearner::new(|x| ResponseCurve::new(1_800_000.0, 1_800_000.0).cdf(x), 0.0);
        whole.mature(&counts, 0, mature_bins(86_400_000.0 - 90_000.0));
        whole.refresh();
        w.refresh();
        assert_eq!(w.delays.observed(), 9.0);
        for x in [20_000.0, 70_000.0, 300_000.0, 3_600_000.0] {
            assert_eq!(w.current_curve().cdf(x), whole.cdf(x), "{x}");
        }
    }

    /// Three campaigns with click-throughs 1 %, 2 % and 3 % on 10 000
    /// exposed recipients each: m = 2 %, s² = 1e-4, binomial part
    /// 0.02·0.98/10 000 = 1.96e-6, τ² = 9.804e-5, κ = 0.0196/9.804e-5 − 1 ≈ 198.9.
    #[test]
    fn click_through_prior_is_the_moment_fit_by_hand() {
        let mut w = wave();
        // Ages far past the curve: every campaign's wave is over.
        for clicks in [100u32, 200, 300] {
            let mut c = campaign_with(&mut w, &[(5, clicks)], 10_000, 40 * 86_400_000);
            // Observing again updates the same entry.
            w.observe_bin(None, &mut c, 41 * 86_400_000, 41 * 86_400_000, 0);
        }
        // A campaign too young to count (1 min into a 30-min curve).
        let mut young = CampaignDelays::new(0, 10_000, None);
        w.observe_bin(None, &mut young, 0, 60_000, 5000);
        w.refresh();
        assert_eq!(w.view().campaigns, 3);
        let (m, kappa) = w.click_through_prior();
        assert!((m - 0.02).abs() < 1e-12, "{m}");
        let expected = 0.02 * 0.98 / (1e-4 - 0.02 * 0.98 / 10_000.0) - 1.0;
        assert!((kappa - expected).abs() < 1e-6, "{kappa} vs {expected}");
    }

    /// A target whose clicks come much later than the configured 30 min
    /// learns it: after campaigns with a 6-hour median delay, the curve's
    /// median is near 6 h, not 21 min.
    #[test]
    fn the_curve_follows_the_campaigns() {
        let mut w = wave();
        let mut rng = crate::simulate::Rng::new(3);
        for _ in 0..20 {
            // Lognormal delays, median 6 h, sd of the log 1, counted per minute.
            let mut minutes: Vec<i64> = (0..500).map(|_| (21_600_000.0 * rng.normal().exp() / 60_000.0) as i64).collect();
            minutes.sort_unstable();
            let mut by_bin: Vec<(i64, u32)> = Vec::new();
            for m in minutes {
                match by_bin.last_mut() {
                    Some((b, n)) if *b == m => *n += 1,
                    _ => by_bin.push((m, 1)),
                }
            }
            campaign_with(&mut w, &by_bin, 100_000, 30 * 86_400_000);
        }
        w.refresh();
        let median = w.view().response_median_s * 1000.0;
        assert!((median / 21_600_000.0 - 1.0).abs() < 0.1, "median {median}");
    }
}

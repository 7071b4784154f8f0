//! The direct wave of a target's mailings, learned from its past campaigns:
//! the response curve (delay from the send to a recipient's click) and the
//! click-through.
//!
//! Every campaign with a send records its direct (generation-0) clicks by
//! delay since its first send ([`CampaignDelays`]), one event bin at a time
//! as bins close. As the campaign ages, the delay bins it has completed are
//! handed to its target's [`DelayLearner`] (right truncation corrected, the
//! configured curve as prior: see there). Once the learned curve says the
//! campaign's direct wave is 90 % over (or when it is forgotten, if at least
//! 30 % over), its click-through — direct clicks over the recipients that
//! have had time to respond — joins the target's pool of click-throughs.
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
//! The learned state changes only when bins close, in bin order, so it does
//! not depend on arrival order within the allowed lateness.

use super::delay_learner::{self, bin_of_delay, mature_bins, DelayCounts, DelayLearner};
use super::forecast::ResponseCurve;

/// Campaigns whose click-through must have joined the pool before it is used.
pub const MIN_CAMPAIGNS: u32 = 3;
/// Share of the direct wave (by the learned curve) after which a campaign's
/// click-through joins the pool.
const CTR_MATURE: f64 = 0.9;
/// Share below which a forgotten campaign's click-through is not used.
const CTR_MIN_SHARE: f64 = 0.3;

/// One campaign's direct clicks by delay since its first send.
#[derive(Clone, Debug)]
pub struct CampaignDelays {
    /// The first send's time (ms).
    pub first_send_ms: i64,
    /// Recipients of the sends known so far.
    pub recipients: u64,
    /// Direct clicks by delay bin.
    pub counts: DelayCounts,
    /// Direct clicks counted (in closed event bins).
    pub direct_clicks: u64,
    /// Delay bins already handed to the target's learner.
    pub matured: usize,
    /// Whether the click-through has joined the target's pool.
    pub ctr_done: bool,
}

impl CampaignDelays {
    /// A campaign first sent at `first_send_ms`.
    pub fn new(first_send_ms: i64, recipients: u64) -> Self {
        CampaignDelays { first_send_ms, recipients, counts: [0; delay_learner::BINS], direct_clicks: 0, matured: 0, ctr_done: false }
    }

    /// Counts the `clicks` direct clicks of the event bin `[start, end)`,
    /// placed at the middle of the part of the bin after the send.
    pub fn count_bin(&mut self, start_ms: i64, end_ms: i64, clicks: u32) {
        if clicks == 0 || end_ms <= self.first_send_ms {
            return;
        }
        let from = start_ms.max(self.first_send_ms);
        let delay = (from + end_ms) as f64 / 2.0 - self.first_send_ms as f64;
        self.counts[bin_of_delay(delay)] += clicks;
        self.direct_clicks += u64::from(clicks);
    }
}

/// A target's learned direct wave.
#[derive(Clone, Debug)]
pub struct DirectWave {
    /// Send → direct click delays, pooled over the target's campaigns.
    delays: DelayLearner,
    /// The learned response curve (refreshed from `delays`).
    curve: ResponseCurve,
    /// Whether `curve` is older than `delays`.
    stale: bool,
    /// Campaigns whose click-through joined the pool.
    campaigns: u32,
    /// `Σ x_i`, `Σ x_i²` and `Σ 1/E_i` of the pooled click-throughs.
    sum_x: f64,
    sum_x2: f64,
    sum_inv_exposed: f64,
    /// The configured prior click-through and its weight (recipients).
    prior: (f64, f64),
}

impl DirectWave {
    /// A target with no past: the configured curve and click-through.
    pub fn new(prior_curve: &ResponseCurve, prior_weight: f64, click_through: f64, click_through_weight: f64) -> Self {
        let delays = DelayLearner::new(|x| prior_curve.cdf(x), prior_weight);
        DirectWave {
            curve: ResponseCurve::learned(*delays.cdf_at_edges()),
            delays,
            stale: false,
            campaigns: 0,
            sum_x: 0.0,
            sum_x2: 0.0,
            sum_inv_exposed: 0.0,
            prior: (click_through, click_through_weight),
        }
    }

    /// The learned response curve.
    pub fn curve(&mut self) -> &ResponseCurve {
        if self.stale {
            self.delays.refresh();
            self.curve = ResponseCurve::learned(*self.delays.cdf_at_edges());
            self.stale = false;
        }
        &self.curve
    }

    /// The current curve without refreshing it.
    pub fn current_curve(&self) -> &ResponseCurve {
        &self.curve
    }

    /// Refreshes the curve if new delays arrived.
    pub fn refresh(&mut self) {
        let _ = self.curve();
    }

    /// The prior a new campaign's click-through starts from: (mean, weight
    /// in recipients). See the module documentation.
    pub fn click_through_prior(&self) -> (f64, f64) {
        if self.campaigns < MIN_CAMPAIGNS {
            return self.prior;
        }
        let n = f64::from(self.campaigns);
        let m = (self.sum_x / n).clamp(1e-9, 1.0 - 1e-9);
        let var = ((self.sum_x2 - n * m * m) / (n - 1.0)).max(0.0);
        let binomial = m * (1.0 - m) * self.sum_inv_exposed / n;
        let between = (var - binomial).max(m * (1.0 - m) * 1e-7);
        let kappa = (m * (1.0 - m) / between - 1.0).clamp(1.0, 1e7);
        (m, kappa)
    }

    /// Campaigns pooled for the click-through.
    pub fn campaigns(&self) -> u32 {
        self.campaigns
    }

    /// Delays learned from.
    pub fn observed_delays(&self) -> f64 {
        self.delays.observed()
    }

    /// The learned curve's `q` quantile, ms.
    pub fn delay_quantile(&mut self, q: f64) -> f64 {
        self.delays.refresh();
        self.delays.quantile(q)
    }

    /// A campaign `now_ms` (end of its last closed bin) into its life: hands
    /// its newly completed delay bins to the learner, and its click-through
    /// to the pool once its wave is over. `forgotten`: the campaign is being
    /// removed (its click-through is used if the wave is at least 30 % over).
    pub fn observe(&mut self, c: &mut CampaignDelays, now_ms: i64, forgotten: bool) {
        let age = (now_ms - c.first_send_ms) as f64;
        let ready = mature_bins(age);
        if ready > c.matured {
            self.delays.mature(&c.counts, c.matured, ready);
            c.matured = ready;
            self.stale = true;
        }
        if c.ctr_done || c.recipients == 0 {
            return;
        }
        let share = self.curve().cdf(age);
        if share >= CTR_MATURE || (forgotten && share >= CTR_MIN_SHARE) {
            let exposed = c.recipients as f64 * share;
            let x = (c.direct_clicks as f64 / exposed).min(1.0);
            self.campaigns += 1;
            self.sum_x += x;
            self.sum_x2 += x * x;
            self.sum_inv_exposed += 1.0 / exposed;
            c.ctr_done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave() -> DirectWave {
        DirectWave::new(&ResponseCurve::new(1_800_000.0, 1_800_000.0), 100.0, 0.05, 2000.0)
    }

    #[test]
    fn a_new_target_uses_the_configured_curve_and_click_through() {
        let mut w = wave();
        let prior = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        for x in [60_000.0, 1_800_000.0, 7_200_000.0] {
            assert!((w.curve().cdf(x) - prior.cdf(x)).abs() < 0.01, "{x}");
        }
        assert_eq!(w.click_through_prior(), (0.05, 2000.0));
    }

    #[test]
    fn clicks_are_placed_after_the_send() {
        let mut c = CampaignDelays::new(90_000, 1000);
        c.count_bin(0, 60_000, 5); // before the send: not a delay
        assert_eq!(c.direct_clicks, 0);
        c.count_bin(60_000, 120_000, 4); // send mid-bin: 15 s after it
        assert_eq!(c.counts[bin_of_delay(15_000.0)], 4);
        c.count_bin(120_000, 180_000, 2); // 60 s after it
        assert_eq!(c.counts[bin_of_delay(60_000.0)], 2);
        assert_eq!(c.direct_clicks, 6);
    }

    /// Three campaigns with click-throughs 1 %, 2 % and 3 % on 10 000
    /// exposed recipients each: m = 2 %, s² = 1e-4, binomial part
    /// 0.02·0.98/10 000 = 1.96e-6, τ² = 9.804e-5, κ = 0.0196/9.804e-5 − 1 ≈ 198.9.
    #[test]
    fn click_through_prior_is_the_moment_fit_by_hand() {
        let mut w = wave();
        // Delays far past the curve: every campaign's wave is over.
        for (i, clicks) in [100u64, 200, 300].into_iter().enumerate() {
            let mut c = CampaignDelays::new(0, 10_000);
            c.direct_clicks = clicks;
            w.observe(&mut c, 40 * 86_400_000, false);
            assert!(c.ctr_done, "{i}");
            // Observing again changes nothing.
            w.observe(&mut c, 41 * 86_400_000, false);
        }
        assert_eq!(w.campaigns(), 3);
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
            let mut c = CampaignDelays::new(0, 100_000);
            // Lognormal delays, median 6 h, sd of the log 1.
            for _ in 0..500 {
                let z = rng.normal();
                let d = 21_600_000.0 * z.exp();
                c.counts[bin_of_delay(d)] += 1;
                c.direct_clicks += 1;
            }
            w.observe(&mut c, 30 * 86_400_000, false);
        }
        let median = w.delay_quantile(0.5);
        assert!((median / 21_600_000.0 - 1.0).abs() < 0.1, "median {median}");
    }
}

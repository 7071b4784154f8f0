//! The generation interval of a target's campaigns, learned from the delays
//! between a clicker's click and its offspring's clicks.
//!
//! **What is learned.** Clicks that carry `parent` link a child to the bin
//! in which its parent first clicked (its *cohort*, [`super::lineage`]). The
//! delay `Δ = child bin − parent cohort`, in bins, is what the discretised
//! generation interval `w_Δ` of Cori et al. (2013) is the distribution of.
//! Inside a bin a click's time is unknown, so a delay of Δ bins is recorded
//! at `(Δ + ½)` bins and `P(Δ ≤ k)` is the learned CDF at `k + 1` bins: the
//! learner works in milliseconds on the log-spaced bins of
//! [`super::delay_learner`], from seconds to days, whatever the event bin.
//!
//! **Right truncation.** At the end of bin `b` a cohort `c` can only have
//! shown delays `Δ ≤ b − c`: its age is `b − c + 1` bins. Each cohort with a
//! linked child is a right-truncated source ([`DelayStream`]) of the target's
//! [`DelayLearner`] (the reverse-time hazard of Lynden-Bell 1971; Lagakos,
//! Barraj & De Gruttola 1988): its delay bins are handed over as its age
//! passes them. A cohort with no child contributes to neither side of the
//! reverse hazard, so cohorts enter when their first child does.
//!
//! **How long clickers are followed.** A clicker's late offspring only link
//! while its campaign still follows it, so the target's campaigns follow
//! their clickers for twice the learned interval's 99th percentile — while
//! the model says offspring may still come, with a margin to see further
//! than what is known — between the lineage window and
//! `estimator.generation_interval.follow` (the memory cap, 24 h). The
//! horizon starts from the configured interval (17/10 min: about 2 h) and
//! grows as a long tail shows itself (a tail seen up to the horizon moves
//! the 99th percentile near it, which doubles the horizon). A cohort stops
//! maturing, and leaves, once its age reaches the horizon in force: its
//! clickers are then no longer followed, and its delay bins beyond keep the
//! prior's shape.
//!
//! **The prior** is the configured interval (EpiEstim's `discr_si`
//! discretisation), weighted as `estimator.generation_interval.learn_weight`
//! delays. Until the first delay is learned the configured weights are used
//! exactly, so a new target behaves as with `learn = false`.
//!
//! **What the engine uses.** Two discretisations of the learned CDF `F`:
//! - [`GenerationLearner::lineage`]: `w_k = F(k+1) − F(k)` for k = 0 … K
//!   (`w_0` included: offspring clicking in their parent's bin are counted
//!   by the lineage estimator, so its censoring correction `F(L)` must count
//!   them too);
//! - [`GenerationLearner::renewal`]: the same weights with `w_0` moved into
//!   `w_1` (Cori et al.'s renewal equation has `w_0 = 0`: a click in the
//!   same bin as its parent is attributed to the bin before) and divided by
//!   their sum over 0 … K, i.e. the interval conditional on being at most
//!   `K` bins — the support the campaign's click history keeps (the
//!   configured interval's). For the renewal estimator's `Λ_t` that is exact
//!   when incidence is steady over the support, where the unrenormalised cut
//!   would overstate R by `1/F(K)`.

use std::collections::BTreeMap;

use super::delay_learner::{bin_of_delay, upper_edge_ms, DelayLearner, DelayStream};
use super::generation_interval::GenerationInterval;
use super::model_file::DelaySums;

/// Where the learned CDF (ms) is read for `P(Δ ≤ k)`: `k + 1` bins, between
/// the mass points of lags `k` and `k + 1` (at `k + ½` and `k + 1½` bins).
/// Where a delay bin is narrower than an event bin (short lags), the CDF is
/// read at the upper edge of the delay bin holding lag `k`'s mass point
/// instead, which holds no other lag: reading it inside that bin would
/// spread the lag's mass over its neighbours by interpolation.
fn lag_cdf_point(k: usize, bin_ms: f64) -> f64 {
    let edge = upper_edge_ms(bin_of_delay((k as f64 + 0.5) * bin_ms));
    if edge < (k as f64 + 1.5) * bin_ms {
        edge
    } else {
        (k + 1) as f64 * bin_ms
    }
}

/// The follow horizon for a 99th percentile of `q99_bins`: twice it, within bounds.
fn follow_for(q99_bins: i64, min: i64, max: i64) -> i64 {
    (2 * q99_bins).clamp(min.max(1), max.max(min).max(1))
}

/// The lag (bins) at which the configured interval's CDF reaches 0.99.
fn configured_q99_bins(g: &GenerationInterval) -> i64 {
    (0..g.len()).find(|&k| g.cdf(k) >= 0.99).unwrap_or(g.len()) as i64
}

/// One parent cohort of the target: its children not yet handed to the learner.
#[derive(Clone, Copy, Debug, Default)]
struct CohortDelays {
    /// Children linked since the last bin step.
    new_children: u32,
    /// Delays not yet handed to the learner.
    stream: DelayStream,
}

/// A target's learned generation interval.
#[derive(Clone, Debug)]
pub struct GenerationLearner {
    /// Bin width, ms.
    bin_ms: i64,
    /// Clickers are followed this many bins now (cohort ages are capped
    /// there): twice the learned 99th percentile, within the bounds below.
    follow_bins: i64,
    /// The shortest follow horizon (the lineage window), bins.
    min_follow_bins: i64,
    /// The longest (`estimator.generation_interval.follow`), bins.
    max_follow_bins: i64,
    /// Parent → child delays, pooled over the target's campaigns.
    delays: DelayLearner,
    /// Cohorts with a linked child that are still younger than `follow_bins`.
    cohorts: BTreeMap<i64, CohortDelays>,
    /// The configured interval (used until a delay is learned).
    configured: GenerationInterval,
    /// The learned interval for the lineage estimator (`w_0` included).
    lineage: GenerationInterval,
    /// The learned interval for the renewal estimator.
    renewal: GenerationInterval,
    /// `renewal` cut for the forecast (`forecast::truncated_gi`); empty
    /// until a delay is learned.
    forecast: Vec<f64>,
    /// Whether `lineage` and `renewal` are older than `delays`.
    stale: bool,
}

impl GenerationLearner {
    /// A target with no past: `configured` (weights on bins of `bin_ms`),
    /// worth `prior_weight` delays; clickers followed between
    /// `min_follow_bins` and `max_follow_bins`.
    pub fn new(configured: &GenerationInterval, bin_ms: i64, prior_weight: f64, min_follow_bins: i64, max_follow_bins: i64) -> Self {
        let bin = bin_ms as f64;
        // P(D ≤ d) with a delay of Δ bins placed at (Δ + ½) bins.
        let prior = |d_ms: f64| {
            let x = d_ms / bin - 0.5;
            if x < 0.0 {
                0.0
            } else {
                configured.cdf(x.floor() as usize)
            }
        };
        let delays = DelayLearner::new(prior, prior_weight);
        GenerationLearner {
            bin_ms,
            follow_bins: follow_for(configured_q99_bins(configured), min_follow_bins, max_follow_bins),
            min_follow_bins,
            max_follow_bins,
            delays,
            cohorts: BTreeMap::new(),
            configured: configured.clone(),
            lineage: configured.clone(),
            renewal: configured.clone(),
            forecast: Vec::new(),
            stale: false,
        }
    }

    /// One more child, of a parent in cohort `parent_cohort`, in the bin
    /// being stepped.
    pub fn child(&mut self, parent_cohort: i64) {
        let c = self.cohorts.entry(parent_cohort).or_default();
        c.new_children = c.new_children.saturating_add(1);
    }

    /// Bin `b` has closed: its children go in at their delay, every cohort
    /// matures by one bin, and cohorts past `follow_bins` are dropped.
    pub fn step(&mut self, b: i64) {
        let bin = self.bin_ms as f64;
        let follow = self.follow_bins;
        let delays = &mut self.delays;
        let mut changed = false;
        self.cohorts.retain(|&c, co| {
            let lag = b - c;
            if lag < 0 {
                return true;
            }
            if co.new_children > 0 {
                co.stream.add(delays, None, (lag as f64 + 0.5) * bin, std::mem::take(&mut co.new_children));
            }
            let age = (lag + 1).min(follow);
            changed |= co.stream.mature(delays, None, age as f64 * bin);
            lag + 1 < follow
        });
        self.stale |= changed;
    }

    /// Recomputes the learned intervals if new delays were folded in.
    pub fn refresh(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        self.delays.refresh();
        if self.delays.observed() <= 0.0 {
            return;
        }
        let q99_bins = (self.delays.quantile(0.99) / self.bin_ms as f64).ceil() as i64;
        self.follow_bins = follow_for(q99_bins, self.min_follow_bins, self.max_follow_bins);
        let k_max = self.configured.len();
        let bin = self.bin_ms as f64;
        let mut w = Vec::with_capacity(k_max);
        let mut below = 0.0;
        for k in 0..k_max {
            let f = self.delays.cdf(lag_cdf_point(k, bin));
            w.push((f - below).max(0.0));
            below = f.max(below);
        }
        let mut r = w.clone();
        if r.len() > 1 {
            r[1] += r[0];
        }
        r[0] = 0.0;
        let total: f64 = r.iter().sum();
        if total > 0.0 {
            r.iter_mut().for_each(|x| *x /= total);
        }
        self.forecast = super::forecast::truncated_gi(&r);
        self.lineage = GenerationInterval::from_weights(w);
        self.renewal = GenerationInterval::from_weights(r);
    }

    /// The learned interval cut for the forecast; `None` until a delay is
    /// learned (the configured interval's cut applies).
    pub fn forecast(&self) -> Option<&[f64]> {
        (!self.forecast.is_empty()).then_some(self.forecast.as_slice())
    }

    /// The interval for the lineage estimator's censoring correction.
    pub fn lineage(&self) -> &GenerationInterval {
        &self.lineage
    }

    /// The interval for the renewal estimator.
    pub fn renewal(&self) -> &GenerationInterval {
        &self.renewal
    }

    /// How many bins the target's campaigns follow their clickers now.
    pub fn follow_bins(&self) -> i64 {
        self.follow_bins
    }

    /// Delays learned from.
    pub fn observed(&self) -> f64 {
        self.delays.observed()
    }

    /// The learned delay (ms, a lag of Δ bins counted as Δ + ½ bins) at
    /// quantile `q`: the learner's CDF as of the last [`refresh`](Self::refresh).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.delays.quantile(q)
    }

    /// Its delay sums, for the model file (cohorts still maturing are not
    /// in them: what they would still teach is lost with the process).
    pub fn to_model(&self) -> DelaySums {
        self.delays.to_sums()
    }

    /// Takes the sums a model file holds (checked by `LearnedModel::check`) in
    /// place of what it had learned.
    pub fn load(&mut self, m: &DelaySums) {
        if !self.delays.load_sums(m) {
            return;
        }
        self.stale = true;
        self.refresh();
    }

    /// What `/api/targets` and the metrics show.
    pub fn view(&self) -> super::GenerationIntervalView {
        super::GenerationIntervalView {
            median_s: self.quantile_ms(0.5) / 1000.0,
            p90_s: self.quantile_ms(0.9) / 1000.0,
            delays: self.observed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> GenerationInterval {
        GenerationInterval::from_mean_sd_bins(3.0, 1.5).expect("valid")
    }

    #[test]
    fn with_nothing_learned_the_configured_interval_is_used_exactly() {
        let g = configured();
        let mut l = GenerationLearner::new(&g, 60_000, 50.0, 60, 360);
        l.step(10);
        l.refresh();
        assert_eq!(l.lineage().weights(), g.weights());
        assert_eq!(l.renewal().weights(), g.weights());
    }

    /// Hand-checked case: every child two bins after its parent, many of
    /// them, a tiny prior: the lineage interval puts (almost) all its mass
    /// on Δ = 2, and the renewal interval too (w_0 = 0 there).
    #[test]
    fn learns_a_point_mass() {
        let g = configured();
        let mut l = GenerationLearner::new(&g, 60_000, 1e-3, 360, 360);
        for b in 0..400 {
            for _ in 0..10 {
                if b >= 2 {
                    l.child(b - 2);
                }
            }
            l.step(b);
        }
        l.refresh();
        let w = l.lineage().weights();
        assert!(w[2] > 0.99, "{:?}", &w[..5]);
        assert!(l.renewal().weights()[2] > 0.99);
        assert_eq!(l.renewal().weights()[0], 0.0);
    }

    /// Children in the parent's own bin count for the lineage interval
    /// (w_0) and move to w_1 for the renewal one.
    #[test]
    fn same_bin_children_move_to_lag_one_for_renewal() {
        let g = configured();
        let mut l = GenerationLearner::new(&g, 60_000, 1e-3, 360, 360);
        for b in 0..400 {
            l.child(b);
            if b >= 3 {
                l.child(b - 3);
            }
            l.step(b);
        }
        l.refresh();
        let (lw, rw) = (l.lineage().weights(), l.renewal().weights());
        assert!((lw[0] - 0.5).abs() < 0.02 && (lw[3] - 0.5).abs() < 0.02, "{:?}", &lw[..5]);
        assert!((rw[1] - 0.5).abs() < 0.02 && (rw[3] - 0.5).abs() < 0.02 && rw[0] == 0.0, "{:?}", &rw[..5]);
        let total: f64 = rw.iter().sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    /// Right truncation: a geometric delay with mean 20 bins, seen through
    /// cohorts of every age up to the end of the log. Counting only what has
    /// been seen makes short delays look too common; the learner's median
    /// lands near the true one.
    #[test]
    fn corrects_right_truncation() {
        let g = configured();
        let mut l = GenerationLearner::new(&g, 60_000, 1e-3, 10_000, 10_000);
        let p: f64 = 1.0 / 20.0;
        let end = 120;
        let (mut seen_short, mut seen) = (0.0, 0.0);
        for b in 0..end {
            for c in 0..=b {
                // Expected children at lag b − c of a cohort of 1000 clickers.
                let lag = b - c;
                let n = (1000.0 * p * (1.0 - p).powi(lag as i32)).round() as u32;
                for _ in 0..n {
                    l.child(c);
                }
                seen += f64::from(n);
                if lag < 14 {
                    seen_short += f64::from(n);
                }
            }
            l.step(b);
        }
        l.refresh();
        // True median of Δ: the smallest k with 1 − (1 − p)^(k+1) ≥ ½ → k = 13.
        let f13 = l.lineage().cdf(13);
        assert!((f13 - 0.51).abs() < 0.05, "F(13) = {f13}");
        assert!(seen_short / seen > 0.57, "naive pooling would say {}", seen_short / seen);
    }

    /// The horizon starts at twice the configured 99th percentile, settles
    /// at twice a short learned one, and grows with a long tail seen up to
    /// it, to its cap.
    #[test]
    fn the_follow_horizon_follows_the_learned_tail() {
        let g = configured();
        let mut l = GenerationLearner::new(&g, 60_000, 1e-3, 10, 80);
        assert_eq!(l.follow_bins(), 2 * configured_q99_bins(&g).max(5), "from the configured interval");
        for b in 0..300 {
            if b >= 5 {
                l.child(b - 5);
            }
            l.step(b);
            l.refresh();
        }
        assert_eq!(l.follow_bins(), 12, "every child 5 bins late: 2 × 6 (the 99th percentile's bin, ceiled)");
        // Lags spread evenly over 1 … 60 bins: at first only those below the
        // horizon (16) link; the tail seen up to it doubles the horizon, and
        // again, up to the cap.
        let mut l = GenerationLearner::new(&g, 60_000, 1e-3, 10, 80);
        let mut horizons = vec![l.follow_bins()];
        for b in 0..600 {
            for lag in 1..=60 {
                if b >= lag && lag < l.follow_bins() {
                    l.child(b - lag);
                }
            }
            l.step(b);
            l.refresh();
            if horizons.last() != Some(&l.follow_bins()) {
                horizons.push(l.follow_bins());
            }
        }
        assert_eq!(horizons.first(), Some(&16));
        assert_eq!(horizons.last(), Some(&80), "the horizon grows to its cap: {horizons:?}");
        assert!(horizons.len() >= 3, "in steps: {horizons:?}");
    }

    #[test]
    fn cohorts_are_dropped_after_the_follow_horizon() {
        let mut l = GenerationLearner::new(&configured(), 60_000, 50.0, 5, 5);
        l.child(0);
        l.step(0);
        assert_eq!(l.cohorts.len(), 1);
        l.step(4);
        assert!(l.cohorts.is_empty());
    }
}

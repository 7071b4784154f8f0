//! The prior of R, learned per target from its campaigns' matured cohorts
//! (empirical Bayes).
//!
//! **Why.** Both estimators update a Gamma prior on R (Cori et al. 2013,
//! eq. 2; the lineage estimator's quasi-Poisson posterior, `lineage.rs`).
//! EpiEstim's default, mean 5 and sd 5, is a deliberately vague prior for
//! epidemics. Pass-along of real mailings is sub-critical (median 0.17 on
//! the Twitter cascades) and heavily overdispersed, and the lineage
//! estimator tempers its likelihood by the dispersion φ (often 10–100 on
//! real cascades): the data then weigh a few pseudo-observations, and a
//! prior centred on 5 pulls every estimate up (Twitter: bias +51 %, onsets
//! in windows whose realised R was below 0.8).
//!
//! **What is learned.** A cohort of clickers that leaves the lineage window
//! at age `L` bins has shown `y` offspring for an exposure `n·F(L)` (its
//! clickers × the share of their offspring the generation interval says has
//! clicked by then). Pooled over the target's cohorts, `Σ y / Σ n·F(L)` is
//! the target's mean offspring per clicker, estimated as the lineage
//! estimator does, and with the configured prior as pseudo-counts
//! (`shape`, `1/scale`) the learned mean is
//!
//! ```text
//! m = (a₀ + Σ y) / (1/b₀ + Σ n·F(L))
//! ```
//!
//! The prior a campaign of the target is estimated with keeps the
//! configured prior's **shape** (its weight: one pseudo-offspring with the
//! default) and takes `m` as its mean: `Gamma(a₀, m/a₀)`. So the prior moves
//! to where the target's pass-along is, without becoming stronger in
//! pseudo-offspring. Its weight in pseudo-clickers, `a₀/m`, grows as `m`
//! falls; it is capped at [`MAX_PRIOR_CLICKERS`] (below
//! `m = a₀ / MAX_PRIOR_CLICKERS` the shape shrinks to `MAX_PRIOR_CLICKERS · m`),
//! so that a target whose mailings have barely been passed on cannot hold
//! down the estimate of one that suddenly is. Until [`MIN_EXPOSURE`]
//! clickers' worth of exposure has matured, the configured prior is used as
//! it is.
//!
//! Cohorts are pooled when bins close, and what a bin step learns is applied
//! after every campaign of that step has been estimated ([`RPriorLearner::commit`]),
//! so the estimates do not depend on the order campaigns are stepped in.

use super::model_file::RPriorSums;
use super::renewal::Prior;

/// Matured exposure (clickers × F) needed before the learned mean is used.
pub const MIN_EXPOSURE: f64 = 100.0;
/// The most clickers' worth of exposure the learned prior may weigh.
pub const MAX_PRIOR_CLICKERS: f64 = 10.0;

/// A target's learned prior of R.
#[derive(Clone, Debug)]
pub struct RPriorLearner {
    /// The configured prior.
    configured: Prior,
    /// Σ offspring of matured cohorts.
    offspring: f64,
    /// Σ n·F(L) of the same cohorts.
    exposure: f64,
    /// Offspring of the bin step being made (applied by `commit`).
    pending_offspring: f64,
    /// Exposure of the bin step being made.
    pending_exposure: f64,
}

impl RPriorLearner {
    /// A target with no past: the configured prior.
    pub fn new(configured: Prior) -> Self {
        RPriorLearner { configured, offspring: 0.0, exposure: 0.0, pending_offspring: 0.0, pending_exposure: 0.0 }
    }

    /// A cohort left the lineage window: `offspring` seen for `exposure` = n·F(L).
    pub fn add_cohort(&mut self, offspring: u64, exposure: f64) {
        self.pending_offspring += offspring as f64;
        self.pending_exposure += exposure;
    }

    /// The bin step is over: what it learned counts from now on.
    pub fn commit(&mut self) {
        self.offspring += std::mem::take(&mut self.pending_offspring);
        self.exposure += std::mem::take(&mut self.pending_exposure);
    }

    /// The prior a campaign of this target is estimated with.
    pub fn prior(&self) -> Prior {
        if self.exposure < MIN_EXPOSURE {
            return self.configured;
        }
        let a0 = self.configured.shape();
        let mean = (a0 + self.offspring) / (1.0 / self.configured.scale() + self.exposure);
        let shape = a0.min(MAX_PRIOR_CLICKERS * mean);
        Prior { mean, sd: mean / shape.sqrt() }
    }

    /// What it learned, for the model file.
    pub fn to_model(&self) -> RPriorSums {
        RPriorSums { offspring: self.offspring, exposure: self.exposure }
    }

    /// Takes what a model file holds in place of what it had learned.
    pub fn load(&mut self, m: RPriorSums) {
        self.offspring = m.offspring;
        self.exposure = m.exposure;
    }

    /// Matured exposure learned from (clickers × F).
    pub fn exposure(&self) -> f64 {
        self.exposure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target whose pass-along is near zero: 1 offspring over an
    /// exposure of 1000 → m = 2 / 1000.2; the shape would make the prior
    /// weigh a₀/m ≈ 500 clickers, so it shrinks to 10·m and the prior
    /// weighs 10 (shape/mean = 1/scale).
    #[test]
    fn a_near_zero_mean_does_not_make_the_prior_strong() {
        let mut l = RPriorLearner::new(Prior::default());
        l.add_cohort(1, 1000.0);
        l.commit();
        let p = l.prior();
        assert!((p.mean - 2.0 / 1000.2).abs() < 1e-12, "{p:?}");
        assert!((1.0 / p.scale() - MAX_PRIOR_CLICKERS).abs() < 1e-9, "{p:?}");
        assert!((p.shape() - MAX_PRIOR_CLICKERS * p.mean).abs() < 1e-12);
    }

    #[test]
    fn until_enough_has_matured_the_configured_prior_holds() {
        let mut l = RPriorLearner::new(Prior::default());
        l.add_cohort(10, 50.0);
        assert_eq!(l.prior(), Prior::default(), "not committed yet");
        l.commit();
        assert_eq!(l.prior(), Prior::default(), "50 < MIN_EXPOSURE");
    }

    /// Hand-computed: prior mean 5, sd 5 (a₀ = 1, 1/b₀ = 0.2); 40 offspring
    /// over an exposure of 200 → m = 41 / 200.2; the shape stays 1.
    #[test]
    fn the_mean_moves_to_the_pooled_offspring_per_clicker() {
        let mut l = RPriorLearner::new(Prior::default());
        l.add_cohort(30, 120.0);
        l.add_cohort(10, 80.0);
        l.commit();
        let p = l.prior();
        assert!((p.mean - 41.0 / 200.2).abs() < 1e-12, "{p:?}");
        assert!((p.shape() - 1.0).abs() < 1e-12);
        assert!((p.scale() - p.mean).abs() < 1e-12);
    }
}

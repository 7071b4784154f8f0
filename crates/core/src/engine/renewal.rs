//! The renewal-equation estimator of R of Cori et al. (2013), with imported
//! cases as in Thompson et al. (2019) — what EpiEstim's
//! `estimate_R(method = "parametric_si")` computes.
//!
//! * A. Cori, N. M. Ferguson, C. Fraser, S. Cauchemez, "A new framework and
//!   software to estimate time-varying reproduction numbers during
//!   epidemics", Am J Epidemiol 178(9):1505–1512 (2013), eqs. 1–2 and Web
//!   Appendix 1.
//! * R. N. Thompson et al., "Improved inference of time-varying reproduction
//!   numbers during infectious disease outbreaks", Epidemics 29:100356 (2019)
//!   — local vs imported cases.
//! * EpiEstim 2.2-4, `R/estimate_R.R` (`estimate_R_func`,
//!   `posterior_from_si_distr`) and `R/utils.R` (`overall_infectivity`,
//!   `process_I`).
//!
//! ## Model
//!
//! In bin t, local incidence is Poisson with mean R_τ Λ_t (eq. 1), where the
//! infectivity (total infection pressure) is
//!
//! ```text
//! Λ_t = Σ_{s=1}^{t} w_s (I^local_{t−s} + I^imported_{t−s})
//! ```
//!
//! and w is the discretised generation interval
//! ([`super::generation_interval`]; w_0 = 0, weights past its end count as 0).
//! Imported cases infect others but were not infected by the local chain:
//! they enter Λ and never the likelihood's counts (Thompson et al. 2019).
//!
//! With R constant over the window τ = [t_start, t_end] and a Gamma prior with
//! shape a and scale b, the posterior is (eq. 2 / Web Appendix 1)
//!
//! ```text
//! R_τ | I  ~  Gamma( shape = a + Σ_{s∈τ} I^local_s ,  scale = 1 / (1/b + Σ_{s∈τ} Λ_s) ).
//! ```
//!
//! ## EpiEstim conventions (what a caller must do to reproduce `estimate_R`)
//!
//! * First bin: EpiEstim treats *all* cases of its first time step as
//!   imported (`process_I` moves `local[1]` to `imported[1]`), Λ_1 is NA, and
//!   `t_start`, `t_end` must lie in 2..T (1-based) — index 1..T−1 here. This
//!   module does no such rewriting: Λ_0 = 0 and bin 0 may be in a window.
//! * EpiEstim reports NA for a window unless `t_end` (1-based) exceeds the
//!   mean of its `si_distr`; this module always returns the posterior.
//! * EpiEstim's w is `discr_si(0:(T−1))`, not renormalised (see
//!   [`super::generation_interval`] for the difference from the truncated
//!   `GenerationInterval` weights).

use super::gamma::Gamma;

/// Gamma prior on R given by its mean and sd (EpiEstim `mean_prior` /
/// `std_prior`, default 5 / 5, i.e. shape 1, scale 5 — deliberately vague, Cori
/// et al. 2013, Web Appendix 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prior {
    /// Prior mean of R (> 0).
    pub mean: f64,
    /// Prior standard deviation of R (> 0).
    pub sd: f64,
}

impl Default for Prior {
    /// EpiEstim's default, mean 5 and sd 5.
    fn default() -> Self {
        Prior { mean: 5.0, sd: 5.0 }
    }
}

impl Prior {
    /// Shape a = (mean / sd)² (EpiEstim: `a_prior <- (mean_prior/std_prior)^2`).
    pub fn shape(&self) -> f64 {
        (self.mean / self.sd).powi(2)
    }

    /// Scale b = sd² / mean (EpiEstim: `b_prior <- std_prior^2/mean_prior`).
    pub fn scale(&self) -> f64 {
        self.sd * self.sd / self.mean
    }
}

/// Infectivity Λ_t = Σ_{s=1}^{t} w_s (local[t−s] + imported[t−s]) for one
/// bin t (0-based), with w_s = 0 for s ≥ `w.len()` (EpiEstim's
/// `overall_infectivity`, whose w_0 = 0 term is omitted here). Entries
/// missing from `local` or `imported` (shorter slices) count as 0. Λ_0 = 0.
pub fn infectivity(local: &[f64], imported: &[f64], w: &[f64], t: usize) -> f64 {
    let at = |x: &[f64], i: usize| x.get(i).copied().unwrap_or(0.0);
    w.iter().enumerate().take(t.saturating_add(1)).skip(1).map(|(s, ws)| ws * (at(local, t - s) + at(imported, t - s))).sum()
}

/// The posterior of R from window sums:
/// Gamma(shape = a + `sum_local`, scale = 1 / (1/b + `sum_lambda`)), where
/// `sum_local` = Σ_{s∈τ} I^local_s and `sum_lambda` = Σ_{s∈τ} Λ_s (Cori et
/// al. 2013, eq. 2). Used by the engine, which accumulates both sums
/// incrementally.
pub fn posterior_from_sums(sum_local: f64, sum_lambda: f64, prior: Prior) -> Gamma {
    Gamma { shape: prior.shape() + sum_local, scale: 1.0 / (1.0 / prior.scale() + sum_lambda) }
}

/// Posterior of R over the window [`t_start`, `t_end`] (inclusive, 0-based
/// bin indices into `local` and `imported`):
///
/// ```text
/// Gamma(shape = a + Σ_{t=t_start}^{t_end} local[t],
///       scale = 1 / (1/b + Σ_{t=t_start}^{t_end} Λ_t))
/// ```
///
/// with Λ_t from [`infectivity`] — imported cases enter Λ only (Cori et al.
/// 2013, eq. 2; Thompson et al. 2019). To reproduce EpiEstim, apply its
/// first-bin rule (all bin-0 cases imported) to the inputs and use
/// `t_start ≥ 1` (see the module docs). Bins past the end of the slices count
/// as zero incidence; an empty window (`t_start > t_end`) gives the prior.
pub fn posterior(local: &[f64], imported: &[f64], w: &[f64], t_start: usize, t_end: usize, prior: Prior) -> Gamma {
    let (mut sum_local, mut sum_lambda) = (0.0, 0.0);
    for t in t_start..=t_end {
        sum_local += local.get(t).copied().unwrap_or(0.0);
        sum_lambda += infectivity(local, imported, w, t);
    }
    posterior_from_sums(sum_local, sum_lambda, prior)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-14 * b.abs().max(1.0)
    }

    #[test]
    fn prior_is_epiestim_default() {
        let p = Prior::default();
        assert_eq!((p.shape(), p.scale()), (1.0, 5.0));
        let p = Prior { mean: 2.0, sd: 3.0 };
        assert!(close(p.shape(), 4.0 / 9.0) && close(p.scale(), 4.5));
    }

    #[test]
    fn hand_computed_window() {
        // w = (0, ½, ½); bin 0 has 2 imported cases, later bins local only.
        let w = [0.0, 0.5, 0.5];
        let local = [0.0, 2.0, 4.0, 6.0];
        let imported = [2.0, 0.0, 0.0, 0.0];
        // Λ_0 = 0; Λ_1 = ½·2 = 1; Λ_2 = ½·2 + ½·2 = 2; Λ_3 = ½·4 + ½·2 = 3.
        let lam: Vec<f64> = (0..4).map(|t| infectivity(&local, &imported, &w, t)).collect();
        assert_eq!(lam, vec![0.0, 1.0, 2.0, 3.0]);
        // Window 1..=3: Σ local = 12, Σ Λ = 6; prior 5/5 → a = 1, b = 5:
        // shape 13, scale 1/(0.2 + 6) = 1/6.2, mean 13/6.2, sd √13/6.2.
        let g = posterior(&local, &imported, &w, 1, 3, Prior::default());
        assert!(close(g.shape, 13.0) && close(g.scale, 1.0 / 6.2));
        assert!(close(g.mean(), 13.0 / 6.2) && close(g.sd(), 13f64.sqrt() / 6.2));
        assert_eq!(g, posterior_from_sums(12.0, 6.0, Prior::default()));
        // Imported cases are not counted as offspring: moving bin 1's cases to
        // "imported" keeps Λ_2, Λ_3 but lowers the shape.
        let g2 = posterior(&[0.0, 0.0, 4.0, 6.0], &[2.0, 2.0, 0.0, 0.0], &w, 1, 3, Prior::default());
        assert!(close(g2.shape, 11.0) && close(g2.scale, 1.0 / 6.2));
    }

    #[test]
    fn weights_beyond_support_and_short_inputs_are_zero() {
        let w = [0.0, 1.0];
        let local = [5.0, 7.0, 11.0];
        // Only lag 1 contributes.
        assert_eq!(infectivity(&local, &[], &w, 2), 7.0);
        assert_eq!(infectivity(&local, &[], &w, 0), 0.0);
        // t beyond the data: lag-1 bin 3 is missing → 0; bin 2 → 11 at t = 3.
        assert_eq!(infectivity(&local, &[], &w, 3), 11.0);
        assert_eq!(infectivity(&local, &[], &w, 5), 0.0);
        // Empty window: the prior.
        let g = posterior(&local, &[], &w, 2, 1, Prior::default());
        assert_eq!((g.shape, g.scale), (1.0, 5.0));
    }
}

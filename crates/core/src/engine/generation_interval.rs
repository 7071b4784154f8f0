//! The generation interval discretised onto bins, exactly as EpiEstim's
//! `discr_si` (EpiEstim 2.2-4, `R/discr_si.R`; Cori et al. 2013, Am J
//! Epidemiol 178(9):1505–1512, Web Appendix 11).
//!
//! The continuous interval is 1 + Gamma(shape a, scale b) with
//! a = ((μ − 1)/σ)², b = σ²/(μ − 1), so that its mean is μ and its sd σ (in
//! bins). Integrating it against the triangular kernel of width two bins
//! around k gives (F_s = Gamma CDF with shape s and scale b, F_s(x) = 0 for
//! x ≤ 0):
//!
//! ```text
//! w_k = k F_a(k) + (k−2) F_a(k−2) − 2(k−1) F_a(k−1)
//!       + a b (2 F_{a+1}(k−1) − F_{a+1}(k−2) − F_{a+1}(k)),   clamped at 0.
//! ```
//!
//! w_0 = 0 exactly, and Σ_k w_k = 1 and Σ_k k w_k = μ (telescoping).
//!
//! ## Truncation (and how it differs from EpiEstim)
//!
//! [`GenerationInterval`] keeps w_0 … w_K, where K is the first k with
//! Σ_{j≤k} w_j ≥ 1 − 1e-9, and does **not** renormalise. EpiEstim's
//! `estimate_R(method = "parametric_si")` (internal `estimate_R_func`) uses
//! `discr_si(0:(T-1), mean_si, std_si)` for an incidence series of length T —
//! the same values, also not renormalised, but cut at T − 1 rather than at a
//! mass threshold. Because Λ_t only ever uses w_1 … w_t, EpiEstim's Λ is the
//! untruncated sum; ours omits Σ_{s>K} w_s I_{t−s}, at most 1e-9 × the largest
//! incidence more than K bins back. The two agree exactly when t ≤ K, and the
//! difference is negligible unless incidence has collapsed by orders of
//! magnitude within the window (`tests/epiestim_reference.rs` checks both).

use super::gamma::gamma_p;

/// Truncate the support where the cumulative mass first reaches `1 − TAIL`.
pub const TAIL: f64 = 1e-9;

/// Hard cap on the support length (bins), far beyond any sensible interval.
const MAX_LEN: usize = 1_000_000;

/// EpiEstim's `discr_si(k, mu, sigma)`: the probability that the generation
/// (serial) interval is `k` bins, for the offset Gamma with mean `mu` and sd
/// `sigma` in bins (formula in the module docs). Bit-for-bit the same
/// arithmetic as the R function up to the incomplete-gamma implementation
/// (agreement ~1e-15 absolute, tested).
///
/// EpiEstim stops with an error for `mu ≤ 1` or `sigma < 0`; this returns NaN
/// for `mu ≤ 1`, `sigma ≤ 0` or non-finite arguments (σ = 0 also gives NaN in
/// R).
pub fn discr_si(k: usize, mu: f64, sigma: f64) -> f64 {
    if !(mu > 1.0 && mu.is_finite() && sigma > 0.0 && sigma.is_finite()) {
        return f64::NAN;
    }
    let a = ((mu - 1.0) / sigma).powi(2);
    let b = sigma * sigma / (mu - 1.0);
    // R: stats::pgamma(k, shape = a, scale = b); 0 for k ≤ 0.
    let cdf = |shape: f64, x: f64| gamma_p(shape, x / b);
    let k = k as f64;
    let res = k * cdf(a, k) + (k - 2.0) * cdf(a, k - 2.0) - 2.0 * (k - 1.0) * cdf(a, k - 1.0);
    let res = res + a * b * (2.0 * cdf(a + 1.0, k - 1.0) - cdf(a + 1.0, k - 2.0) - cdf(a + 1.0, k));
    res.max(0.0)
}

/// The discretised generation interval w_k = `discr_si(k, μ, σ)`,
/// k = 0, 1, …, K, truncated at the first K where the cumulative mass reaches
/// 1 − 1e-9 and not renormalised (see the module docs for why, and for the
/// comparison with EpiEstim, whose `estimate_R` uses the same values cut at
/// the series length instead).
#[derive(Clone, Debug)]
pub struct GenerationInterval {
    w: Vec<f64>,
    cum: Vec<f64>,
}

impl GenerationInterval {
    /// From the mean `mu` and sd `sigma` of the generation interval, in bins.
    ///
    /// Errors (with the reason) unless `mu > 1` bin — EpiEstim's offset-Gamma
    /// discretisation puts the interval at 1 + Gamma, so its mean must exceed
    /// one bin (EpiEstim: "method parametric_si requires a value >1 for
    /// config$mean_si") — and `sigma > 0`, both finite.
    pub fn from_mean_sd_bins(mu: f64, sigma: f64) -> Result<Self, String> {
        if !(mu > 1.0 && mu.is_finite()) {
            return Err(format!(
                "generation interval mean must be finite and more than one bin (the discretisation is 1 + Gamma, as EpiEstim's discr_si); got {mu} bins"
            ));
        }
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(format!("generation interval sd must be finite and positive; got {sigma} bins"));
        }
        let mut w = Vec::new();
        let mut cum = Vec::new();
        let mut total = 0.0;
        for k in 0..MAX_LEN {
            let v = discr_si(k, mu, sigma);
            total += v;
            w.push(v);
            cum.push(total);
            if total >= 1.0 - TAIL {
                break;
            }
        }
        if total < 1.0 - TAIL {
            return Err(format!(
                "generation interval (mean {mu}, sd {sigma} bins) does not reach 1 - {TAIL} of its mass within {MAX_LEN} bins"
            ));
        }
        Ok(GenerationInterval { w, cum })
    }

    /// Given weights `w_0 … w_K` (a learned interval,
    /// `generation_learner.rs`), taken as they are.
    pub fn from_weights(w: Vec<f64>) -> Self {
        let mut total = 0.0;
        let cum = w
            .iter()
            .map(|x| {
                total += x;
                total
            })
            .collect();
        GenerationInterval { w, cum }
    }

    /// w_0, w_1, …, w_K (w_0 = 0; sums to ≥ 1 − 1e-9, not renormalised).
    pub fn weights(&self) -> &[f64] {
        &self.w
    }

    /// Support length K + 1 in bins (the number of weights).
    pub fn len(&self) -> usize {
        self.w.len()
    }

    /// Whether there are no weights (never, for a successfully built value).
    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Σ_{k ≤ lag} w_k (precomputed). Beyond the support it stays at the
    /// total retained mass (≥ 1 − 1e-9).
    pub fn cdf(&self, lag: usize) -> f64 {
        match self.cum.get(lag) {
            Some(&c) => c,
            None => self.cum.last().copied().unwrap_or(0.0),
        }
    }

    /// Mean of the retained (truncated) weights, Σ_k k w_k, in bins —
    /// slightly below μ because of the truncated tail. This is what EpiEstim
    /// reports as `SI.Moments$Mean` (there over 0..T−1) and compares `t_end`
    /// against.
    pub fn mean_bins(&self) -> f64 {
        self.w.iter().enumerate().map(|(k, w)| k as f64 * w).sum()
    }
}

#[cfg(test)]
// Reference values are R's sprintf("%.17g") output, pasted verbatim.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    #[test]
    fn discr_si_against_epiestim() {
        // R: for (ps in list(c(2.6,1.5), c(3,1.5), c(17,10), c(1.2,0.3), c(6.48,3.83)))
        //      for (k in c(0,1,2,3,5,10,25)) cat(sprintf("%.17g", EpiEstim::discr_si(k, ps[1], ps[2])))
        // (EpiEstim 2.2-4)
        let cases = [
            (0, 2.6, 1.5, 0.0),
            (1, 2.6, 1.5, 0.233_172_125_407_541_2),
            (2, 2.6, 1.5, 0.358_579_400_315_596_87),
            (3, 2.6, 1.5, 0.198_110_828_540_313_56),
            (5, 2.6, 1.5, 0.052_905_175_247_813_935),
            (10, 2.6, 1.5, 0.001_694_674_109_790_383_6),
            (25, 2.6, 1.5, 4.527_298_678_169_702_1e-8),
            (0, 3.0, 1.5, 0.0),
            (1, 3.0, 1.5, 0.119_187_378_778_894_88),
            (2, 3.0, 1.5, 0.332_896_531_608_883_49),
            (3, 3.0, 1.5, 0.254_481_932_161_642_5),
            (5, 3.0, 1.5, 0.076_232_593_319_660_147),
            (10, 3.0, 1.5, 0.001_710_948_242_100_718_3),
            (25, 3.0, 1.5, 5.990_833_829_017_105_9e-9),
            (0, 17.0, 10.0, 0.0),
            (1, 17.0, 10.0, 0.000_663_368_782_446_522_84),
            (2, 17.0, 10.0, 0.005_837_223_727_547_517_8),
            (3, 17.0, 10.0, 0.014_149_667_294_156_711),
            (5, 17.0, 10.0, 0.030_190_284_255_079_289),
            (10, 17.0, 10.0, 0.048_167_227_658_761_233),
            (25, 17.0, 10.0, 0.020_224_403_967_251_454),
            (0, 1.2, 0.3, 0.0),
            (1, 1.2, 0.3, 0.811_454_179_876_044_73),
            (2, 1.2, 0.3, 0.178_050_531_581_239_07),
            (3, 1.2, 0.3, 0.009_623_855_368_674_220_2),
            (5, 1.2, 0.3, 7.163_191_995_995_788_2e-5),
            (10, 1.2, 0.3, 6.610_257_008_432_510_9e-10),
            (25, 1.2, 0.3, 0.0),
            (0, 6.48, 3.83, 0.0),
            (1, 6.48, 3.83, 0.017_376_539_967_187_195),
            (2, 6.48, 3.83, 0.085_389_001_593_268_898),
            (3, 6.48, 3.83, 0.125_177_651_069_423_38),
            (5, 6.48, 3.83, 0.124_494_813_771_947_14),
            (10, 6.48, 3.83, 0.045_354_527_973_433_104),
            (25, 6.48, 3.83, 0.000_468_814_771_973_012_11),
        ];
        for (k, mu, sigma, want) in cases {
            let got = discr_si(k, mu, sigma);
            // Relative 1e-12, or 1e-15 absolute where the formula cancels (tail).
            assert!((got - want).abs() <= 1e-12 * want + 1e-15, "discr_si({k}, {mu}, {sigma}) = {got:e}, EpiEstim {want:e}");
        }
        assert!(discr_si(3, 1.0, 1.0).is_nan() && discr_si(3, 2.0, 0.0).is_nan());
    }

    #[test]
    fn truncation_matches_epiestim_cumsum() {
        // R: w <- EpiEstim::discr_si(0:500, mu, sigma); cs <- cumsum(w); L <- which(cs >= 1 - 1e-9)[1]
        //    cat(L, sprintf("%.17g", c(cs[L], sum(w[1:L] * (0:(L-1))))))
        let cases = [
            (2.6, 1.5, 32, 0.999_999_999_362_372_72, 2.599_999_978_975_589_4),
            (17.0, 10.0, 161, 0.999_999_999_009_322_35, 16.999_999_834_422_866),
            (1.2, 0.3, 10, 0.999_999_999_263_861_85, 1.199_999_992_554_907_6),
        ];
        for (mu, sigma, len, cum, mean) in cases {
            let gi = GenerationInterval::from_mean_sd_bins(mu, sigma).expect("valid");
            assert_eq!(gi.len(), len, "mu {mu} sigma {sigma}");
            assert!(!gi.is_empty());
            assert_eq!(gi.weights()[0], 0.0);
            assert!((gi.cdf(len - 1) - cum).abs() < 1e-13);
            assert_eq!(gi.cdf(len + 10), gi.cdf(len - 1));
            assert!((gi.mean_bins() - mean).abs() < 1e-12 * mean);
            // Mass retained: 1 − 1e-9 ≤ Σ w ≤ 1 (hand check: not renormalised).
            let total: f64 = gi.weights().iter().sum();
            assert!((1.0 - TAIL..=1.0 + 1e-12).contains(&total), "total {total}");
            assert!((gi.cdf(len - 1) - total).abs() < 1e-15);
            // The first k reaching the threshold: the previous one did not.
            assert!(gi.cdf(len - 2) < 1.0 - TAIL);
        }
    }

    #[test]
    fn full_support_sums_to_one_with_mean_mu() {
        // Telescoping: Σ_k w_k = 1 and Σ_k k w_k = μ for the untruncated discretisation.
        for (mu, sigma) in [(2.6, 1.5), (17.0, 10.0), (1.2, 0.3), (4.0, 6.0)] {
            let w: Vec<f64> = (0..2000).map(|k| discr_si(k, mu, sigma)).collect();
            let total: f64 = w.iter().sum();
            let mean: f64 = w.iter().enumerate().map(|(k, w)| k as f64 * w).sum();
            // The formula cancels ~k·F terms, so rounding accumulates over the
            // tail: EpiEstim itself gives sum(discr_si(0:1999, 4, 6)) = 1.0000000000028917.
            assert!((total - 1.0).abs() < 1e-11, "mu {mu} sigma {sigma}: total {total}");
            assert!((mean - mu).abs() < 1e-9 * mu, "mu {mu} sigma {sigma}: mean {mean}");
        }
    }

    #[test]
    fn rejects_invalid_parameters() {
        let e = GenerationInterval::from_mean_sd_bins(1.0, 0.5).expect_err("mean 1");
        assert!(e.contains("more than one bin"), "{e}");
        let e = GenerationInterval::from_mean_sd_bins(3.0, 0.0).expect_err("sd 0");
        assert!(e.contains("positive"), "{e}");
        assert!(GenerationInterval::from_mean_sd_bins(f64::NAN, 1.0).is_err());
        assert!(GenerationInterval::from_mean_sd_bins(3.0, f64::INFINITY).is_err());
    }
}

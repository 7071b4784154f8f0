//! The generation interval discretised onto bins, exactly as EpiEstim's
//! `discr_si` (Cori et al. 2013, Web Appendix 11).

use super::gamma::Gamma;

/// EpiEstim's `discr_si(k, mu, sigma)`: probability that the generation
/// interval is `k` bins, for an offset Gamma (1 + Gamma with mean `mu − 1`, sd
/// `sigma`), mean and sd in bins.
pub fn discr_si(k: usize, mu: f64, sigma: f64) -> f64 {
    let a = ((mu - 1.0) / sigma).powi(2);
    let b = sigma * sigma / (mu - 1.0);
    let f = |shape: f64, x: f64| if x <= 0.0 { 0.0 } else { Gamma { shape, scale: b }.cdf(x) };
    let k = k as f64;
    let w = k * f(a, k) + (k - 2.0) * f(a, k - 2.0) - 2.0 * (k - 1.0) * f(a, k - 1.0)
        + a * b * (2.0 * f(a + 1.0, k - 1.0) - f(a + 1.0, k - 2.0) - f(a + 1.0, k));
    w.max(0.0)
}

/// The discretised generation interval `w_k`, k = 0, 1, …, truncated where the
/// cumulative mass reaches 1 − 1e-4 (not renormalised).
#[derive(Clone, Debug)]
pub struct GenerationInterval {
    w: Vec<f64>,
    cum: Vec<f64>,
}

impl GenerationInterval {
    /// From mean and sd in bins; needs mean > 1 and sd > 0.
    pub fn from_mean_sd_bins(mu: f64, sigma: f64) -> Result<Self, String> {
        if !(mu > 1.0 && mu.is_finite()) {
            return Err(format!("mean must be more than one bin (got {mu:.3} bins)"));
        }
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(format!("sd must be positive (got {sigma:.3} bins)"));
        }
        let mut w = Vec::new();
        let mut cum = Vec::new();
        let mut total = 0.0;
        for k in 0..100_000 {
            let v = discr_si(k, mu, sigma);
            total += v;
            w.push(v);
            cum.push(total);
            if total >= 1.0 - 1e-4 && k > 0 {
                break;
            }
        }
        Ok(GenerationInterval { w, cum })
    }

    /// w_0, w_1, … (w_0 = 0).
    pub fn weights(&self) -> &[f64] {
        &self.w
    }

    /// Support length in bins.
    pub fn len(&self) -> usize {
        self.w.len()
    }

    /// Whether the support is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Σ_{k ≤ lag} w_k.
    pub fn cdf(&self, lag: usize) -> f64 {
        match self.cum.get(lag) {
            Some(&c) => c,
            None => self.cum.last().copied().unwrap_or(1.0),
        }
    }

    /// Mean of the discretised distribution, in bins.
    pub fn mean_bins(&self) -> f64 {
        self.w.iter().enumerate().map(|(k, w)| k as f64 * w).sum()
    }
}

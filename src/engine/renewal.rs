//! Cori et al. (2013) renewal estimator.

use super::gamma::Gamma;

/// Gamma prior of R given by mean and sd.
#[derive(Clone, Copy, Debug)]
pub struct Prior {
    /// Prior mean.
    pub mean: f64,
    /// Prior sd.
    pub sd: f64,
}

impl Prior {
    /// a = (mean/sd)².
    pub fn shape(&self) -> f64 {
        (self.mean / self.sd).powi(2)
    }
    /// b = sd²/mean.
    pub fn scale(&self) -> f64 {
        self.sd * self.sd / self.mean
    }
}

/// Λ_t = Σ_{s≥1} w_s (local + imported)_{t−s}.
pub fn infectivity(local: &[f64], imported: &[f64], w: &[f64], t: usize) -> f64 {
    (1..w.len().min(t + 1)).map(|s| w[s] * (local[t - s] + imported[t - s])).sum()
}

/// Posterior from the window sums.
pub fn posterior_from_sums(sum_local: f64, sum_lambda: f64, prior: Prior) -> Gamma {
    Gamma { shape: prior.shape() + sum_local, scale: 1.0 / (1.0 / prior.scale() + sum_lambda) }
}

/// Posterior over the window [t_start, t_end].
pub fn posterior(local: &[f64], imported: &[f64], w: &[f64], t_start: usize, t_end: usize, prior: Prior) -> Gamma {
    let (mut sl, mut slam) = (0.0, 0.0);
    for t in t_start..=t_end {
        sl += local[t];
        slam += infectivity(local, imported, w, t);
    }
    posterior_from_sums(sl, slam, prior)
}

//! The predictive distribution of a click count: a negative binomial matched
//! to a mean and a variance, with its quantiles and the CRPS of an outcome.
//!
//! A forecast of clicks in (t, t + H] has a mean μ and a variance v ≥ μ (the
//! Poisson noise of the clicks themselves is part of v; see
//! [`super::forecast::predictive`] for what else is). A Gamma–Poisson
//! mixture — the negative binomial — is the usual count distribution with
//! those two moments: size r = μ² / (v − μ), success probability
//! p = r / (r + μ), pmf
//!
//! ```text
//! P(X = k) = Γ(k + r) / (Γ(r) k!) · p^r (1 − p)^k
//! ```
//!
//! (e.g. Lindén & Mäntyniemi 2011, Ecology 92(7):1414–1421, for the mean–
//! variance parametrisation). When v is within one part in 10⁹ of μ (no
//! extra-Poisson variance) the Poisson(μ) is used instead.
//!
//! **CRPS.** The continuous ranked probability score of a predictive CDF F
//! for an outcome y is `∫ (F(x) − 1{x ≥ y})² dx` (Gneiting & Raftery 2007,
//! JASA 102(477):359–378, eq. 20). For a distribution on the integers F is
//! constant on each [k, k + 1), so the integral is the sum
//! `Σ_k (F(k) − 1{k ≥ y})²` over k ≥ 0 (Czado, Gneiting & Held 2009,
//! Biometrics 65:1254–1261). It is in the units of the count (clicks), it
//! equals the absolute error for a point forecast, and lower is better.
//!
//! Everything is computed from a table of the pmf over the range where the
//! distribution has its mass (μ ± 10 sd, widened for small counts), walked
//! from ln P at the range's start (via `ln_gamma`) with the ratio
//! `P(k + 1) / P(k)`, so a count in the thousands costs a few hundred
//! multiplications, not a `ln_gamma` per term.

use super::gamma::{ln_gamma, Gamma};

/// A predictive distribution of a count, given by its mean and variance.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CountForecast {
    /// Expected count μ.
    pub mean: f64,
    /// Variance v (at least μ; raised to μ if given less).
    pub variance: f64,
}

/// Above this standard deviation (clicks) the count is treated as continuous:
/// quantiles and CRPS come from the Gamma with the same mean and variance
/// (a table would hold 20 × sd entries; at this scale a click more or less is
/// far below the forecast's own error).
pub const CONTINUOUS_SD: f64 = 500.0;

/// Most entries a table may have (a bound on memory and time whatever the
/// moments; below [`CONTINUOUS_SD`] a table needs about 20 sd entries).
const MAX_TABLE: usize = 1_000_000;

/// The CDF of a [`CountForecast`] tabulated over the range holding its mass
/// (or, for sd over [`CONTINUOUS_SD`], its Gamma approximation).
#[derive(Clone, Debug, PartialEq)]
pub struct CountTable {
    /// The moment-matched Gamma used instead of the table for large counts.
    continuous: Option<Gamma>,
    /// First count tabulated (P(X < `first`) is below 1e-12 and taken as 0).
    first: u64,
    /// `cdf[i]` = P(X ≤ `first` + i); the last entry is 1 within 1e-12.
    cdf: Vec<f64>,
}

impl CountForecast {
    /// The distribution with this mean and variance (negative values are 0).
    pub fn new(mean: f64, variance: f64) -> Self {
        let mean = if mean.is_finite() { mean.max(0.0) } else { 0.0 };
        let variance = if variance.is_finite() { variance.max(mean) } else { mean };
        CountForecast { mean, variance }
    }

    /// Standard deviation √v.
    pub fn sd(&self) -> f64 {
        self.variance.sqrt()
    }

    /// NB size r = μ² / (v − μ), or `None` for a Poisson (v ≈ μ).
    fn size(&self) -> Option<f64> {
        let extra = self.variance - self.mean;
        if extra <= 1e-9 * self.mean.max(1e-300) {
            return None;
        }
        let r = self.mean * self.mean / extra;
        (r < 1e9).then_some(r)
    }

    /// ln P(X = k).
    fn ln_pmf(&self, k: u64) -> f64 {
        let (mu, kf) = (self.mean, k as f64);
        if mu <= 0.0 {
            return if k == 0 { 0.0 } else { f64::NEG_INFINITY };
        }
        match self.size() {
            None => kf * mu.ln() - mu - ln_gamma(kf + 1.0),
            Some(r) => ln_gamma(kf + r) - ln_gamma(r) - ln_gamma(kf + 1.0) + r * (r / (r + mu)).ln() + kf * (mu / (r + mu)).ln(),
        }
    }

    /// P(X = k + 1) / P(X = k).
    fn ratio(&self, k: u64) -> f64 {
        let (mu, kf) = (self.mean, k as f64);
        match self.size() {
            None => mu / (kf + 1.0),
            Some(r) => (kf + r) / (kf + 1.0) * (mu / (r + mu)),
        }
    }

    /// The CDF tabulated from where the mass starts to where it ends.
    pub fn table(&self) -> CountTable {
        if self.mean <= 0.0 {
            return CountTable { continuous: None, first: 0, cdf: vec![1.0] };
        }
        let sd = self.sd();
        if sd > CONTINUOUS_SD {
            return CountTable { continuous: Some(Gamma::from_mean_sd(self.mean, sd)), first: 0, cdf: Vec::new() };
        }
        let first = (self.mean - 10.0 * sd).floor().max(0.0) as u64;
        let mut cdf = Vec::with_capacity((20.0 * sd) as usize + 16);
        // The walk is in log space: `first` lies 10 sd below the mean, where
        // the pmf may be below f64's smallest number (exp underflows to 0,
        // and a product of ratios would then stay 0 all the way).
        let mut ln_p = self.ln_pmf(first);
        let mut total = 0.0;
        let mut k = first;
        // Walk until past the mean by 10 sd and the mass is all but 1e-12,
        // or the terms left are negligible (rounding may keep the sum a few
        // 1e-13 short of 1).
        let last_at_least = (self.mean + 10.0 * sd).ceil() as u64 + 10;
        loop {
            let p = ln_p.exp();
            total += p;
            cdf.push(total.min(1.0));
            if (k >= last_at_least && (1.0 - total < 1e-12 || p < 1e-18)) || cdf.len() > MAX_TABLE {
                break;
            }
            ln_p += self.ratio(k).ln();
            k += 1;
        }
        // The mass below `first` (under 1e-12) and rounding: end at exactly 1.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        CountTable { continuous: None, first, cdf }
    }

    /// The q-quantile: the least k with P(X ≤ k) ≥ q.
    pub fn quantile(&self, q: f64) -> f64 {
        self.table().quantile(q)
    }

    /// CRPS of outcome `y` (see the module docs).
    pub fn crps(&self, y: u64) -> f64 {
        self.table().crps(y)
    }
}

impl CountTable {
    /// P(X ≤ k).
    pub fn cdf(&self, k: u64) -> f64 {
        if let Some(g) = &self.continuous {
            return g.cdf(k as f64 + 0.5);
        }
        if k < self.first {
            return 0.0;
        }
        self.cdf.get((k - self.first) as usize).copied().unwrap_or(1.0)
    }

    /// The least k with P(X ≤ k) ≥ q.
    pub fn quantile(&self, q: f64) -> f64 {
        if let Some(g) = &self.continuous {
            return g.quantile(q).round();
        }
        let i = self.cdf.partition_point(|&c| c < q);
        (self.first + i.min(self.cdf.len().saturating_sub(1)) as u64) as f64
    }

    /// `Σ_{k ≥ 0} (F(k) − 1{k ≥ y})²`: terms below the table are (0 − 1)² for
    /// y ≤ k < first, terms above it (1 − 0)² for last < k < y.
    ///
    /// For the Gamma approximation, the closed form of the CRPS of a Gamma
    /// (shape α, scale β) at y (Scheuerer & Möller 2015, Ann. Appl. Stat.
    /// 9(3):1328–1349; R scoringRules `crps_gamma`):
    /// `y(2F_α(y) − 1) − αβ(2F_{α+1}(y) − 1) − β / B(½, α)`.
    pub fn crps(&self, y: u64) -> f64 {
        if let Some(g) = &self.continuous {
            let (a, b, yf) = (g.shape, g.scale, y as f64);
            let f1 = g.cdf(yf);
            let f2 = Gamma { shape: a + 1.0, scale: b }.cdf(yf);
            let ln_beta = ln_gamma(0.5) + ln_gamma(a) - ln_gamma(a + 0.5);
            return yf * (2.0 * f1 - 1.0) - a * b * (2.0 * f2 - 1.0) - b / ln_beta.exp();
        }
        let last = self.first + self.cdf.len() as u64 - 1;
        let below = self.first.saturating_sub(y) as f64;
        let above = y.saturating_sub(last + 1) as f64;
        let inside: f64 = self
            .cdf
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                let step = if self.first + i as u64 >= y { 1.0 } else { 0.0 };
                (f - step) * (f - step)
            })
            .sum();
        below + inside + above
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_quantiles_and_cdf_match_hand_values() {
        // Poisson(4): P(X ≤ 0..=8) = e^{-4} Σ 4^k/k!.
        let t = CountForecast::new(4.0, 4.0).table();
        let mut term = (-4.0f64).exp();
        let mut sum = 0.0;
        for k in 0..=8u64 {
            sum += term;
            assert!((t.cdf(k) - sum).abs() < 1e-12, "k {k}: {} vs {sum}", t.cdf(k));
            term *= 4.0 / (k + 1) as f64;
        }
        // P(X ≤ 0) = 0.0183, P(X ≤ 1) = 0.0916 → 5 % quantile 1; P(X ≤ 7) = 0.9489, P(X ≤ 8) = 0.9786 → 95 % quantile 8.
        let f = CountForecast::new(4.0, 4.0);
        assert_eq!(f.quantile(0.05), 1.0);
        assert_eq!(f.quantile(0.95), 8.0);
    }

    #[test]
    fn negative_binomial_matches_the_closed_form() {
        // μ = 2, v = 6: r = 4/4 = 1, p = 1/3: geometric, P(X = k) = (1/3)(2/3)^k.
        let t = CountForecast::new(2.0, 6.0).table();
        for k in 0..20u64 {
            let expect = 1.0 - (2.0f64 / 3.0).powi(k as i32 + 1);
            assert!((t.cdf(k) - expect).abs() < 1e-12, "k {k}");
        }
        // 95 %: least k with 1 − (2/3)^{k+1} ≥ 0.95 → (k+1) ≥ ln 0.05 / ln(2/3) = 7.39 → k = 7.
        assert_eq!(t.quantile(0.95), 7.0);
        assert_eq!(t.quantile(0.05), 0.0);
    }

    #[test]
    fn crps_of_a_point_mass_is_the_absolute_error_and_of_a_geometric_is_hand_computed() {
        let point = CountForecast::new(0.0, 0.0);
        assert_eq!(point.crps(0), 0.0);
        assert_eq!(point.crps(7), 7.0);
        // Geometric above (F(k) = 1 − q^{k+1}, q = 2/3), y = 0:
        // Σ_k (F(k) − 1)² = Σ q^{2k+2} = q² / (1 − q²) = (4/9)/(5/9) = 0.8.
        let g = CountForecast::new(2.0, 6.0);
        assert!((g.crps(0) - 0.8).abs() < 1e-9, "{}", g.crps(0));
        // y = 1: F(0)² + Σ_{k≥1} q^{2k+2} = (1/3)² + q⁴/(1 − q²) = 1/9 + (16/81)/(5/9) = 1/9 + 16/45.
        assert!((g.crps(1) - (1.0 / 9.0 + 16.0 / 45.0)).abs() < 1e-9, "{}", g.crps(1));
    }

    #[test]
    fn gamma_crps_matches_the_table_where_both_apply() {
        // sd 400 (table) vs the same moments forced through the Gamma form.
        let f = CountForecast::new(20_000.0, 160_000.0);
        let t = f.table();
        assert!(t.continuous.is_none());
        let g = CountTable { continuous: Some(Gamma::from_mean_sd(f.mean, f.sd())), first: 0, cdf: Vec::new() };
        for y in [19_000u64, 20_000, 21_500] {
            let (a, b) = (t.crps(y), g.crps(y));
            assert!((a - b).abs() < 0.01 * a.max(1.0) + 1.0, "y {y}: table {a} vs gamma {b}");
        }
        assert!((t.quantile(0.95) - g.quantile(0.95)).abs() <= 3.0);
    }

    #[test]
    fn large_counts_do_not_underflow() {
        let f = CountForecast::new(50_000.0, 80_000.0);
        let (lo, hi) = (f.quantile(0.05), f.quantile(0.95));
        // Normal approximation: μ ± 1.645 √v = 50 000 ± 465.
        assert!((lo - (50_000.0 - 465.3)).abs() < 8.0, "{lo}");
        assert!((hi - (50_000.0 + 465.3)).abs() < 8.0, "{hi}");
        assert!(f.crps(50_000) < f.crps(51_000));
    }

    /// The table ends where the mass does, whatever the rounding of the
    /// log-pmf it starts from (a sum kept a few 1e-12 short of 1 once made
    /// the walk run to its cap: 50 M entries for one estimate).
    #[test]
    fn a_table_is_about_twenty_sd_long() {
        for (mean, variance) in [(4_000.0, 9_000.0), (12_345.6, 20_000.0), (250.0, 250.0), (900.0, 200_000.0), (3.0, 40.0)] {
            let f = CountForecast::new(mean, variance);
            let t = f.table();
            let bound = 40.0 * f.sd() + 100.0;
            assert!((t.cdf.len() as f64) < bound, "mean {mean}, variance {variance}: {} entries", t.cdf.len());
            assert_eq!(t.cdf.last().copied(), Some(1.0));
            let (lo, hi) = (t.quantile(0.05), t.quantile(0.95));
            assert!(lo < mean && mean < hi, "{lo} {mean} {hi}");
        }
    }
}

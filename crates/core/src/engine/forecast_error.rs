//! The model error of the click forecasts, learned per target from how its
//! campaigns' past forecasts turned out (`forecast.learn_error`).
//!
//! **Why.** The predictive variance of [`super::forecast::ForecastPath::clicks`]
//! holds the Poisson noise of the clicks, the overdispersion of pass-along
//! and the posterior uncertainty of R and of the click-through — every
//! uncertainty *within* the model. None for the model being wrong: a response
//! curve or generation interval of the wrong shape, R changing within the
//! horizon, a campaign unlike its target's past ones. On real cascades the
//! 90 % interval held the outcome 32–41 % of the time.
//!
//! **Model.** The clicks in the next `h` bins are taken as the model's
//! count with its mean scaled by a multiplicative error,
//! `y | ε ~ model(μ·ε)`, `ε ~ Gamma(mean 1, variance σ²_h)`, so (law of total
//! variance) the predictive variance becomes
//!
//! ```text
//! v' = v + σ²_h · μ²
//! ```
//!
//! and the mean, hence every point forecast, stays μ. The predictive is still
//! the negative binomial matched to (μ, v') (`predictive.rs`).
//!
//! **Learning σ²_h.** Per target, per learned horizon `h` (1, 2, 4, …
//! bins and the forecast horizon itself, [`learned_horizons`]; between them
//! σ² is interpolated linearly in ln h) and per decade of the forecast's
//! mean ([`size_class`]: below 1 click, 1–10, 10–100, …) — the relative
//! error of a forecast of 3 clicks is not that of one of 3,000 (on the
//! simulated sets the σ² that covers 90 % differs by two to four orders of
//! magnitude between them), so each class is calibrated on its own, as a
//! Mondrian conformal predictor calibrates per category (Vovk, Lindsay,
//! Nouretdinov & Gammerman 2003) — by online quantile tracking, the
//! update of adaptive conformal inference (Gibbs & Candès 2021, "Adaptive
//! conformal inference under distribution shift", NeurIPS; applied to the
//! scale of the interval as the quantile tracker of Angelopoulos, Candès &
//! Tibshirani 2023, "Conformal PID control for time series prediction",
//! NeurIPS): once a forecast's `h` bins have closed, its campaign's clicks in
//! them are compared with the 90 % central interval of (μ, v + σ²_h μ²) at
//! the **current** σ²_h, giving a miss `m ∈ [0, 1]`, and at the end of each
//! bin step the `n` misses of the step move the log-variance by
//!
//! ```text
//! ln σ²_h ← ln σ²_h + γ · √n · (m̄ − α),      α = 0.10, γ = 0.2
//! ```
//!
//! (clamped to [[`MIN_SIGMA2`], [`MAX_SIGMA2`]]). Its fixed point is the
//! σ²_h at which the intervals miss α of the outcomes, whatever their
//! distribution: heavy-tailed errors are covered by their quantile, not by a
//! variance a few outliers would blow up. A bin step's `n` misses are
//! averaged (their mean has sd ∝ 1/√n, so `γ√n` keeps each step's noise the
//! same whether a target has 3 campaigns or 3,000) and computed before any
//! is applied, so the result does not depend on the order campaigns are
//! stepped in. The log scale makes the step relative. A new target starts
//! at [`PRIOR_SIGMA2`].
//!
//! **The miss of a count.** With the count's predictive CDF `F` (the Gamma
//! with the same mean and variance, a continuity correction of ½), the
//! outcome `y` covers the PIT range `[F(y − ½), F(y + ½)]`; the miss is the
//! share of that range outside [α/2, 1 − α/2] — the probability that the
//! randomised PIT (Czado, Gneiting & Held 2009, Biometrics 65:1254–1261)
//! falls outside the central interval. Its expectation is exactly α under a
//! calibrated forecast, also for counts of a few clicks, where a plain
//! in/out test is conservative (the interval's end points hold whole
//! clicks) and would drag σ² down.
//!
//! **State.** Per target: a log-variance, a realized count and the sums of
//! the bin step being made, per learned horizon and size class. Per campaign (only when
//! estimates, hence predictive forecasts, are made): a ring of its forecasts
//! whose horizon has not passed (at most `horizon + 1`), with μ and v at the
//! learned horizons as `f32`, realized against the campaign's own clicks of
//! the bins that closed since ([`PendingForecasts`]).

use std::collections::VecDeque;

use super::gamma::Gamma;

/// The share of outcomes the central interval may miss (the 90 % interval).
pub const MISS: f64 = 0.10;
/// Step γ of the log-variance update.
pub const STEP: f64 = 0.2;
/// σ² a target starts from (sd 0.1: ±10 % around the mean). Low on
/// purpose: misses raise σ² nine times faster than covered outcomes lower
/// it (1 − α against α), so a new target's intervals widen within a few
/// bin steps where they must.
pub const PRIOR_SIGMA2: f64 = 0.01;
/// Least σ² (sd 1 %: no model error worth the name).
pub const MIN_SIGMA2: f64 = 1e-4;
/// Most σ²: the Gamma of mean 1 and variance σ² has its 95 % quantile
/// highest near σ² = 10 (5.8; 3.0 at σ² = 1, 5.3 at σ² = 20). Beyond, a
/// wider error concentrates its mass at 0 and *lowers* the interval's upper
/// end, so more misses above would only push σ² further the wrong way.
pub const MAX_SIGMA2: f64 = 10.0;
/// Most horizons learned (1, 2, 4, … 1024 bins and the forecast horizon).
pub const MAX_HORIZONS: usize = 12;

/// The horizons (bins) σ² is learned at: the powers of two below
/// `horizon_bins`, then `horizon_bins` itself (at most [`MAX_HORIZONS`]:
/// beyond, the largest powers give way to the horizon).
pub fn learned_horizons(horizon_bins: usize) -> Vec<usize> {
    let h = horizon_bins.max(1);
    let mut v: Vec<usize> = (0..usize::BITS).map(|i| 1usize << i).take_while(|&p| p < h).take(MAX_HORIZONS - 1).collect();
    v.push(h);
    v
}

/// Size classes of a forecast's mean: below 1 click, 1–10, 10–100, …,
/// 10⁴ and more (one decade each).
pub const SIZE_CLASSES: usize = 6;

/// The size class of a forecast with mean `mean` (see [`SIZE_CLASSES`]).
pub fn size_class(mean: f64) -> usize {
    if mean.is_nan() || mean < 1.0 {
        return 0;
    }
    ((mean.log10().floor() as i64 + 1).clamp(1, SIZE_CLASSES as i64 - 1)) as usize
}

/// The model error a forecast carries: σ² at the learned horizons, per
/// size class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelError {
    /// Learned horizons in bins, increasing; empty: no model error.
    horizons: Vec<usize>,
    /// σ² at each, per size class.
    sigma2: Vec<[f64; SIZE_CLASSES]>,
}

impl ModelError {
    /// σ² of a forecast of mean `mean` over the first `bins` bins: that of
    /// its size class, linear in ln h between the learned horizons, the
    /// nearest one's outside them; 0 without any.
    pub fn at(&self, bins: usize, mean: f64) -> f64 {
        let c = size_class(mean);
        let (Some(&h0), Some(&h1)) = (self.horizons.first(), self.horizons.last()) else { return 0.0 };
        let s = |i: usize| self.sigma2.get(i).map_or(0.0, |x| x[c]);
        if bins <= h0 {
            return s(0);
        }
        if bins >= h1 {
            return s(self.horizons.len() - 1);
        }
        let i = self.horizons.partition_point(|&h| h <= bins);
        let (ha, hb) = (self.horizons[i - 1] as f64, self.horizons[i] as f64);
        let t = ((bins as f64).ln() - ha.ln()) / (hb.ln() - ha.ln());
        s(i - 1) + t * (s(i) - s(i - 1))
    }

    /// Whether there is none (learning off).
    pub fn is_none(&self) -> bool {
        self.horizons.is_empty()
    }
}

/// The miss of outcome `y` against the central `1 − α` interval of the count
/// with this mean and variance (see the module docs): the share of
/// `[F(y − ½), F(y + ½)]` outside `[α/2, 1 − α/2]`, `F` the Gamma with the
/// same moments; 0 for a mean of 0.
pub fn miss(mean: f64, variance: f64, y: u64, alpha: f64) -> f64 {
    if !(mean > 0.0 && mean.is_finite() && variance.is_finite()) {
        return 0.0;
    }
    let g = Gamma::from_mean_sd(mean, variance.max(mean * 1e-9).sqrt());
    let yf = y as f64;
    let a = if y == 0 { 0.0 } else { g.cdf(yf - 0.5) };
    let b = g.cdf(yf + 0.5);
    let (lo, hi) = (alpha / 2.0, 1.0 - alpha / 2.0);
    if b - a <= 1e-12 {
        return if a < lo || a > hi { 1.0 } else { 0.0 };
    }
    let below = (b.min(lo) - a).max(0.0);
    let above = (b - a.max(hi)).max(0.0);
    ((below + above) / (b - a)).clamp(0.0, 1.0)
}

/// A target's learned model error (see the module docs).
#[derive(Clone, Debug)]
pub struct ErrorLearner {
    horizons: Vec<usize>,
    /// ln σ² per horizon and size class.
    log_sigma2: Vec<[f64; SIZE_CLASSES]>,
    /// Forecasts realized per horizon and size class.
    realized: Vec<[u64; SIZE_CLASSES]>,
    /// Σ miss and count of the bin step being made, per horizon and size class.
    step: Vec<[(f64, u32); SIZE_CLASSES]>,
}

/// One learned horizon of a target, as `/api/targets` shows it.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct ErrorAtHorizon {
    /// The horizon, seconds.
    pub horizon_s: f64,
    /// The learned sd σ of the multiplicative error (0.3: ±30 %) of
    /// forecasts of < 1 click, 1–10, 10–100, 100–1000, 1000–10⁴, ≥ 10⁴.
    pub sd: [f64; SIZE_CLASSES],
    /// Forecasts realized at this horizon, in the same classes.
    pub forecasts: [u64; SIZE_CLASSES],
}

impl ErrorLearner {
    /// A target with no past: σ² = [`PRIOR_SIGMA2`] everywhere.
    pub fn new(horizons: &[usize]) -> Self {
        let n = horizons.len();
        ErrorLearner {
            horizons: horizons.to_vec(),
            log_sigma2: vec![[PRIOR_SIGMA2.ln(); SIZE_CLASSES]; n],
            realized: vec![[0; SIZE_CLASSES]; n],
            step: vec![[(0.0, 0); SIZE_CLASSES]; n],
        }
    }

    /// The forecast of horizon index `k` (of [`learned_horizons`]) with mean
    /// `mean` and model variance `variance` (without model error) came out
    /// at `y` clicks: counted at the end of the bin step.
    pub fn observe(&mut self, k: usize, mean: f64, variance: f64, y: u64) {
        if mean.is_nan() || mean <= 0.0 {
            return;
        }
        let c = size_class(mean);
        let (Some(ls), Some(s)) = (self.log_sigma2.get(k), self.step.get_mut(k)) else { return };
        let m = miss(mean, variance + ls[c].exp() * mean * mean, y, MISS);
        s[c].0 += m;
        s[c].1 += 1;
    }

    /// The bin step is over: its misses move σ².
    pub fn commit(&mut self) {
        for ((ls, s), r) in self.log_sigma2.iter_mut().zip(&mut self.step).zip(&mut self.realized) {
            for c in 0..SIZE_CLASSES {
                let (sum, n) = std::mem::take(&mut s[c]);
                if n == 0 {
                    continue;
                }
                r[c] += u64::from(n);
                let n = f64::from(n);
                ls[c] = (ls[c] + STEP * n.sqrt() * (sum / n - MISS)).clamp(MIN_SIGMA2.ln(), MAX_SIGMA2.ln());
            }
        }
    }

    /// The model error its forecasts carry now.
    pub fn model_error(&self) -> ModelError {
        ModelError { horizons: self.horizons.clone(), sigma2: self.log_sigma2.iter().map(|l| l.map(f64::exp)).collect() }
    }

    /// σ² at each learned horizon, per size class.
    pub fn sigma2(&self) -> Vec<[f64; SIZE_CLASSES]> {
        self.log_sigma2.iter().map(|l| l.map(f64::exp)).collect()
    }

    /// Per learned horizon: its length (bins of `bin_ms`), σ and counts.
    pub fn view(&self, bin_ms: i64) -> Vec<ErrorAtHorizon> {
        self.horizons
            .iter()
            .zip(&self.log_sigma2)
            .zip(&self.realized)
            .map(|((&h, ls), &n)| ErrorAtHorizon {
                horizon_s: (h as i64 * bin_ms) as f64 / 1000.0,
                sd: ls.map(|l| (l / 2.0).exp()),
                forecasts: n,
            })
            .collect()
    }

    /// Forecasts realized per learned horizon and size class.
    pub fn realized(&self) -> &[[u64; SIZE_CLASSES]] {
        &self.realized
    }
}

/// One forecast waiting for its horizons to pass.
#[derive(Clone, Copy, Debug)]
struct PendingForecast {
    /// Made at the end of this bin.
    bin: i64,
    /// The campaign's clicks in closed bins then.
    clicks: u64,
    /// Target whose learner it teaches (`None`: the campaigns without one).
    target: Option<u32>,
    /// Horizons realized so far (they realize in increasing order).
    realized: u8,
    /// (μ, v without model error) at each learned horizon.
    moments: [(f32, f32); MAX_HORIZONS],
}

/// A campaign's forecasts whose horizon has not passed yet, and its clicks
/// in closed bins (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct PendingForecasts {
    ring: VecDeque<PendingForecast>,
    /// Clicks of the bins closed since the first forecast.
    clicks: u64,
}

/// A realized forecast: its target, horizon index, μ, v and the actual clicks.
pub type Realized = (Option<u32>, usize, f64, f64, u64);

impl PendingForecasts {
    /// A forecast made at the end of bin `bin` (after that bin closed) for
    /// `target`, with `moments(k)` = (μ, v) at horizon index `k` of
    /// `horizons`. At most `horizons`' largest + 1 forecasts are kept.
    pub fn push(&mut self, bin: i64, target: Option<u32>, horizons: &[usize], moments: impl Fn(usize) -> (f64, f64)) {
        let mut m = [(0.0f32, 0.0f32); MAX_HORIZONS];
        for (k, slot) in m.iter_mut().enumerate().take(horizons.len()) {
            let (mean, var) = moments(k);
            *slot = (mean as f32, var as f32);
        }
        let cap = horizons.last().copied().unwrap_or(1) + 1;
        while self.ring.len() >= cap {
            self.ring.pop_front();
        }
        self.ring.push_back(PendingForecast { bin, clicks: self.clicks, target, realized: 0, moments: m });
    }

    /// Bin `b` closed with `clicks` clicks of the campaign: every forecast
    /// horizon ending by `b` is realized into `out` (those that ended in
    /// bins skipped while the campaign was dormant, which held no click,
    /// before `b`'s clicks are counted).
    pub fn close_bin(&mut self, b: i64, clicks: u64, horizons: &[usize], out: &mut Vec<Realized>) {
        self.realize(b - 1, horizons, out);
        self.clicks += clicks;
        self.realize(b, horizons, out);
        while self.ring.front().is_some_and(|f| usize::from(f.realized) >= horizons.len()) {
            self.ring.pop_front();
        }
    }

    fn realize(&mut self, until: i64, horizons: &[usize], out: &mut Vec<Realized>) {
        for f in &mut self.ring {
            while let Some(&h) = horizons.get(usize::from(f.realized)) {
                if f.bin.saturating_add(h as i64) > until {
                    break;
                }
                let k = usize::from(f.realized);
                let (mean, var) = f.moments[k];
                out.push((f.target, k, f64::from(mean), f64::from(var), self.clicks - f.clicks));
                f.realized += 1;
            }
        }
    }

    /// Forecasts held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_are_powers_of_two_then_the_horizon() {
        assert_eq!(learned_horizons(30), vec![1, 2, 4, 8, 16, 30]);
        assert_eq!(learned_horizons(32), vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(learned_horizons(1), vec![1]);
        assert_eq!(learned_horizons(0), vec![1]);
        let long = learned_horizons(100_000);
        assert_eq!(long.len(), MAX_HORIZONS);
        assert_eq!(long.last(), Some(&100_000));
    }

    #[test]
    fn size_classes_are_decades() {
        assert_eq!(
            [0.0, 0.5, 1.0, 9.9, 10.0, 99.0, 100.0, 5_000.0, 10_000.0, 1e9, f64::NAN].map(size_class),
            [0, 0, 1, 1, 2, 2, 3, 4, 5, 5, 0]
        );
    }

    #[test]
    fn model_error_interpolates_in_log_horizon_within_a_size_class() {
        let e = ModelError { horizons: vec![4, 8], sigma2: vec![[0.1, 0.1, 0.1, 1.0, 0.1, 0.1], [0.3, 0.3, 0.3, 2.0, 0.3, 0.3]] };
        assert_eq!(e.at(1, 50.0), 0.1);
        assert_eq!(e.at(4, 50.0), 0.1);
        assert_eq!(e.at(8, 50.0), 0.3);
        assert_eq!(e.at(30, 50.0), 0.3);
        // ln 5 − ln 4 over ln 8 − ln 4 = 0.32193; 0.1 + 0.32193 × 0.2 = 0.164386.
        assert!((e.at(5, 50.0) - 0.164_386).abs() < 1e-6, "{}", e.at(5, 50.0));
        // A mean of 500 is in the 100–1000 class: 1 + 0.32193 × 1.
        assert!((e.at(5, 500.0) - 1.321_928).abs() < 1e-6, "{}", e.at(5, 500.0));
        assert_eq!(ModelError::default().at(5, 50.0), 0.0);
    }

    #[test]
    fn miss_is_the_share_of_the_pit_range_outside_the_interval() {
        // Mean 10, variance 100: Gamma shape 1, scale 10 (exponential),
        // F(x) = 1 − e^{−x/10}.
        let f = |x: f64| 1.0 - (-x / 10.0f64).exp();
        // y = 10: [F(9.5), F(10.5)] = [0.6133, 0.6501], inside [0.05, 0.95].
        assert_eq!(miss(10.0, 100.0, 10, 0.1), 0.0);
        // y = 0: [0, F(0.5)] = [0, 0.04877]: all below 0.05.
        assert!((miss(10.0, 100.0, 0, 0.1) - 1.0).abs() < 1e-12);
        // y = 30: [F(29.5), F(30.5)] = [0.9477, 0.9526]: the part above 0.95.
        let (a, b) = (f(29.5), f(30.5));
        let expect = (b - 0.95) / (b - a);
        assert!((miss(10.0, 100.0, 30, 0.1) - expect).abs() < 1e-9, "{} vs {expect}", miss(10.0, 100.0, 30, 0.1));
        // F(29.5) = 1 − e^{−2.95} = 0.94766, F(30.5) = 1 − e^{−3.05} = 0.95264: 0.00264 / 0.00498.
        assert!((expect - 0.5303).abs() < 1e-3, "{expect}");
        assert_eq!(miss(0.0, 0.0, 3, 0.1), 0.0);
    }

    #[test]
    fn a_calibrated_forecast_misses_alpha_on_average() {
        // Outcomes drawn exactly from the Gamma-discretised predictive: the
        // expected miss is α (the PIT range splits the boundary click).
        for (mean, var) in [(2.0, 2.0), (40.0, 200.0), (500.0, 30_000.0)] {
            let g = Gamma::from_mean_sd(mean, f64::sqrt(var));
            let mut expected = 0.0;
            let mut total = 0.0;
            for y in 0..20_000u64 {
                let (a, b) = (if y == 0 { 0.0 } else { g.cdf(y as f64 - 0.5) }, g.cdf(y as f64 + 0.5));
                expected += (b - a) * miss(mean, var, y, 0.1);
                total += b - a;
            }
            assert!((total - 1.0).abs() < 1e-9);
            assert!((expected - 0.1).abs() < 1e-9, "mean {mean}: {expected}");
        }
    }

    #[test]
    fn commit_moves_log_sigma2_by_the_step() {
        let mut l = ErrorLearner::new(&[1, 2]);
        // Four outcomes far outside (miss 1) at horizon 0, mean 100 (class
        // 3): m̄ = 1, n = 4: ln σ² moves by γ × 2 × 0.9.
        for _ in 0..4 {
            l.observe(0, 100.0, 100.0, 1000);
        }
        // One outcome at the mean (miss 0) at horizon 1, mean 5 (class 1):
        // −γ × 1 × 0.1.
        l.observe(1, 5.0, 5.0, 5);
        l.commit();
        let s = l.sigma2();
        assert!((s[0][3] - PRIOR_SIGMA2 * (STEP * 1.8).exp()).abs() < 1e-12, "{:?}", s[0]);
        assert!((s[1][1] - PRIOR_SIGMA2 * (-STEP * 0.1).exp()).abs() < 1e-12, "{:?}", s[1]);
        assert!((s[0][2] - PRIOR_SIGMA2).abs() < 1e-15, "other classes do not move");
        assert_eq!(l.realized(), &[[0, 0, 0, 4, 0, 0], [0, 1, 0, 0, 0, 0]]);
        // Nothing observed: nothing moves.
        l.commit();
        assert_eq!(l.sigma2(), s);
        let v = l.view(60_000);
        assert_eq!(v[1].horizon_s, 120.0);
        assert!((v[0].sd[3] - s[0][3].sqrt()).abs() < 1e-12);
        assert!((l.model_error().at(1, 100.0) - s[0][3]).abs() < 1e-12);
    }

    #[test]
    fn sigma2_settles_where_the_interval_misses_alpha() {
        // Outcomes y = μ·ε, μ = 1000 (Poisson negligible): two in ten are
        // 40 % off, the rest on the mean. At the fixed point the misses
        // average α = 0.1: the two far ones sit on the interval's ends,
        // half in and half out, i.e. ±40 % ≈ ±1.645 σ → σ ≈ 0.24.
        let mut l = ErrorLearner::new(&[1]);
        let outcomes = [600u64, 1400, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000];
        for _ in 0..2000 {
            for &y in &outcomes {
                l.observe(0, 1000.0, 1000.0, y);
            }
            l.commit();
        }
        let s = l.sigma2()[0][4].sqrt();
        assert!((0.18..0.32).contains(&s), "{s}");
    }

    #[test]
    fn sigma2_stays_within_its_bounds() {
        let mut l = ErrorLearner::new(&[1]);
        for _ in 0..1000 {
            l.observe(0, 50.0, 50.0, 50_000);
            l.observe(0, 5_000.0, 5_000.0, 5_000);
            l.commit();
        }
        let s = l.sigma2()[0];
        assert!((s[2] - MAX_SIGMA2).abs() < 1e-9 && (s[4] - MIN_SIGMA2).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn pending_forecasts_realize_with_the_campaigns_own_clicks() {
        let horizons = [1usize, 2];
        let mut p = PendingForecasts::default();
        let mut out = Vec::new();
        p.close_bin(10, 5, &horizons, &mut out);
        // Made at the end of bin 10: (μ, v) = (3, 4) at 1 bin, (6, 9) at 2.
        p.push(10, Some(7), &horizons, |k| [(3.0, 4.0), (6.0, 9.0)][k]);
        p.close_bin(11, 2, &horizons, &mut out);
        assert_eq!(out, vec![(Some(7), 0, 3.0, 4.0, 2)]);
        out.clear();
        // Bins 12 … 13 skipped (dormant, no clicks), bin 14 closes with 9:
        // the 2-bin horizon (bins 11–12) realized with 2 clicks, not 11.
        p.close_bin(14, 9, &horizons, &mut out);
        assert_eq!(out, vec![(Some(7), 1, 6.0, 9.0, 2)]);
        assert!(p.is_empty(), "fully realized forecasts are dropped");
        // At most the largest horizon + 1 are held.
        for b in 20..30 {
            p.push(b, None, &horizons, |_| (1.0, 1.0));
        }
        assert_eq!(p.len(), 3);
    }
}

//! Click forecast of one campaign over the planning horizon.
//!
//! Two sources of future clicks are added, bin by bin, over
//! `forecast.horizon`:
//!
//! 1. **Direct clicks from the send** (known at send time, before any click):
//!    `recipients × ĉ × (S(t₁ − t_send) − S(t₀ − t_send))` for the bin
//!    `[t₀, t₁)`, where `S` is the response-time CDF (a Gamma with
//!    `forecast.response` mean/sd) and `ĉ` the click-through rate. `ĉ`
//!    starts at `forecast.click_through` and is updated with the campaign's
//!    own generation-0 clicks as a Beta–Binomial posterior mean
//!    `ĉ = (G + c₀·w) / (E + w)` where `G` is the direct clicks seen,
//!    `E = Σ recipients·S(now − t_send)` the recipients that had time to
//!    respond, and `w = forecast.click_through_weight`.
//! 2. **Forwarded clicks**: the renewal equation run forward,
//!    `I_{t} = R* Σ_s w_s I_{t−s}`, over the observed history and the
//!    projected clicks (direct + forwarded), with `R*` the
//!    `forecast.r_quantile` quantile of the campaign's current posterior —
//!    a cautious value, since under-provisioning costs more than idle pods.
//!    The planner's forecast also reads bins that elapsed after R's window;
//!    when they came in below what the model expected, the pass-along is
//!    scaled down by that shortfall (`fresh_scale`).
//!
//! [`project`] writes the per-bin click rate of the horizon into a path (the
//! planner's time-phased plan reads the bins it has to be ready for) and
//! returns its peak (shown per campaign in views and signals).

use super::forecast_error::ModelError;
use super::gamma::Gamma;
use super::predictive::CountForecast;

/// Mass of the generation interval the forecast may leave out. The estimator
/// keeps the support to `1 − 1e-9` so that Λ matches EpiEstim; a projection
/// of demand has no use for that tail: cutting it at `1 − 1e-6` changes a
/// forecast by at most one part in a million and shortens the convolution
/// (and the history copied per step) by 29 % with the default interval
/// (mean 17 min, sd 10 min, 1-min bins: 115 weights instead of 161).
pub const GI_TAIL: f64 = 1e-6;

/// The generation-interval weights `w_0 … w_K` cut at the first `K` where
/// `Σ_{k ≤ K} w_k ≥ 1 − GI_TAIL` (not renormalised: the missing mass is
/// under `GI_TAIL`).
pub fn truncated_gi(w: &[f64]) -> Vec<f64> {
    let mut total = 0.0;
    let mut keep = w.len();
    for (k, x) in w.iter().enumerate() {
        total += x;
        if total >= 1.0 - GI_TAIL {
            keep = k + 1;
            break;
        }
    }
    w[..keep].to_vec()
}

/// One send of a campaign.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SendRecord {
    /// Event time of the send.
    pub ts_ms: i64,
    /// Addressees.
    pub recipients: u64,
}

/// The response-time distribution of direct recipients (send → click).
#[derive(Clone, Debug)]
pub struct ResponseCurve {
    shape: CurveShape,
}

/// How a [`ResponseCurve`] is given.
#[derive(Clone, Debug)]
enum CurveShape {
    /// The configured Gamma (`forecast.response`).
    Gamma {
        dist: Gamma,
        /// The shape is 1 (mean = sd, the default): the curve is exponential
        /// and its CDF is 1 − e^{−x/θ}, one `exp_m1` instead of an incomplete
        /// gamma function (the forecast evaluates it for every send, horizon
        /// bin and bin step).
        exponential: bool,
    },
    /// Learned from a target's past campaigns: the CDF at the learner's
    /// delay-bin edges (see [`super::delay_learner`]).
    Learned(Box<LearnedCdf>),
}

/// A learned CDF at the upper edges of the delay bins.
pub type LearnedCdf = [f64; super::delay_learner::BINS];

impl ResponseCurve {
    /// A Gamma response curve with the given mean and sd (ms).
    pub fn new(mean_ms: f64, sd_ms: f64) -> Self {
        let dist = Gamma::from_mean_sd(mean_ms, sd_ms);
        ResponseCurve { shape: CurveShape::Gamma { dist, exponential: (dist.shape - 1.0).abs() < 1e-12 } }
    }

    /// A learned curve (see [`super::direct_wave`]).
    pub fn learned(cdf: LearnedCdf) -> Self {
        ResponseCurve { shape: CurveShape::Learned(Box::new(cdf)) }
    }

    /// Fraction of eventual direct clicks that happen within `elapsed_ms` of the send.
    pub fn cdf(&self, elapsed_ms: f64) -> f64 {
        if elapsed_ms <= 0.0 {
            return 0.0;
        }
        match &self.shape {
            CurveShape::Gamma { dist, exponential: true } => -(-elapsed_ms / dist.scale).exp_m1(),
            CurveShape::Gamma { dist, exponential: false } => dist.cdf(elapsed_ms),
            CurveShape::Learned(cdf) => super::delay_learner::cdf_from_edges(cdf, elapsed_ms),
        }
    }
}

/// Everything the projection needs about one campaign.
#[derive(Clone, Copy, Debug)]
pub struct ForecastInput<'a> {
    /// Time the forecast is made at.
    pub now_ms: i64,
    /// Bin width.
    pub bin_ms: i64,
    /// Projection starts at the bin after this one.
    pub last_bin: i64,
    /// Observed clicks (local + imported) per bin, ending at `last_bin`
    /// (`history[history.len() − 1]` is `last_bin`).
    pub history: &'a [f64],
    /// The campaign's sends.
    pub sends: &'a [SendRecord],
    /// Generation-0 clicks observed so far.
    pub direct_clicks: u64,
    /// R used for the projection (0 disables the forwarded part).
    pub r: f64,
    /// Discretised generation interval (`w[0] = 0`).
    pub gi: &'a [f64],
    /// Horizon in bins.
    pub horizon_bins: usize,
    /// Prior click-through and its weight in recipients.
    pub click_through: f64,
    /// Weight of `click_through`, in recipients.
    pub click_through_weight: f64,
    /// The last bins of `history` that R was not estimated from (they
    /// elapsed after its window): [`project`] checks its pass-along against
    /// them (`fresh_scale`). 0: no check (the estimate's own forecast, a
    /// send's plan).
    pub fresh_bins: usize,
    /// R's posterior mean: what the fresh bins are checked against.
    pub r_fit: f64,
    /// The last bins of `history` that [`predictive`] checks the level of
    /// its direct wave against (`level_scale`). 0: no check (the plan).
    pub level_bins: usize,
}

/// A campaign's forecast.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Demand {
    /// Highest forecast click rate over the horizon, clicks/s.
    pub peak_clicks_per_s: f64,
    /// Expected clicks over the horizon.
    pub clicks: f64,
    /// Click-through estimate used.
    pub click_through: f64,
}

/// Posterior-mean click-through of direct recipients.
pub fn click_through(input: &ForecastInput<'_>, curve: &ResponseCurve) -> f64 {
    let exposed: f64 = input.sends.iter().map(|s| s.recipients as f64 * curve.cdf((input.now_ms - s.ts_ms) as f64)).sum();
    let w = input.click_through_weight;
    ((input.direct_clicks as f64 + input.click_through * w) / (exposed + w)).clamp(0.0, 1.0)
}

/// Projects the campaign's clicks over the horizon. `scratch` is reused
/// between calls so the projection does not allocate in steady state.
/// `path` is cleared and receives the forecast click rate (clicks/s) of each
/// bin of the horizon, the first being bin `last_bin + 1` (for a bin that
/// has partly passed at `now_ms`, the rate over the part still to come).
pub fn project(input: &ForecastInput<'_>, curve: &ResponseCurve, scratch: &mut Vec<f64>, path: &mut Vec<f64>) -> Demand {
    path.clear();
    let ctr = click_through(input, curve);
    let h = input.horizon_bins;
    let n_hist = input.history.len();
    // One buffer: the weights reversed (w_K … w_1, so that the convolution is
    // a forward dot product the compiler vectorises), then the click series
    // (history, then the projection as it is written).
    let k = input.gi.len().saturating_sub(1);
    scratch.clear();
    scratch.extend(input.gi.iter().skip(1).rev());
    scratch.extend_from_slice(input.history);
    scratch.resize(k + n_hist + h, 0.0);
    let (w_rev, scratch) = scratch.split_at_mut(k);
    let bin_s = input.bin_ms as f64 / 1000.0;
    let mut peak = 0.0f64;
    let mut total = 0.0;
    // The response-curve CDF at the end of bin j is its value at the start
    // of bin j + 1: one CDF evaluation per send and bin, not two.
    let mut carried: Option<(i64, f64)> = None;
    let scale = fresh_scale(input, curve, ctr, w_rev, scratch);
    for j in 0..h {
        // Only the part of this bin after `now` is still to come.
        let (from, end) = horizon_bin(input, j);
        let start = end - input.bin_ms;
        let mut direct = 0.0;
        if end > from {
            if let [only] = input.sends {
                let a = match carried {
                    Some((at, v)) if at == from => v,
                    _ => curve.cdf((from - only.ts_ms) as f64),
                };
                let b = curve.cdf((end - only.ts_ms) as f64);
                carried = Some((end, b));
                direct = only.recipients as f64 * ctr * (b - a);
            } else {
                for s in input.sends {
                    let a = curve.cdf((from - s.ts_ms) as f64);
                    let b = curve.cdf((end - s.ts_ms) as f64);
                    direct += s.recipients as f64 * ctr * (b - a);
                }
            }
        }
        let t = n_hist + j;
        let mut forwarded = 0.0;
        if input.r > 0.0 {
            forwarded = scale * input.r * infectivity(w_rev, &scratch[..t]);
        }
        let clicks = direct + forwarded;
        scratch[t] = clicks;
        total += clicks;
        let covered_s = (end - from).max(1) as f64 / 1000.0;
        let rate = if from > start { clicks / covered_s.min(bin_s) } else { clicks / bin_s };
        path.push(rate);
        peak = peak.max(rate);
    }
    Demand { peak_clicks_per_s: peak, clicks: total, click_through: ctr }
}

/// Prior weight κ, in expected clicks, of the factor ρ by which the model's
/// checks against recent bins scale a forecast (`fresh_scale`,
/// `level_scale`): a Gamma(κ, κ) prior, mean 1 ("the model is right"),
/// believed less once the checked bins expected more than κ clicks.
/// Measured: for the fresh-bin check κ = 1, 5 and 20 give the same
/// `--sweep` rows on the simulated sets and the same Twitter backtest within
/// 0.05 % of replica-minutes; for the level check, the Twitter 30-min
/// forecast's MdAPE is 0.72×, 0.77× and 0.84× persistence's at κ = 5, 20
/// and 50 (60 bins checked).
pub const CHECK_PRIOR_CLICKS: f64 = 5.0;

/// ρ's posterior mean for the last `bins` bins of the history:
/// `(O + κ) / (P + κ)`, with `O` the clicks observed there and
/// `P = Σ (ĉ · direct wave + r_fit · Σ_s w_s I_{t−s})` the clicks the model
/// expected (the renewal equation on the observed clicks before each bin).
/// Under `O ~ Poisson(ρ·P)` and `ρ ~ Gamma(κ, κ)` this is ρ's posterior mean
/// (Gamma–Poisson conjugacy; κ = [`CHECK_PRIOR_CLICKS`]). `series` starts
/// with the history. 1 when nothing is checked.
fn checked_ratio(input: &ForecastInput<'_>, curve: &ResponseCurve, ctr: f64, w_rev: &[f64], series: &[f64], bins: usize) -> f64 {
    let n_hist = input.history.len();
    let bins = bins.min(n_hist);
    if bins == 0 {
        return 1.0;
    }
    let (mut observed, mut expected) = (0.0, 0.0);
    for i in n_hist - bins..n_hist {
        let bin = input.last_bin - (n_hist - 1 - i) as i64;
        observed += series[i];
        expected += ctr * direct_per_ctr(input.sends, curve, bin * input.bin_ms, (bin + 1) * input.bin_ms);
        if input.r_fit > 0.0 {
            expected += input.r_fit * infectivity(w_rev, &series[..i]);
        }
    }
    (observed + CHECK_PRIOR_CLICKS) / (expected + CHECK_PRIOR_CLICKS)
}

/// The fresh-bin check of the planner's forecast: the factor ρ ≤ 1 by
/// which [`project`] scales its pass-along when the bins that elapsed after
/// R's window (`fresh_bins`, the last of the history) came in below what
/// the model expected of them ([`checked_ratio`]).
///
/// R is estimated on final bins; the plan is made `allowed_lateness` later
/// and reads the bins since. If they fall short of the model's expectation,
/// the pass-along it projects from the older bins is not coming either — a
/// campaign that stops, a link taken down. Only a shortfall is applied: an
/// excess is what the reactive floor, which reads the same bins, and the
/// learned headroom answer (applying it up to ×2 was measured worse:
/// 0.109 % → 0.206 % over capacity on the heavy-tailed set at 5-min
/// start-up, for 1 % more cost).
fn fresh_scale(input: &ForecastInput<'_>, curve: &ResponseCurve, ctr: f64, w_rev: &[f64], series: &[f64]) -> f64 {
    if input.r <= 0.0 {
        return 1.0;
    }
    checked_ratio(input, curve, ctr, w_rev, series, input.fresh_bins).min(1.0)
}

/// The level check of an estimate's predictive forecast: the factor ρ by
/// which [`predictive`] scales the direct wave still to come, from the last
/// `level_bins` bins of the history ([`checked_ratio`], both ways).
///
/// The direct wave is the target's pooled response curve times the
/// campaign's click-through, which its own direct clicks so far refine
/// against that curve. A campaign faster than the pooled curve has shown
/// most of its clicks early, so its click-through reads high and its
/// remaining wave is over-forecast; a slower one the reverse (the Twitter
/// cascades differ from each other by hours). The clicks of the recent bins
/// against the model's expectation for them measure that misfit where it
/// matters, at the campaign's current age: the forecast is the curve's shape
/// at the observed level, the ratio estimator of survey sampling. Only the
/// direct wave is scaled; scaling R by ρ as well can make a projection
/// explode (ρ·R > 1 over the horizon). Measured in the README (Evaluate,
/// session 14): on the Twitter set the 30-min MdAPE goes from 1.00× to
/// 0.74× persistence's.
fn level_scale(input: &ForecastInput<'_>, curve: &ResponseCurve, ctr: f64, w_rev: &[f64], series: &[f64]) -> f64 {
    checked_ratio(input, curve, ctr, w_rev, series, input.level_bins)
}

/// What the predictive forecast needs beyond a [`ForecastInput`] (whose `r`
/// is then the posterior *mean* of R).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Posterior standard deviation of R (0 when R is not used).
    pub r_sd: f64,
    /// Overdispersion of pass-along: variance / mean of forwarded clicks
    /// (the lineage estimator's φ̂; 1 = Poisson).
    pub dispersion: f64,
}

/// The predictive forecast at the end of one horizon bin: moments of the
/// clicks from `now` to the end of that bin (cumulative, so any horizon up
/// to the path's length is one lookup).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PathStep {
    /// Expected clicks μ (direct + forwarded) on the posterior-mean path.
    pub mean: f64,
    /// Of those, direct (generation-0) clicks from the sends.
    pub direct: f64,
    /// Noise variance given the parameters: direct + φ · forwarded
    /// (Poisson direct clicks, overdispersed pass-along).
    pub noise_var: f64,
    /// ∂μ/∂R, by forward-mode differentiation of the renewal recursion.
    pub d_r: f64,
    /// ∂μ/∂ĉ (click-through), likewise.
    pub d_ctr: f64,
}

/// A campaign's predictive forecast over the horizon, bin by bin, with the
/// parameter uncertainty needed to turn a prefix into a distribution.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForecastPath {
    /// Bin width, ms.
    pub bin_ms: i64,
    /// `steps[j]`: moments of the clicks from now to the end of horizon bin j.
    pub steps: Vec<PathStep>,
    /// Posterior sd of R.
    pub r_sd: f64,
    /// Click-through used (posterior mean ĉ).
    pub click_through: f64,
    /// Posterior sd of the click-through.
    pub click_through_sd: f64,
    /// Expected clicks after now until the campaign ends (final size minus
    /// clicks so far); +∞ when the mean R is 1 or more (no end in the model).
    pub remaining: f64,
    /// Of those, direct clicks still to come from the sends.
    pub remaining_direct: f64,
    /// Highest expected click rate on the mean path, clicks/s.
    pub peak_clicks_per_s: f64,
    /// The learned model error σ²_h its intervals add (`forecast_error.rs`;
    /// none: `forecast.learn_error` off).
    pub model_error: ModelError,
}

impl ForecastPath {
    /// Horizon bins the path covers.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the path covers no bin.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The predictive distribution of the clicks in the first `bins` horizon
    /// bins (clamped to the path): mean μ and variance
    ///
    /// ```text
    /// v = (direct + φ·forwarded) + (∂μ/∂R)² σ_R² + (∂μ/∂ĉ)² σ_ĉ²
    /// ```
    ///
    /// — the noise of the clicks given the parameters plus the parameters'
    /// posterior uncertainty propagated by the delta method (law of total
    /// variance, first order; e.g. Casella & Berger 2002, §5.5.4). R and ĉ
    /// are taken as independent (they come from different clicks). Plus
    /// the learned model error of that horizon, `σ²_h μ²`
    /// (`forecast_error.rs`); the mean is unchanged.
    pub fn clicks(&self, bins: usize) -> CountForecast {
        let f = self.model_clicks(bins);
        let bins = bins.min(self.steps.len());
        CountForecast::new(f.mean, f.variance + self.model_error.at(bins, f.mean) * f.mean * f.mean)
    }

    /// [`ForecastPath::clicks`] without the model error: what the model
    /// itself says (what the model error is learned against).
    pub fn model_clicks(&self, bins: usize) -> CountForecast {
        let Some(s) = self.step(bins) else { return CountForecast::default() };
        let var = s.noise_var + (s.d_r * self.r_sd).powi(2) + (s.d_ctr * self.click_through_sd).powi(2);
        CountForecast::new(s.mean, var)
    }

    /// The send-only forecast (direct wave, no pass-along) over the first
    /// `bins` bins: mean D, variance D + (D/ĉ)² σ_ĉ².
    pub fn send_only(&self, bins: usize) -> CountForecast {
        let Some(s) = self.step(bins) else { return CountForecast::default() };
        let d_ctr = if self.click_through > 0.0 { s.direct / self.click_through } else { 0.0 };
        CountForecast::new(s.direct, s.direct + (d_ctr * self.click_through_sd).powi(2))
    }

    fn step(&self, bins: usize) -> Option<PathStep> {
        if bins == 0 {
            return None;
        }
        self.steps.get(bins.min(self.steps.len()).checked_sub(1)?).copied()
    }
}

/// The part of horizon bin `j` still to come: `[from, end)` with `from` not
/// before `now` (one rule for the planner's projection and the predictive).
fn horizon_bin(input: &ForecastInput<'_>, j: usize) -> (i64, i64) {
    let start = (input.last_bin + 1 + j as i64) * input.bin_ms;
    (start.max(input.now_ms), start + input.bin_ms)
}

/// Expected direct clicks of all sends in `[from, end)` per unit of click-through.
fn direct_per_ctr(sends: &[SendRecord], curve: &ResponseCurve, from: i64, end: i64) -> f64 {
    if end <= from {
        return 0.0;
    }
    sends.iter().map(|s| s.recipients as f64 * (curve.cdf((end - s.ts_ms) as f64) - curve.cdf((from - s.ts_ms) as f64))).sum()
}

/// The predictive forecast: the renewal projection of [`project`] run on
/// the posterior-mean path (`input.r` = posterior mean of R), with the
/// derivatives of every bin with respect to R and to the click-through
/// carried along (forward-mode differentiation of the recursion
/// `I_t = D_t(ĉ) + R Σ_s w_s I_{t−s}`:
/// `∂I_t/∂R = Σ_s w_s I_{t−s} + R Σ_s w_s ∂I_{t−s}/∂R`,
/// `∂I_t/∂ĉ = D_t/ĉ + R Σ_s w_s ∂I_{t−s}/∂ĉ`; observed history has zero
/// derivatives). The click-through's posterior is the Beta of
/// [`click_through`]: sd `√(ĉ(1 − ĉ)/(E + w + 1))`.
///
/// `remaining` is the renewal model's expected final size minus the clicks so
/// far: with `P = Σ_{s ≤ now} I_s Σ_{k > now − s} w_k` the infectivity of
/// past clicks still to act and `D∞` the direct clicks still to come, the
/// expected future clicks `T` satisfy `T = D∞ + R·P + R·T`, so
/// `T = (D∞ + R·P) / (1 − R)` for R < 1 (each click has R/(1 − R)
/// descendants in expectation; a subcritical branching process, e.g.
/// Harris 1963, ch. 1), and +∞ for R ≥ 1.
pub fn predictive(input: &ForecastInput<'_>, curve: &ResponseCurve, spread: Spread) -> ForecastPath {
    let ctr = click_through(input, curve);
    let exposed: f64 = input.sends.iter().map(|s| s.recipients as f64 * curve.cdf((input.now_ms - s.ts_ms) as f64)).sum();
    let ctr_sd = (ctr * (1.0 - ctr) / (exposed + input.click_through_weight + 1.0)).max(0.0).sqrt();
    let (h, n_hist, r) = (input.horizon_bins, input.history.len(), input.r);
    let w_rev: Vec<f64> = input.gi.iter().skip(1).rev().copied().collect();
    let mut clicks: Vec<f64> = input.history.to_vec();
    clicks.resize(n_hist + h, 0.0);
    let (mut d_r, mut d_ctr) = (vec![0.0; n_hist + h], vec![0.0; n_hist + h]);
    let bin_s = input.bin_ms as f64 / 1000.0;
    let mut path = ForecastPath {
        bin_ms: input.bin_ms,
        steps: Vec::with_capacity(h),
        r_sd: spread.r_sd,
        click_through: ctr,
        click_through_sd: ctr_sd,
        ..ForecastPath::default()
    };
    let mut acc = PathStep::default();
    // The direct wave at the level the recent bins showed (`level_scale`):
    // per unit of click-through, so that ∂μ/∂ĉ carries it too.
    let level = level_scale(input, curve, ctr, &w_rev, &clicks);
    for j in 0..h {
        let (from, end) = horizon_bin(input, j);
        let per_ctr = level * direct_per_ctr(input.sends, curve, from, end);
        let direct = ctr * per_ctr;
        let t = n_hist + j;
        let (mut forwarded, mut dr, mut dc) = (0.0, 0.0, per_ctr);
        if r > 0.0 {
            let lambda = infectivity(&w_rev, &clicks[..t]);
            forwarded = r * lambda;
            dr = lambda + r * infectivity(&w_rev, &d_r[..t]);
            dc += r * infectivity(&w_rev, &d_ctr[..t]);
        }
        clicks[t] = direct + forwarded;
        d_r[t] = dr;
        d_ctr[t] = dc;
        acc.mean += direct + forwarded;
        acc.direct += direct;
        acc.noise_var += direct + spread.dispersion.max(1.0) * forwarded;
        acc.d_r += dr;
        acc.d_ctr += dc;
        path.steps.push(acc);
        let covered_s = ((end - from).max(1) as f64 / 1000.0).min(bin_s);
        path.peak_clicks_per_s = path.peak_clicks_per_s.max((direct + forwarded) / covered_s);
    }
    path.remaining_direct =
        level * input.sends.iter().map(|s| s.recipients as f64 * ctr * (1.0 - curve.cdf((input.now_ms - s.ts_ms) as f64))).sum::<f64>();
    path.remaining = if r <= 0.0 {
        path.remaining_direct
    } else if r >= 1.0 {
        f64::INFINITY
    } else {
        // Σ_{k > a} w_k for a past bin a bins before the first projected one.
        let mut tail = vec![0.0; input.gi.len() + 1];
        for k in (0..input.gi.len()).rev() {
            tail[k] = tail[k + 1] + input.gi[k];
        }
        let pending: f64 = input.history.iter().enumerate().map(|(i, &x)| x * tail.get(n_hist - i).copied().unwrap_or(0.0)).sum();
        (path.remaining_direct + r * pending) / (1.0 - r)
    };
    path
}

/// `Σ_{s=1}^{K} w_s I_{t−s}` (terms with `t − s < 0` are zero) from the
/// reversed weights `w_rev = [w_K, …, w_1]` and the series `past = I_0 … I_{t−1}`.
fn infectivity(w_rev: &[f64], past: &[f64]) -> f64 {
    let m = w_rev.len().min(past.len());
    dot(&w_rev[w_rev.len() - m..], &past[past.len() - m..])
}

/// Dot product of two equally long slices, in eight independent partial sums
/// (no bounds checks; SSE2 packs them two by two).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0.0f64; 8];
    for (x, y) in ac.zip(bc) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_fast_path_equals_the_incomplete_gamma() {
        let fast = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        assert!(matches!(fast.shape, CurveShape::Gamma { exponential: true, .. }));
        let g = Gamma::from_mean_sd(1_800_000.0, 1_800_000.0);
        for x in [1.0, 1e3, 6e4, 1.8e6, 1e7, 1e8] {
            assert!((fast.cdf(x) - g.cdf(x)).abs() < 1e-14, "{x}");
        }
        assert!(matches!(ResponseCurve::new(1_800_000.0, 900_000.0).shape, CurveShape::Gamma { exponential: false, .. }));
    }

    #[test]
    fn forecast_gi_keeps_all_but_gi_tail_of_the_mass() {
        use crate::engine::generation_interval::GenerationInterval;
        let gi = GenerationInterval::from_mean_sd_bins(17.0, 10.0).expect("valid");
        let cut = truncated_gi(gi.weights());
        assert!(cut.len() < gi.len(), "{} vs {}", cut.len(), gi.len());
        assert_eq!(cut[..], gi.weights()[..cut.len()]);
        let kept: f64 = cut.iter().sum();
        assert!(kept >= 1.0 - GI_TAIL && kept - cut[cut.len() - 1] < 1.0 - GI_TAIL, "{kept}");
        assert_eq!(truncated_gi(&[0.0, 0.5]), vec![0.0, 0.5], "a support short of the mass is kept whole");
    }

    #[test]
    fn infectivity_is_the_plain_convolution() {
        let gi = [0.0, 0.1, 0.2, 0.3, 0.15, 0.1, 0.05, 0.05, 0.03, 0.02];
        for len in 0..14 {
            let past: Vec<f64> = (0..len).map(|i| 1.0 + i as f64 * 0.5).collect();
            let plain: f64 = (1..gi.len()).filter(|&s| s <= len).map(|s| gi[s] * past[len - s]).sum();
            let w_rev: Vec<f64> = gi[1..].iter().rev().copied().collect();
            assert!((infectivity(&w_rev, &past) - plain).abs() < 1e-12, "len {len}");
        }
    }

    fn input<'a>(sends: &'a [SendRecord], history: &'a [f64], gi: &'a [f64]) -> ForecastInput<'a> {
        ForecastInput {
            now_ms: 0,
            bin_ms: 60_000,
            last_bin: -1,
            history,
            sends,
            direct_clicks: 0,
            r: 0.0,
            gi,
            horizon_bins: 30,
            click_through: 0.05,
            click_through_weight: 2000.0,
            fresh_bins: 0,
            r_fit: 0.0,
            level_bins: 0,
        }
    }

    #[test]
    fn send_time_forecast_is_recipients_times_ctr_times_curve() {
        let sends = [SendRecord { ts_ms: 0, recipients: 20_000 }];
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let mut scratch = Vec::new();
        let mut path = Vec::new();
        let d = project(&input(&sends, &[], &[]), &curve, &mut scratch, &mut path);
        assert_eq!(path.len(), 30);
        assert!(path.windows(2).all(|w| w[1] < w[0]), "an exponential response falls bin by bin");
        // Exponential response (shape 1, mean 30 min): 30 min horizon holds
        // 1 − e^{−1} of the direct clicks; 20 000 × 0.05 × 0.632… = 632.1.
        let expect = 20_000.0 * 0.05 * (1.0 - (-1.0f64).exp());
        assert!((d.clicks - expect).abs() < 1e-6 * expect, "{} vs {expect}", d.clicks);
        // The exponential density peaks at once: first minute holds 1 − e^{−1/30}.
        let first = 20_000.0 * 0.05 * (1.0 - (-1.0f64 / 30.0).exp()) / 60.0;
        assert!((d.peak_clicks_per_s - first).abs() < 1e-9, "{}", d.peak_clicks_per_s);
    }

    #[test]
    fn click_through_updates_with_direct_clicks() {
        let sends = [SendRecord { ts_ms: 0, recipients: 10_000 }];
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let mut inp = input(&sends, &[], &[]);
        inp.now_ms = 1_800_000;
        inp.direct_clicks = 1264; // 20 % of the 6321 recipients who had time
        let exposed = 10_000.0 * (1.0 - (-1.0f64).exp());
        let expect = (1264.0 + 0.05 * 2000.0) / (exposed + 2000.0);
        assert!((click_through(&inp, &curve) - expect).abs() < 1e-12);
    }

    #[test]
    fn predictive_carries_exact_derivatives_and_the_final_size() {
        // One-bin GI, 100 clicks last bin, R = 2: μ(R) over two bins is
        // 100R + 100R², so μ = 600 and ∂μ/∂R = 100 + 200R = 500.
        let gi = [0.0, 1.0];
        let history = [100.0];
        let mut inp = input(&[], &history, &gi);
        inp.last_bin = 0;
        inp.now_ms = 60_000;
        inp.r = 2.0;
        inp.horizon_bins = 2;
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let p = predictive(&inp, &curve, Spread { r_sd: 0.5, dispersion: 3.0 });
        assert!((p.steps[0].mean - 200.0).abs() < 1e-9 && (p.steps[1].mean - 600.0).abs() < 1e-9);
        assert!((p.steps[1].d_r - 500.0).abs() < 1e-9, "{}", p.steps[1].d_r);
        // Noise: φ × forwarded = 3 × 600; parameter part (500 × 0.5)².
        let f = p.clicks(2);
        assert!((f.variance - (1800.0 + 62_500.0)).abs() < 1e-6, "{}", f.variance);
        assert!((p.clicks(1).variance - (600.0 + 2_500.0)).abs() < 1e-6);
        assert_eq!(p.clicks(9), f, "a longer horizon is clamped to the path");
        assert!(p.remaining.is_infinite(), "R ≥ 1 has no final size");
        // R = 0.5: 100 past clicks still to act once → 50 + 25 + … = 100.
        inp.r = 0.5;
        let p = predictive(&inp, &curve, Spread { r_sd: 0.0, dispersion: 1.0 });
        assert!((p.remaining - 100.0).abs() < 1e-9, "{}", p.remaining);
    }

    #[test]
    fn predictive_direct_wave_adds_the_click_through_posterior() {
        let sends = [SendRecord { ts_ms: 0, recipients: 20_000 }];
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let inp = input(&sends, &[], &[]);
        let p = predictive(&inp, &curve, Spread { r_sd: 0.0, dispersion: 1.0 });
        let reach = 20_000.0 * (1.0 - (-1.0f64).exp());
        let d = reach * 0.05;
        // Nothing exposed yet: ĉ is the prior 0.05 with sd √(0.05·0.95/2001).
        let sd = (0.05f64 * 0.95 / 2001.0).sqrt();
        assert!((p.click_through_sd - sd).abs() < 1e-12);
        let f = p.clicks(30);
        assert!((f.mean - d).abs() < 1e-6 * d);
        assert!((f.variance - (d + (reach * sd).powi(2))).abs() < 1e-6 * f.variance, "{}", f.variance);
        let s = p.send_only(30);
        assert!(s.mean == f.mean && (s.variance - f.variance).abs() < 1e-9 * f.variance, "no pass-along: send-only is the whole forecast");
        assert!((p.remaining - 20_000.0 * 0.05).abs() < 1e-6, "every direct click is still to come");
        // The planner's projection is the same mean path at the same R.
        let mut scratch = Vec::new();
        assert!((project(&inp, &curve, &mut scratch, &mut Vec::new()).clicks - f.mean).abs() < 1e-9);
    }

    #[test]
    fn renewal_projection_multiplies_by_r() {
        // One-bin generation interval: each bin's clicks = R × previous bin.
        let gi = [0.0, 1.0];
        let history = [100.0];
        let mut inp = input(&[], &history, &gi);
        inp.last_bin = 0;
        inp.now_ms = 60_000;
        inp.r = 2.0;
        inp.horizon_bins = 3;
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let mut scratch = Vec::new();
        let mut path = Vec::new();
        let d = project(&inp, &curve, &mut scratch, &mut path);
        assert!((d.clicks - (200.0 + 400.0 + 800.0)).abs() < 1e-9);
        assert_eq!(path, vec![200.0 / 60.0, 400.0 / 60.0, 800.0 / 60.0], "the path is each bin's rate");
        assert!((d.peak_clicks_per_s - 800.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn fresh_bins_short_of_the_model_scale_the_pass_along_down() {
        // Four bins of 10 clicks, then two fresh bins of none; the interval
        // spreads over 4 bins. Expected in the fresh bins at R = 1:
        // 0.25·(10+10+10+10) = 10 and 0.25·(0+10+10+10) = 7.5, so
        // ρ = (0 + 5) / (17.5 + 5) = 2/9. The next bin's infectivity is
        // 0.25·(0+0+10+10) = 5: projected 5 without the check, 5·2/9 with it.
        let gi = [0.0, 0.25, 0.25, 0.25, 0.25];
        let history = [10.0, 10.0, 10.0, 10.0, 0.0, 0.0];
        let mut inp = input(&[], &history, &gi);
        inp.last_bin = 5;
        inp.now_ms = 6 * 60_000;
        inp.r = 1.0;
        inp.r_fit = 1.0;
        inp.horizon_bins = 1;
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let mut scratch = Vec::new();
        let unchecked = project(&inp, &curve, &mut scratch, &mut Vec::new()).clicks;
        assert!((unchecked - 5.0).abs() < 1e-12, "{unchecked}");
        inp.fresh_bins = 2;
        let checked = project(&inp, &curve, &mut scratch, &mut Vec::new()).clicks;
        assert!((checked - 5.0 * 2.0 / 9.0).abs() < 1e-12, "{checked}");
        assert!((CHECK_PRIOR_CLICKS - 5.0).abs() < f64::EPSILON, "the hand value above assumes κ = 5");
    }

    #[test]
    fn fresh_bins_at_or_above_the_model_leave_the_projection_alone() {
        let gi = [0.0, 0.25, 0.25, 0.25, 0.25];
        let history = [10.0; 6];
        let mut inp = input(&[], &history, &gi);
        inp.last_bin = 5;
        inp.now_ms = 6 * 60_000;
        inp.r = 1.2;
        inp.horizon_bins = 5;
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let mut scratch = Vec::new();
        let unchecked = project(&inp, &curve, &mut scratch, &mut Vec::new());
        inp.fresh_bins = 2;
        // As expected (R = 1: 10 and 10 clicks) and above it (R = 0.5: 5 and 5).
        for r_fit in [1.0, 0.5] {
            inp.r_fit = r_fit;
            assert_eq!(project(&inp, &curve, &mut scratch, &mut Vec::new()), unchecked, "r_fit {r_fit}");
        }
    }

    #[test]
    fn level_check_scales_the_direct_wave_by_the_recent_bins() {
        // 10 000 recipients sent at 0, exponential response of mean 30 min,
        // click-through held at 0.05 (prior weight 10¹²), no pass-along.
        // Ten minutes in, the model expected 500·(1 − e^{−1/3}) = 141.73
        // clicks; 70 came. ρ = (70 + 5) / (141.73 + 5) and the next 30
        // minutes' 500·(e^{−1/3} − e^{−4/3}) direct clicks are scaled by it,
        // as is the direct wave still to come, 500·e^{−1/3}.
        let sends = [SendRecord { ts_ms: 0, recipients: 10_000 }];
        let curve = ResponseCurve::new(1_800_000.0, 1_800_000.0);
        let history = [7.0; 10];
        let mut inp = input(&sends, &history, &[]);
        inp.last_bin = 9;
        inp.now_ms = 600_000;
        inp.click_through_weight = 1e12;
        let (third, four_thirds) = ((-1.0f64 / 3.0).exp(), (-4.0f64 / 3.0).exp());
        let unchecked = predictive(&inp, &curve, Spread { r_sd: 0.0, dispersion: 1.0 });
        let ahead = 500.0 * (third - four_thirds);
        assert!((unchecked.clicks(30).mean - ahead).abs() < 1e-6, "{}", unchecked.clicks(30).mean);
        inp.level_bins = 10;
        let checked = predictive(&inp, &curve, Spread { r_sd: 0.0, dispersion: 1.0 });
        let rho = (70.0 + CHECK_PRIOR_CLICKS) / (500.0 * (1.0 - third) + CHECK_PRIOR_CLICKS);
        assert!((rho - 75.0 / 146.733).abs() < 1e-4, "{rho}");
        assert!((checked.clicks(30).mean - rho * ahead).abs() < 1e-6, "{}", checked.clicks(30).mean);
        assert!((checked.remaining_direct - rho * 500.0 * third).abs() < 1e-6, "{}", checked.remaining_direct);
        assert!(
            (checked.steps[29].d_ctr / (rho * unchecked.steps[29].d_ctr) - 1.0).abs() < 1e-6,
            "∂μ/∂ĉ carries the level: {} vs {}",
            checked.steps[29].d_ctr,
            rho * unchecked.steps[29].d_ctr
        );
        // A campaign ahead of the model is scaled up (the check goes both ways).
        let fast = [30.0; 10];
        inp.history = &fast;
        assert!(predictive(&inp, &curve, Spread { r_sd: 0.0, dispersion: 1.0 }).clicks(30).mean > 2.0 * ahead);
    }
}

//! `floodgate evaluate`: what floodgate knew at each bin step, scored after
//! the fact against what happened.
//!
//! ```text
//! log ──► truth: per campaign, click times, first click and children of each
//!    │           clicker (deduplicated by campaign + id), sends
//!    └──► replay (the same driver as `floodgate replay`, estimates on)
//!             each floodgate.estimate ──► scored at every --horizons H
//!             each floodgate.viral_onset ──► realized R of its window
//! ```
//!
//! The engine runs with `forecast.horizon` set to the largest horizon; a
//! shorter horizon is a prefix of the estimate's predictive path
//! ([`crate::engine::forecast::ForecastPath`]), so every horizon is scored
//! on the same estimates.
//!
//! **Forecast windows.** An estimate at time t (end of bin b) forecasts the
//! campaign's clicks in bins b + 1 … b + H/bin, i.e. event times in
//! [t, t + H). A window is *scored* when it ends by the end of the log and
//! holds at least [`MIN_ACTUAL_CLICKS`] actual clicks (a percentage error
//! of a near-empty window says nothing); every number of a horizon is over
//! the same scored windows:
//! - *MdAPE*: median of |forecast mean − actual| / actual;
//! - *coverage by forecast*: the same 90 % interval's coverage over the
//!   windows whose *forecast* mean is at least [`MIN_ACTUAL_CLICKS`] clicks,
//!   whatever happened. Choosing windows by their outcome (as the scored
//!   windows are) favours forecasts that fell short, so their coverage is
//!   below nominal even for a calibrated forecaster; choosing them by what
//!   was known measures calibration.
//! - *coverage*: share of windows whose actual count lies in the 90 %
//!   predictive interval [q₀.₀₅, q₀.₉₅] (nominal 0.90); *width*: mean
//!   q₀.₉₅ − q₀.₀₅;
//! - *CRPS*: mean continuous ranked probability score, clicks (Gneiting &
//!   Raftery 2007; see [`crate::engine::predictive`]); for a point forecast
//!   it is the absolute error.
//!
//! Baselines on the same windows: **persistence** (the clicks of [t − H, t)),
//! **linear trend** (Prometheus `predict_linear`: the least-squares line
//! through the last H/bin per-bin counts, extrapolated over the next H/bin
//! bins, each bin at least 0), **send-only** (floodgate's own direct-wave
//! forecast without pass-along, with its interval).
//!
//! **Final size.** At the first estimate at least 1 h after a campaign's first
//! send, the predicted total (clicks so far + the model's expected remaining
//! clicks, [`crate::engine::forecast::ForecastPath::remaining`]) against the
//! campaign's actual total, for campaigns with at least [`MIN_ACTUAL_CLICKS`]
//! clicks. Baselines: persistence (the total so far), linear trend (the last
//! 30 min's line extrapolated until it reaches zero; unbounded if it does not
//! fall) and send-only (so far + the direct clicks still to come).
//!
//! **Realized R.** Where clicks carry `parent`, the case reproduction number
//! of an estimate's window [window_start, t) is the mean number of children
//! (clicks naming them as `parent`, to the end of the log) of the clickers
//! whose first click falls in the window; windows with at least
//! [`MIN_ACTUAL_CLICKS`] such clickers are scored: coverage of the 95 %
//! interval, median |R̂ − R| / R, and bias (median (R̂ − R) / R).
//!
//! **Bad input** is counted, never fatal: lines the replay rejected (by
//! reason, the first few with line and offset) and campaigns with clicks but
//! no send.

pub mod cascades;
pub mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, Duration};
use crate::decode::decode;
use crate::engine::model_file::{LearnedModel, ModelError};
use crate::engine::{Engine, EngineConfigError};
use crate::event::{person_key, EventKind};
use crate::replay::{replay, ReplayReport};
use crate::signal::{Estimate, Signal};
use crate::time::{parse_rfc3339_ms, rfc3339};

/// Windows (and final sizes, and R windows) with fewer actual clicks (or
/// clickers) than this are not scored.
pub const MIN_ACTUAL_CLICKS: u64 = 10;

/// Campaigns whose series the report draws (the largest by clicks).
pub const CHARTED_CAMPAIGNS: usize = 6;

/// Nominal central-interval levels of the calibration plot.
pub const CALIBRATION_LEVELS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/// Age after the first send at which the final size is predicted, ms.
pub const FINAL_SIZE_AGE_MS: i64 = 3_600_000;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The engine refused the configuration.
    #[error(transparent)]
    Engine(#[from] EngineConfigError),
    /// A horizon is not usable.
    #[error("invalid --horizons: {0}")]
    Horizon(String),
    /// The replay failed (reading the log).
    #[error("replaying the log: {0}")]
    Io(#[from] std::io::Error),
    /// The learned model to start from does not fit the engine.
    #[error("loading the model: {0}")]
    LoadModel(#[from] ModelError),
}

/// Scores of one forecaster on one horizon's scored windows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    /// Median absolute percentage error (fraction: 0.43 = 43 %).
    pub mdape: Option<f64>,
    /// Share of windows inside the 90 % interval (forecasters with an interval).
    pub coverage_90: Option<f64>,
    /// Mean width of the 90 % interval, clicks.
    pub mean_width: Option<f64>,
    /// Mean CRPS, clicks (absolute error for point forecasts).
    pub crps: Option<f64>,
}

/// One horizon's scores.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HorizonScores {
    /// The horizon, seconds.
    pub horizon_s: f64,
    /// Scored windows.
    pub windows: u64,
    /// Windows left out: fewer than `MIN_ACTUAL_CLICKS` actual clicks.
    pub windows_too_small: u64,
    /// Windows left out: ending after the log.
    pub windows_censored: u64,
    /// floodgate's predictive forecast.
    pub floodgate: Score,
    /// The last horizon's count.
    pub persistence: Score,
    /// `predict_linear` over the last horizon.
    pub linear_trend: Score,
    /// floodgate's direct wave without pass-along.
    pub send_only: Score,
    /// floodgate's MdAPE / persistence's.
    pub mdape_vs_persistence: Option<f64>,
    /// floodgate's MdAPE / linear trend's.
    pub mdape_vs_linear_trend: Option<f64>,
    /// Actual coverage of floodgate's central intervals at `CALIBRATION_LEVELS`.
    pub calibration: Vec<CalibrationPoint>,
    /// Windows whose floodgate forecast mean is at least `MIN_ACTUAL_CLICKS`
    /// clicks, whatever happened in them: chosen by what was known, not by
    /// the outcome, so their coverage is the interval's calibration (the
    /// scored windows, chosen by a large outcome, favour forecasts that fell
    /// short).
    pub windows_forecast_sized: u64,
    /// Share of those windows inside floodgate's 90 % interval.
    pub coverage_90_forecast_sized: Option<f64>,
}

/// Nominal vs actual coverage of one central interval level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CalibrationPoint {
    /// Nominal level (0.9: the [q₀.₀₅, q₀.₉₅] interval).
    pub nominal: f64,
    /// Share of scored windows inside it.
    pub actual: f64,
}

/// One scored forecast window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowRow {
    /// Campaign.
    pub campaign: String,
    /// Forecast time t (RFC 3339).
    pub time: String,
    /// Horizon, seconds.
    pub horizon_s: f64,
    /// Actual clicks in [t, t + H).
    pub actual: u64,
    /// floodgate's mean.
    pub mean: f64,
    /// floodgate's 5 % quantile.
    pub lo: f64,
    /// floodgate's 95 % quantile.
    pub hi: f64,
    /// floodgate's CRPS.
    pub crps: f64,
    /// Persistence forecast.
    pub persistence: f64,
    /// Linear-trend forecast.
    pub linear_trend: f64,
    /// Send-only mean.
    pub send_only: f64,
}

/// Final-size scores.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FinalSize {
    /// Campaigns scored.
    pub campaigns: u64,
    /// floodgate's MdAPE.
    pub floodgate_mdape: Option<f64>,
    /// Persistence (total so far).
    pub persistence_mdape: Option<f64>,
    /// Linear trend extrapolated to zero.
    pub linear_trend_mdape: Option<f64>,
    /// Send-only.
    pub send_only_mdape: Option<f64>,
    /// Per campaign.
    pub rows: Vec<FinalSizeRow>,
}

/// One campaign's final-size prediction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FinalSizeRow {
    /// Campaign.
    pub campaign: String,
    /// When predicted (RFC 3339).
    pub time: String,
    /// Clicks by then.
    pub so_far: u64,
    /// Actual total clicks.
    pub actual: u64,
    /// floodgate's predicted total (`null` in JSON: unbounded, mean R ≥ 1).
    pub floodgate: f64,
    /// Linear trend's (`null`: unbounded).
    pub linear_trend: f64,
    /// Send-only's.
    pub send_only: f64,
}

/// R against the realized case reproduction number.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RScores {
    /// Windows scored (campaigns with `parent` links, ≥ `MIN_ACTUAL_CLICKS` clickers).
    pub windows: u64,
    /// Share whose realized R is inside the 95 % interval.
    pub coverage_95: Option<f64>,
    /// Share whose realized R is inside the estimate's `r_case` 95 %
    /// interval (the posterior widened by the clickers' offspring noise,
    /// `engine/case_r.rs`).
    pub coverage_95_case: Option<f64>,
    /// Median |R̂ − R| / R (windows with R > 0).
    pub median_relative_error: Option<f64>,
    /// Median (R̂ − R) / R: negative = R̂ too low.
    pub bias: Option<f64>,
    /// Median R̂ / R.
    pub median_ratio: Option<f64>,
}

/// One viral onset and the realized R of its window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OnsetRow {
    /// Campaign.
    pub campaign: String,
    /// Onset time (RFC 3339).
    pub time: String,
    /// R̂ at the onset.
    pub r_mean: f64,
    /// Realized R of the onset's window (`None`: no parent links or no clicker).
    pub realized_r: Option<f64>,
}

/// Onset scores.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Onsets {
    /// `viral_onset` signals.
    pub onsets: u64,
    /// Of which with a realized R.
    pub with_realized_r: u64,
    /// Onsets whose window's realized R is below 1.
    pub below_1: u64,
    /// Below 0.8.
    pub below_0_8: u64,
    /// `below_1 / with_realized_r`.
    pub share_below_1: Option<f64>,
    /// Every onset.
    pub rows: Vec<OnsetRow>,
}

/// Bad input met on the way.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BadInput {
    /// Lines rejected by the replay.
    pub rejected_lines: u64,
    /// By reason.
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// The first few, with line number and byte offset.
    pub examples: Vec<String>,
    /// Campaigns with clicks but no send (no direct-wave forecast possible).
    pub campaigns_without_send: u64,
    /// Their names (the first few).
    pub campaigns_without_send_examples: Vec<String>,
}

/// One charted campaign's forecast series at the largest horizon.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Forecast time, epoch ms.
    pub time_ms: i64,
    /// Actual clicks in [t, t + H) (`None` past the end of the log).
    pub actual: Option<u64>,
    /// Mean.
    pub mean: f64,
    /// 5 % quantile.
    pub lo: f64,
    /// 95 % quantile.
    pub hi: f64,
}

/// A charted campaign.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CampaignSeries {
    /// Campaign.
    pub campaign: String,
    /// Its total clicks.
    pub clicks: u64,
    /// Horizon of the series, seconds.
    pub horizon_s: f64,
    /// One point per estimate.
    pub points: Vec<SeriesPoint>,
}

/// Everything `floodgate evaluate` measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Evaluation {
    /// Campaigns in the log.
    pub campaigns: u64,
    /// Clicks (deduplicated).
    pub clicks: u64,
    /// Estimates scored.
    pub estimates: u64,
    /// Per horizon.
    pub horizons: Vec<HorizonScores>,
    /// Final size at 1 h.
    pub final_size: FinalSize,
    /// The direct wave forecast at the send.
    pub send_time: SendTime,
    /// R against realized R.
    pub r: RScores,
    /// Viral onsets.
    pub onsets: Onsets,
    /// Bad input.
    pub bad_input: BadInput,
    /// The replay's counters.
    pub replay: ReplayReport,
    /// Charted campaigns.
    pub series: Vec<CampaignSeries>,
    /// Every scored window (all horizons).
    pub windows: Vec<WindowRow>,
}

/// The send-time forecast of the direct wave: for each campaign, the first
/// estimate after its first send, if within `SEND_TIME_WITHIN_MS` of it (an
/// estimate needs a click, so this is where the first clicks land; those
/// few have begun to refine the click-through), its send-only forecast of
/// the direct clicks over the horizon against the direct clicks that came
/// (campaigns with a target and at least `MIN_ACTUAL_CLICKS`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SendTime {
    /// The horizon, seconds.
    pub horizon_s: f64,
    /// Sends scored.
    pub sends: u64,
    /// Of those, sends after the target's first `LEARNED_AFTER` sends.
    pub learned_sends: u64,
    /// Share of those predicted within a factor 1.5 of the actual.
    pub learned_within_1_5: Option<f64>,
    /// Median predicted / actual of those.
    pub learned_median_ratio: Option<f64>,
    /// Share of the target's first `LEARNED_AFTER` sends within a factor 1.5.
    pub first_within_1_5: Option<f64>,
    /// Per send.
    pub rows: Vec<SendTimeRow>,
}

/// One send's direct-wave forecast.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SendTimeRow {
    /// Campaign.
    pub campaign: String,
    /// Target.
    pub target: String,
    /// How many of the target's campaigns were sent before (in this scoring).
    pub previous_sends: u64,
    /// Predicted direct clicks over the horizon.
    pub predicted: f64,
    /// Actual direct clicks over the horizon.
    pub actual: u64,
}

/// Sends of a target after which its direct wave counts as learned (the
/// goal of the learning issue: after an audience's first 5 sends).
pub const LEARNED_AFTER: u64 = 5;

/// How soon after the send the first estimate must come to be scored.
pub const SEND_TIME_WITHIN_MS: i64 = 300_000;

/// What happened to one campaign, from the whole log.
#[derive(Debug, Default)]
struct Truth {
    /// Click times, sorted.
    clicks_ms: Vec<i64>,
    /// First send time.
    first_send_ms: Option<i64>,
    /// Clickers by first click time: (time, children), sorted by time.
    clickers: Vec<(i64, u32)>,
    /// Prefix sums of `clickers`' children (`len + 1` entries).
    children_prefix: Vec<u64>,
    /// Whether any click names a parent.
    has_parents: bool,
    /// Direct (generation-0) click times, sorted.
    direct_ms: Vec<i64>,
}

impl Truth {
    /// Clicks with `from ≤ ts < to`.
    fn count(&self, from: i64, to: i64) -> u64 {
        (self.clicks_ms.partition_point(|&t| t < to) - self.clicks_ms.partition_point(|&t| t < from)) as u64
    }

    /// (clickers, children) of the clickers whose first click is in [from, to).
    fn cohort(&self, from: i64, to: i64) -> (u64, u64) {
        let a = self.clickers.partition_point(|c| c.0 < from);
        let b = self.clickers.partition_point(|c| c.0 < to);
        ((b - a) as u64, self.children_prefix[b] - self.children_prefix[a])
    }
}

/// Reads the truth of every campaign: one pass of the decoder over the
/// lines, clicks deduplicated by campaign + id as the engine does.
fn read_truth(log: &[u8]) -> HashMap<String, Truth> {
    #[derive(Default)]
    struct Raw {
        truth: Truth,
        first_click: HashMap<u64, i64>,
        children: HashMap<u64, u32>,
        ids: HashSet<u64>,
    }
    let mut raw: HashMap<String, Raw> = HashMap::new();
    for line in log.split(|&b| b == b'\n') {
        let Ok(ev) = decode(line.trim_ascii()) else { continue };
        let r = raw.entry(ev.campaign.to_string()).or_default();
        match ev.kind {
            EventKind::Send => {
                r.truth.first_send_ms = Some(r.truth.first_send_ms.map_or(ev.ts_ms, |t| t.min(ev.ts_ms)));
            }
            EventKind::Click => {
                if let Some(id) = &ev.id {
                    if !r.ids.insert(person_key(id)) {
                        continue;
                    }
                }
                r.truth.clicks_ms.push(ev.ts_ms);
                if ev.generation == 0 {
                    r.truth.direct_ms.push(ev.ts_ms);
                }
                if let Some(p) = &ev.person {
                    let first = r.first_click.entry(person_key(p)).or_insert(ev.ts_ms);
                    *first = (*first).min(ev.ts_ms);
                }
                if let Some(parent) = &ev.parent {
                    r.truth.has_parents = true;
                    *r.children.entry(person_key(parent)).or_default() += 1;
                }
            }
            EventKind::Forward => {}
        }
    }
    raw.into_iter()
        .map(|(name, mut r)| {
            r.truth.clicks_ms.sort_unstable();
            r.truth.direct_ms.sort_unstable();
            let mut clickers: Vec<(i64, u32)> = r.first_click.iter().map(|(p, &t)| (t, r.children.get(p).copied().unwrap_or(0))).collect();
            clickers.sort_unstable();
            let mut prefix = Vec::with_capacity(clickers.len() + 1);
            prefix.push(0u64);
            for c in &clickers {
                prefix.push(prefix[prefix.len() - 1] + u64::from(c.1));
            }
            r.truth.clickers = clickers;
            r.truth.children_prefix = prefix;
            (name, r.truth)
        })
        .collect()
}

/// Parses `5m,15m,30m` into milliseconds.
pub fn parse_horizons(s: &str) -> Result<Vec<i64>, EvaluateError> {
    s.split(',').map(|h| crate::time::parse_duration_ms(h.trim()).map_err(|e| EvaluateError::Horizon(format!("{h:?}: {e}")))).collect()
}

/// Least-squares line through `ys` at x = 0, 1, …: (intercept, slope).
fn least_squares(ys: &[f64]) -> (f64, f64) {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return (ys.first().copied().unwrap_or(0.0), 0.0);
    }
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (y - my);
        sxx += dx * dx;
    }
    let slope = sxy / sxx;
    (my - slope * mx, slope)
}

/// Per-bin clicks of the `n` bins ending at `end_ms` (exclusive).
fn per_bin(truth: &Truth, end_ms: i64, bin_ms: i64, n: usize) -> Vec<f64> {
    (0..n).map(|i| truth.count(end_ms - (n - i) as i64 * bin_ms, end_ms - (n - i - 1) as i64 * bin_ms) as f64).collect()
}

/// `predict_linear`-style forecast of the next `n` bins' total from the last `n`.
fn linear_trend(truth: &Truth, t_ms: i64, bin_ms: i64, n: usize) -> f64 {
    let (a, slope) = least_squares(&per_bin(truth, t_ms, bin_ms, n));
    (n..2 * n).map(|x| (a + slope * x as f64).max(0.0)).sum()
}

/// The last 30 min's line extrapolated until it reaches zero: the clicks
/// still to come (∞ if the line does not fall).
fn linear_trend_remaining(truth: &Truth, t_ms: i64, bin_ms: i64) -> f64 {
    let n = (1_800_000 / bin_ms).max(2) as usize;
    let (a, slope) = least_squares(&per_bin(truth, t_ms, bin_ms, n));
    remaining_on_line(a, slope, n)
}

/// Σ (a + slope·x) over x = n, n+1, … while the term is positive; ∞ if the
/// line does not fall and is still positive at x = n.
fn remaining_on_line(a: f64, slope: f64, n: usize) -> f64 {
    if slope >= 0.0 {
        return if a + slope * n as f64 > 0.0 { f64::INFINITY } else { 0.0 };
    }
    // Σ (a + slope·x) over x = n, n+1, … while the term is positive, in
    // closed form: a nearly flat line would take ~a/|slope| steps to walk.
    let first = n as f64;
    let last = (-a / slope).ceil() - 1.0; // the last x with a + slope·x > 0
    if last < first {
        return 0.0;
    }
    let terms = last - first + 1.0;
    terms * a + slope * (first + last) * terms / 2.0
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 })
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn ape(forecast: f64, actual: f64) -> f64 {
    (forecast - actual).abs() / actual
}

/// Accumulates one horizon's scored windows.
#[derive(Default)]
struct HorizonAcc {
    windows: u64,
    too_small: u64,
    censored: u64,
    ape: [Vec<f64>; 4],
    crps: [Vec<f64>; 4],
    covered: [u64; 2],
    width: [Vec<f64>; 2],
    calibration: [u64; CALIBRATION_LEVELS.len()],
    /// Windows whose forecast mean is at least `MIN_ACTUAL_CLICKS`.
    forecast_sized: u64,
    /// Of which inside floodgate's 90 % interval.
    forecast_sized_covered: u64,
}

/// Indexes into `HorizonAcc`'s arrays.
const FLOODGATE: usize = 0;
const SEND_ONLY: usize = 1;
const PERSISTENCE: usize = 2;
const LINEAR_TREND: usize = 3;

impl HorizonAcc {
    fn score(&self, which: usize) -> Score {
        let n = self.windows as f64;
        let interval = which <= SEND_ONLY && self.windows > 0;
        Score {
            mdape: median(self.ape[which].clone()),
            coverage_90: interval.then(|| self.covered[which] as f64 / n),
            mean_width: if interval { mean(&self.width[which]) } else { None },
            crps: mean(&self.crps[which]),
        }
    }
}

/// Scores the estimates of `log` (see the module docs).
pub fn evaluate(log: &[u8], cfg: Arc<Config>, horizons_ms: &[i64]) -> Result<Evaluation, EvaluateError> {
    Ok(evaluate_from(log, cfg, horizons_ms, None)?.0)
}

/// [`evaluate`] with the engine starting from a learned model (`--model`),
/// and what it had learned at the end.
pub fn evaluate_from(
    log: &[u8],
    cfg: Arc<Config>,
    horizons_ms: &[i64],
    start: Option<&LearnedModel>,
) -> Result<(Evaluation, LearnedModel), EvaluateError> {
    let bin_ms = cfg.estimator.bin.ms();
    if horizons_ms.is_empty() {
        return Err(EvaluateError::Horizon("give at least one horizon".into()));
    }
    for &h in horizons_ms {
        if h < bin_ms || h % bin_ms != 0 || h > 86_400_000 {
            return Err(EvaluateError::Horizon(format!(
                "{} must be a whole number of bins (estimator.bin = {}) and at most 24h",
                crate::time::format_duration_ms(h),
                crate::time::format_duration_ms(bin_ms)
            )));
        }
    }
    let max_h = horizons_ms.iter().copied().max().unwrap_or(bin_ms);
    let mut cfg = (*cfg).clone();
    cfg.forecast.horizon = Duration(max_h);
    let truth = read_truth(log);
    let log_end_ms = truth.values().filter_map(|t| t.clicks_ms.last()).max().map_or(0, |&t| (t.div_euclid(bin_ms) + 1) * bin_ms);

    let mut ev =
        Evaluation { campaigns: truth.len() as u64, clicks: truth.values().map(|t| t.clicks_ms.len() as u64).sum(), ..Default::default() };
    let mut without_send: Vec<&String> =
        truth.iter().filter(|(_, t)| t.first_send_ms.is_none() && !t.clicks_ms.is_empty()).map(|(n, _)| n).collect();
    without_send.sort();
    ev.bad_input.campaigns_without_send = without_send.len() as u64;
    ev.bad_input.campaigns_without_send_examples = without_send.iter().take(10).map(|s| s.to_string()).collect();

    let mut by_size: Vec<(&String, usize)> = truth.iter().map(|(n, t)| (n, t.clicks_ms.len())).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let charted: HashMap<&str, usize> = by_size.iter().take(CHARTED_CAMPAIGNS).enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
    ev.series = by_size
        .iter()
        .take(CHARTED_CAMPAIGNS)
        .map(|(n, c)| CampaignSeries { campaign: n.to_string(), clicks: *c as u64, horizon_s: max_h as f64 / 1000.0, points: Vec::new() })
        .collect();

    let mut acc: Vec<HorizonAcc> = horizons_ms.iter().map(|_| HorizonAcc::default()).collect();
    let (mut r_covered, mut r_rel, mut r_signed, mut r_ratio, mut r_windows) = (0u64, Vec::new(), Vec::new(), Vec::new(), 0u64);
    let mut r_case_covered = 0u64;
    let mut final_done: HashSet<String> = HashSet::new();
    let mut send_done: HashSet<String> = HashSet::new();
    let mut sends_per_target: HashMap<String, u64> = HashMap::new();
    let mut send_rows: Vec<SendTimeRow> = Vec::new();
    let mut final_rows: Vec<FinalSizeRow> = Vec::new();
    // Onsets waiting for their bin's estimate (same campaign and time).
    let mut pending_onsets: HashMap<(String, i64), usize> = HashMap::new();
    let mut errors: Vec<String> = Vec::new();

    let mut engine = Engine::new(cfg)?.with_estimates(true);
    if let Some(m) = start {
        engine.load_model(m)?;
    }
    let mut on_estimate = |e: &Estimate, ev: &mut Evaluation, pending_onsets: &mut HashMap<(String, i64), usize>| {
        let Some(t) = truth.get(&*e.campaign) else { return };
        let path = &e.forecast.path;
        ev.estimates += 1;
        let window_start_ms = parse_rfc3339_ms(&e.window_start).unwrap_or(e.time_ms);
        // Realized R of the estimate's window.
        let realized = {
            let (n, children) = t.cohort(window_start_ms, e.time_ms);
            (n > 0 && t.has_parents).then(|| (n, children as f64 / n as f64))
        };
        if let Some(i) = pending_onsets.remove(&(e.campaign.to_string(), e.time_ms)) {
            ev.onsets.rows[i].realized_r = realized.map(|r| r.1);
        }
        if let Some((_, r)) = realized.filter(|&(n, _)| n >= MIN_ACTUAL_CLICKS) {
            r_windows += 1;
            if e.r.lo <= r && r <= e.r.hi {
                r_covered += 1;
            }
            if e.r_case.is_some_and(|c| c.lo <= r && r <= c.hi) {
                r_case_covered += 1;
            }
            if r > 0.0 {
                r_rel.push((e.r.mean - r).abs() / r);
                r_signed.push((e.r.mean - r) / r);
                r_ratio.push(e.r.mean / r);
            }
        }
        // The direct wave forecast at the send.
        if let (Some(send), Some(target)) = (t.first_send_ms, e.target.as_deref()) {
            if e.time_ms >= send && !send_done.contains(&*e.campaign) {
                send_done.insert(e.campaign.to_string());
                let previous = sends_per_target.entry(target.to_string()).or_default();
                let end = e.time_ms + max_h;
                if e.time_ms - send <= SEND_TIME_WITHIN_MS && end <= log_end_ms {
                    let actual = (t.direct_ms.partition_point(|&x| x < end) - t.direct_ms.partition_point(|&x| x < e.time_ms)) as u64;
                    if actual >= MIN_ACTUAL_CLICKS {
                        send_rows.push(SendTimeRow {
                            campaign: e.campaign.to_string(),
                            target: target.to_string(),
                            previous_sends: *previous,
                            predicted: path.send_only(path.len()).mean,
                            actual,
                        });
                    }
                }
                *previous += 1;
            }
        }
        // Final size at 1 h.
        if let Some(send) = t.first_send_ms {
            if e.time_ms >= send + FINAL_SIZE_AGE_MS && !final_done.contains(&*e.campaign) {
                final_done.insert(e.campaign.to_string());
                let so_far = t.count(i64::MIN, e.time_ms);
                let actual = t.clicks_ms.len() as u64;
                if actual >= MIN_ACTUAL_CLICKS {
                    final_rows.push(FinalSizeRow {
                        campaign: e.campaign.to_string(),
                        time: rfc3339(e.time_ms),
                        so_far,
                        actual,
                        floodgate: so_far as f64 + path.remaining,
                        linear_trend: so_far as f64 + linear_trend_remaining(t, e.time_ms, bin_ms),
                        send_only: so_far as f64 + path.remaining_direct,
                    });
                }
            }
        }
        // Forecast windows.
        if let Some(&i) = charted.get(&*e.campaign) {
            let f = path.clicks(path.len());
            let table = f.table();
            let end = e.time_ms + max_h;
            ev.series[i].points.push(SeriesPoint {
                time_ms: e.time_ms,
                actual: (end <= log_end_ms).then(|| t.count(e.time_ms, end)),
                mean: f.mean,
                lo: table.quantile(0.05),
                hi: table.quantile(0.95),
            });
        }
        for (a, &h) in acc.iter_mut().zip(horizons_ms) {
            let end = e.time_ms + h;
            if end > log_end_ms {
                a.censored += 1;
                continue;
            }
            let y = t.count(e.time_ms, end);
            let bins = (h / bin_ms) as usize;
            let yf = y as f64;
            let f = path.clicks(bins);
            let sized = f.mean >= MIN_ACTUAL_CLICKS as f64;
            if y < MIN_ACTUAL_CLICKS && !sized {
                a.too_small += 1;
                continue;
            }
            let table = f.table();
            let (lo, hi) = (table.quantile(0.05), table.quantile(0.95));
            if sized {
                a.forecast_sized += 1;
                a.forecast_sized_covered += u64::from(lo <= yf && yf <= hi);
            }
            if y < MIN_ACTUAL_CLICKS {
                a.too_small += 1;
                continue;
            }
            a.windows += 1;
            let crps = table.crps(y);
            a.ape[FLOODGATE].push(ape(f.mean, yf));
            a.crps[FLOODGATE].push(crps);
            a.width[FLOODGATE].push(hi - lo);
            a.covered[FLOODGATE] += u64::from(lo <= yf && yf <= hi);
            for (k, level) in CALIBRATION_LEVELS.iter().enumerate() {
                let (l, u) = (table.quantile((1.0 - level) / 2.0), table.quantile((1.0 + level) / 2.0));
                a.calibration[k] += u64::from(l <= yf && yf <= u);
            }
            let s = path.send_only(bins);
            let st = s.table();
            let (slo, shi) = (st.quantile(0.05), st.quantile(0.95));
            a.ape[SEND_ONLY].push(ape(s.mean, yf));
            a.crps[SEND_ONLY].push(st.crps(y));
            a.width[SEND_ONLY].push(shi - slo);
            a.covered[SEND_ONLY] += u64::from(slo <= yf && yf <= shi);
            let persistence = t.count(e.time_ms - h, e.time_ms) as f64;
            let trend = linear_trend(t, e.time_ms, bin_ms, bins);
            for (which, p) in [(PERSISTENCE, persistence), (LINEAR_TREND, trend)] {
                a.ape[which].push(ape(p, yf));
                a.crps[which].push((p - yf).abs());
            }
            ev.windows.push(WindowRow {
                campaign: e.campaign.to_string(),
                time: rfc3339(e.time_ms),
                horizon_s: h as f64 / 1000.0,
                actual: y,
                mean: f.mean,
                lo,
                hi,
                crps,
                persistence,
                linear_trend: trend,
                send_only: s.mean,
            });
        }
    };
    let report = replay(
        log,
        &mut engine,
        |s| {
            match s {
                Signal::Estimate(e) => on_estimate(e, &mut ev, &mut pending_onsets),
                Signal::ViralOnset(o) => {
                    pending_onsets.insert((o.campaign.to_string(), o.time_ms), ev.onsets.rows.len());
                    ev.onsets.rows.push(OnsetRow {
                        campaign: o.campaign.to_string(),
                        time: rfc3339(o.time_ms),
                        r_mean: o.r.mean,
                        realized_r: None,
                    });
                }
                _ => {}
            }
            Ok(())
        },
        |e| {
            if errors.len() < 10 {
                errors.push(e.to_string());
            }
        },
    )?;

    ev.bad_input.rejected_lines = report.rejected;
    ev.bad_input.rejected_by_reason = report.rejected_by_reason.clone();
    ev.bad_input.examples = errors;
    ev.replay = report;
    ev.horizons = acc
        .iter()
        .zip(horizons_ms)
        .map(|(a, &h)| {
            let floodgate = a.score(FLOODGATE);
            let persistence = a.score(PERSISTENCE);
            let linear_trend = a.score(LINEAR_TREND);
            let ratio = |x: &Score| match (floodgate.mdape, x.mdape) {
                (Some(f), Some(b)) if b > 0.0 => Some(f / b),
                _ => None,
            };
            HorizonScores {
                horizon_s: h as f64 / 1000.0,
                windows: a.windows,
                windows_too_small: a.too_small,
                windows_censored: a.censored,
                mdape_vs_persistence: ratio(&persistence),
                mdape_vs_linear_trend: ratio(&linear_trend),
                floodgate,
                persistence,
                linear_trend,
                send_only: a.score(SEND_ONLY),
                calibration: CALIBRATION_LEVELS
                    .iter()
                    .zip(a.calibration)
                    .map(|(&nominal, c)| CalibrationPoint {
                        nominal,
                        actual: if a.windows > 0 { c as f64 / a.windows as f64 } else { 0.0 },
                    })
                    .collect(),
                windows_forecast_sized: a.forecast_sized,
                coverage_90_forecast_sized: (a.forecast_sized > 0).then(|| a.forecast_sized_covered as f64 / a.forecast_sized as f64),
            }
        })
        .collect();
    let fs_ape = |f: fn(&FinalSizeRow) -> f64| median(final_rows.iter().map(|r| ape(f(r), r.actual as f64)).collect());
    ev.final_size = FinalSize {
        campaigns: final_rows.len() as u64,
        floodgate_mdape: fs_ape(|r| r.floodgate),
        persistence_mdape: fs_ape(|r| r.so_far as f64),
        linear_trend_mdape: fs_ape(|r| r.linear_trend),
        send_only_mdape: fs_ape(|r| r.send_only),
        rows: final_rows,
    };
    let within = |rows: &[&SendTimeRow]| {
        (!rows.is_empty()).then(|| {
            rows.iter().filter(|r| r.predicted <= 1.5 * r.actual as f64 && 1.5 * r.predicted >= r.actual as f64).count() as f64
                / rows.len() as f64
        })
    };
    let learned: Vec<&SendTimeRow> = send_rows.iter().filter(|r| r.previous_sends >= LEARNED_AFTER).collect();
    let first: Vec<&SendTimeRow> = send_rows.iter().filter(|r| r.previous_sends < LEARNED_AFTER).collect();
    ev.send_time = SendTime {
        horizon_s: max_h as f64 / 1000.0,
        sends: send_rows.len() as u64,
        learned_sends: learned.len() as u64,
        learned_within_1_5: within(&learned),
        learned_median_ratio: median(learned.iter().map(|r| r.predicted / r.actual as f64).collect()),
        first_within_1_5: within(&first),
        rows: Vec::new(),
    };
    ev.send_time.rows = send_rows;
    ev.r = RScores {
        windows: r_windows,
        coverage_95: (r_windows > 0).then(|| r_covered as f64 / r_windows as f64),
        coverage_95_case: (r_windows > 0).then(|| r_case_covered as f64 / r_windows as f64),
        median_relative_error: median(r_rel),
        bias: median(r_signed),
        median_ratio: median(r_ratio),
    };
    let o = &mut ev.onsets;
    o.onsets = o.rows.len() as u64;
    o.with_realized_r = o.rows.iter().filter(|r| r.realized_r.is_some()).count() as u64;
    o.below_1 = o.rows.iter().filter(|r| r.realized_r.is_some_and(|x| x < 1.0)).count() as u64;
    o.below_0_8 = o.rows.iter().filter(|r| r.realized_r.is_some_and(|x| x < 0.8)).count() as u64;
    o.share_below_1 = (o.with_realized_r > 0).then(|| o.below_1 as f64 / o.with_realized_r as f64);
    Ok((ev, engine.learned_model()))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| if v.is_finite() { format!("{:.0}%", 100.0 * v) } else { "inf".into() })
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// The evaluation as a plain-text table (what `floodgate evaluate` prints).
pub fn text_table(ev: &Evaluation) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "{} campaigns, {} clicks, {} estimates scored", ev.campaigns, ev.clicks, ev.estimates);
    let _ = writeln!(o, "\nclick forecasts (windows with >= {MIN_ACTUAL_CLICKS} actual clicks)");
    let _ =
        writeln!(o, "{:<8} {:>7}  {:<12} {:>6} {:>9} {:>8} {:>8}", "horizon", "windows", "forecaster", "MdAPE", "cover90", "width", "CRPS");
    for h in &ev.horizons {
        let name = crate::time::format_duration_ms((h.horizon_s * 1000.0) as i64);
        for (label, s) in
            [("floodgate", &h.floodgate), ("persistence", &h.persistence), ("linear trend", &h.linear_trend), ("send-only", &h.send_only)]
        {
            let _ = writeln!(
                o,
                "{:<8} {:>7}  {:<12} {:>6} {:>9} {:>8} {:>8}",
                name,
                h.windows,
                label,
                pct(s.mdape),
                pct(s.coverage_90),
                num(s.mean_width),
                num(s.crps)
            );
        }
        let _ = writeln!(
            o,
            "{:<8} {:>7}  MdAPE vs persistence {}, vs linear trend {}",
            name,
            "",
            num(h.mdape_vs_persistence),
            num(h.mdape_vs_linear_trend)
        );
        let _ = writeln!(
            o,
            "{:<8} {:>7}  floodgate's 90% interval covers {} of the {} windows whose forecast is >= {MIN_ACTUAL_CLICKS} clicks",
            name,
            "",
            pct(h.coverage_90_forecast_sized),
            h.windows_forecast_sized
        );
    }
    let f = &ev.final_size;
    let _ = writeln!(
        o,
        "\nfinal size at 1h after the send ({} campaigns), MdAPE: floodgate {}, persistence {}, linear trend {}, send-only {}",
        f.campaigns,
        pct(f.floodgate_mdape),
        pct(f.persistence_mdape),
        pct(f.linear_trend_mdape),
        pct(f.send_only_mdape)
    );
    let st = &ev.send_time;
    let _ = writeln!(
        o,
        "direct wave at the send ({} sends, next {}): within x1.5 of the actual for {} of the sends after a target's first {LEARNED_AFTER} ({} sends; median ratio {}), {} of the first ones",
        st.sends,
        crate::time::format_duration_ms((st.horizon_s * 1000.0) as i64),
        pct(st.learned_within_1_5),
        st.learned_sends,
        num(st.learned_median_ratio),
        pct(st.first_within_1_5)
    );
    let r = &ev.r;
    let _ = writeln!(
        o,
        "R vs realized case R ({} windows): 95% coverage {}, median relative error {}, bias {}, median ratio {}; r_case 95% coverage {}",
        r.windows,
        pct(r.coverage_95),
        pct(r.median_relative_error),
        pct(r.bias),
        num(r.median_ratio),
        pct(r.coverage_95_case)
    );
    let n = &ev.onsets;
    let _ = writeln!(
        o,
        "viral onsets: {} ({} with realized R): {} below R 1 ({}), {} below 0.8",
        n.onsets,
        n.with_realized_r,
        n.below_1,
        pct(n.share_below_1),
        n.below_0_8
    );
    let b = &ev.bad_input;
    let _ = writeln!(
        o,
        "bad input: {} rejected lines {:?}; {} campaigns without a send",
        b.rejected_lines, b.rejected_by_reason, b.campaigns_without_send
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_and_trend_are_hand_checked() {
        let (a, b) = least_squares(&[1.0, 3.0, 5.0]);
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
        // Clicks at 1, 3, 5 per bin in the last 3 bins → 7 + 9 + 11 next.
        let mut t = Truth::default();
        for (bin, n) in [(0, 1), (1, 3), (2, 5)] {
            t.clicks_ms.extend(std::iter::repeat_n(bin * 60_000 + 5, n));
        }
        assert_eq!(linear_trend(&t, 180_000, 60_000, 3), 27.0);
    }

    #[test]
    fn remaining_on_a_falling_line_is_summed_in_closed_form() {
        // 10 - x for x = 3…9: 7 + 6 + … + 1.
        assert_eq!(remaining_on_line(10.0, -1.0, 3), 28.0);
        // 10 - 2x for x = 3, 4 (x = 5 gives 0, not counted).
        assert_eq!(remaining_on_line(10.0, -2.0, 3), 6.0);
        assert_eq!(remaining_on_line(1.0, -1.0, 3), 0.0);
        assert_eq!(remaining_on_line(1.0, 0.0, 3), f64::INFINITY);
        assert_eq!(remaining_on_line(-1.0, 0.0, 3), 0.0);
        // A nearly flat line: ~10^12 terms, summed at once (the old loop
        // walked them one by one), ≈ a²/(2|slope|).
        let r = remaining_on_line(1.0, -1e-12, 0);
        assert!((r / 5e11 - 1.0).abs() < 1e-6, "{r}");
    }

    #[test]
    fn realized_r_counts_children_of_first_clicks_in_the_window() {
        let log = br#"{"type":"send","campaign":"c","ts":0,"recipients":10,"target":"w"}
{"type":"click","campaign":"c","ts":1000,"id":"1","person":"a"}
{"type":"click","campaign":"c","ts":2000,"id":"2","person":"b"}
{"type":"click","campaign":"c","ts":70000,"id":"3","person":"x","generation":1,"parent":"a"}
{"type":"click","campaign":"c","ts":70000,"id":"3","person":"x","generation":1,"parent":"a"}
{"type":"click","campaign":"c","ts":80000,"id":"4","person":"y","generation":1,"parent":"a"}
{"type":"click","campaign":"c","ts":90000,"id":"5","person":"z","generation":2,"parent":"x"}
"#;
        let truth = read_truth(log);
        let t = &truth["c"];
        assert_eq!(t.clicks_ms.len(), 5, "the duplicate id is counted once");
        // First minute: a (2 children) and b (0) → R = 1.
        assert_eq!(t.cohort(0, 60_000), (2, 2));
        // Second minute: x (1 child), y (0), z (0).
        assert_eq!(t.cohort(60_000, 120_000), (3, 1));
        assert_eq!(t.count(60_000, 120_000), 3);
    }
}

//! `floodgate backtest`: what scale-ahead would have done on a mailing's own
//! event log, next to reactive autoscaling, on a simple capacity model.
//!
//! ```text
//! log ──► replay (the ingest step, with estimates) ──► scale_ahead, viral_onset, R
//!                   └──► traffic: each event it took, clicks per target per minute
//! per target, per policy (reactive | trend | floodgate):
//!     replica requests ──► capacity model (start-up delay) ──► overload, cost
//! ```
//!
//! The capacity model is in [`capacity`], the policies (and the
//! perfect-foresight oracle) in [`policy`], the HTML report in [`report`],
//! the cost–overload frontier of `--sweep` in [`sweep`]. [`prepare`] reads
//! the log and runs the engine once; [`evaluate`] applies one [`Model`] to
//! that (with `--day`, over whole UTC days of baseline traffic). Everything a target's capacity needs comes from
//! `[planner]` / `[targets.<name>]` of the configuration
//! ([`crate::config::Config::planner_for`]): `requests_per_click`,
//! `capacity_per_replica`, `baseline_rps`, `min_replicas`, `max_replicas`.
//! The reactive baselines aim at utilisation `1 / (1 + headroom)` unless
//! told otherwise, so all policies plan with the same spare capacity.
//!
//! **Traffic.** The traffic is what the one pass through the ingest step
//! ([`crate::ingest`]) took: every event not rejected and not dropped as a
//! duplicate, late and shed events included (they happened, even if the
//! engine no longer counts them). So the input rules are the replay's: size
//! limit, far-future hold (a jump two events agree on is kept), and the
//! engine's de-duplication (same campaign and id in the same bin).
//!
//! **Surge and lead time.** A campaign is *viral* if the engine emitted a
//! `viral_onset` for it. Its *surge* is the start of the first minute in which
//! its clicks (all generations) reach 3× the peak per-minute clicks of its
//! direct wave (generation-0 clicks). A policy's *lead* is the surge minus
//! the policy's first scale-up of the campaign's target at or after the
//! campaign's first send (negative: it scaled only after the surge); its
//! *ready lead* is the surge minus the start of the first minute from the send
//! on in which its ready capacity covers the target's requests of the surge
//! minute.
//!
//! **What is not modelled:** queueing or retries (a request over capacity
//! counts as overloaded, nothing more), per-pod imbalance, the HPA's scale-up
//! rate limit, node provisioning, and requests that do not come from clicks
//! other than `baseline_rps`. The traffic of a click falls into the click's
//! minute.

pub mod capacity;
pub mod policy;
pub mod report;
pub mod sweep;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, PlannerConfig};
use crate::decode::RejectReason;
use crate::engine::model_file::{LearnedModel, ModelError};
use crate::engine::{Applied, Engine, EngineConfigError};
use crate::event::{Event, EventKind};
use crate::ingest::LinePosition;
use crate::replay::{replay_threads_into, LineError, ReplaySink};
use crate::signal::{ScaleReason, Signal};
use crate::time::rfc3339;

use capacity::{peak, per_minute_average, provision, Provisioned, Step, MIN};
use policy::{LoopParams, POLICIES};

/// Parameters of the capacity model and the baselines that are not in the
/// configuration (CLI flags of `floodgate backtest`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    /// Replica start-up delay: requested at t, serving from t + startup. Default 90 s.
    pub startup_ms: i64,
    /// Age of the freshest request-rate sample the reactive and trend policies
    /// see. Default 60 s.
    pub metrics_delay_ms: i64,
    /// Scale-down stabilisation window of the reactive and trend policies
    /// (HPA default 5 min).
    pub stabilisation_ms: i64,
    /// Decision period of the reactive and trend policies (HPA default 15 s).
    pub sync_ms: i64,
    /// Regression window of the trend policy. Default 10 min.
    pub trend_window_ms: i64,
    /// Utilisation the reactive and trend policies aim at; `None`: each
    /// target's [`policy::default_utilisation`].
    pub target_utilisation: Option<f64>,
    /// `--day`: model whole UTC days (from the midnight before the log's
    /// first event to the midnight after its last) instead of the log's span;
    /// the minutes outside the log carry `baseline_rps` only, and every
    /// policy keeps paying for what it runs there. Default false.
    pub day: bool,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            startup_ms: 90_000,
            metrics_delay_ms: 60_000,
            stabilisation_ms: 300_000,
            sync_ms: 15_000,
            trend_window_ms: 600_000,
            target_utilisation: None,
            day: false,
        }
    }
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The engine refused the configuration.
    #[error(transparent)]
    Engine(#[from] EngineConfigError),
    /// Nothing to backtest.
    #[error("the log has no click of a campaign with a known target (sends need `target`)")]
    NoTraffic,
    /// A model parameter is out of range.
    #[error("invalid backtest parameter: {0}")]
    Model(String),
    /// The log spans too long for a per-minute model.
    #[error("the log spans {0} days; backtest one mailing's log (at most 31 days)")]
    TooLong(i64),
    /// The learned model to start from does not fit the engine.
    #[error("loading the model: {0}")]
    LoadModel(#[from] ModelError),
}

/// A policy's numbers on one target.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PolicySummary {
    /// Policy name.
    pub policy: String,
    /// Target service.
    pub target: String,
    /// Requests in the log's time span (clicks × requests_per_click + baseline).
    pub requests: f64,
    /// Requests over capacity.
    pub overloaded_requests: f64,
    /// `overloaded_requests / requests`, in percent.
    pub overloaded_pct: f64,
    /// Minutes in which some requests were over capacity.
    pub minutes_overloaded: u32,
    /// Requested replicas integrated over time (cost), replica-minutes.
    pub replica_minutes: f64,
    /// Highest requested replica count.
    pub peak_replicas: u32,
    /// Number of scale-ups.
    pub scale_ups: u32,
}

/// One policy on one target: summary and time series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyRun {
    /// The numbers.
    pub summary: PolicySummary,
    /// Requested and ready replicas.
    pub provisioned: Provisioned,
    /// Capacity in requests per minute, per minute of the series.
    pub capacity_per_minute: Vec<f64>,
}

/// A `scale_ahead` as the floodgate policy applies it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleMark {
    /// When the signal's event time is (epoch ms).
    pub signal_ms: i64,
    /// When it could have been acted on (epoch ms).
    pub effective_ms: i64,
    /// Replicas asked for.
    pub desired_replicas: u32,
    /// `send` or `forecast`.
    pub reason: &'static str,
}

/// One target service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetRun {
    /// Target service.
    pub target: String,
    /// `planner.requests_per_click` for this target.
    pub requests_per_click: f64,
    /// `planner.capacity_per_replica` (requests/s).
    pub capacity_per_replica: f64,
    /// Utilisation the reactive baselines aim at.
    pub target_utilisation: f64,
    /// Campaigns sending to this target.
    pub campaigns: Vec<String>,
    /// Whether any of them went viral.
    pub has_viral: bool,
    /// Requests per minute, per minute from `Backtest::start_ms`.
    pub requests_per_minute: Vec<f64>,
    /// The policies, in [`POLICIES`] order.
    pub policies: Vec<PolicyRun>,
    /// floodgate's scale decisions for this target.
    pub scale_ahead: Vec<ScaleMark>,
}

/// A policy's lead before a viral campaign's surge.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lead {
    /// Policy.
    pub policy: String,
    /// First scale-up of the target at or after the send (epoch ms).
    pub first_scale_up_ms: Option<i64>,
    /// `surge − first_scale_up`, minutes.
    pub lead_min: Option<f64>,
    /// Start of the first minute (from the send on) whose ready capacity
    /// covers the target's requests in the surge minute (epoch ms).
    pub ready_ms: Option<i64>,
    /// `surge − ready`, minutes.
    pub ready_lead_min: Option<f64>,
}

/// A point of a campaign's R over time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RPoint {
    /// End of the estimation window (epoch ms).
    pub t_ms: i64,
    /// Posterior mean.
    pub mean: f64,
    /// 2.5 % quantile.
    pub lo: f64,
    /// 97.5 % quantile.
    pub hi: f64,
}

/// One campaign.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignRun {
    /// Campaign id.
    pub campaign: String,
    /// Target service, if known.
    pub target: Option<String>,
    /// First send (epoch ms).
    pub send_ms: Option<i64>,
    /// Clicks (deduplicated).
    pub clicks: u64,
    /// Peak clicks per minute of the direct (generation-0) wave.
    pub direct_peak_per_minute: u64,
    /// Peak clicks per minute, all generations.
    pub peak_per_minute: u64,
    /// First `viral_onset` (event time, epoch ms).
    pub viral_onset_ms: Option<i64>,
    /// Surge: first minute with ≥ 3× the direct wave's peak (epoch ms).
    pub surge_ms: Option<i64>,
    /// `surge − (viral_onset + allowed_lateness)`, minutes: how long before
    /// the surge the onset could have been known.
    pub onset_lead_min: Option<f64>,
    /// Per policy (viral campaigns with a surge only).
    pub leads: Vec<Lead>,
    /// The engine's R over time.
    pub r: Vec<RPoint>,
}

/// A policy's totals over the targets of viral campaigns.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ViralTotals {
    /// Policy.
    pub policy: String,
    /// Requests on those targets.
    pub requests: f64,
    /// Requests over capacity.
    pub overloaded_requests: f64,
    /// In percent.
    pub overloaded_pct: f64,
    /// Minutes overloaded (summed over targets).
    pub minutes_overloaded: u32,
    /// Replica-minutes (summed over targets).
    pub replica_minutes: f64,
    /// Highest peak over targets.
    pub peak_replicas: u32,
    /// Median lead of the first scale-up before the surge, minutes.
    pub median_lead_min: Option<f64>,
    /// Median ready lead, minutes.
    pub median_ready_lead_min: Option<f64>,
}

/// Input counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InputCounts {
    /// Non-empty lines.
    pub lines: u64,
    /// Lines rejected other than as `future` (malformed, invalid, too large; skipped).
    pub rejected: u64,
    /// Events repeated with the same campaign and id in the same bin (counted once).
    pub duplicates: u64,
    /// Clicks counted as traffic.
    pub clicks: u64,
    /// Clicks of campaigns without a known target (not counted as traffic).
    pub unattributed_clicks: u64,
    /// Events rejected as more than `estimator.max_future` ahead of the log
    /// (skipped; a jump the next event agrees with is kept).
    pub far_future: u64,
}

/// The whole backtest: what `--json` writes and the HTML report shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backtest {
    /// Model parameters used.
    pub model: Model,
    /// `estimator.allowed_lateness` (ms): how late forecast decisions are acted on.
    pub allowed_lateness_ms: i64,
    /// Start of the first minute (epoch ms).
    pub start_ms: i64,
    /// Same, RFC 3339.
    pub start: String,
    /// Minutes in the series.
    pub minutes: usize,
    /// Input counts.
    pub input: InputCounts,
    /// Targets, by name.
    pub targets: Vec<TargetRun>,
    /// Campaigns, by first send.
    pub campaigns: Vec<CampaignRun>,
    /// Totals per policy over targets that had a viral campaign.
    pub viral_totals: Vec<ViralTotals>,
    /// The cost–overload frontier (`--sweep` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<sweep::Sweep>,
}

impl Backtest {
    /// A policy's summary on a target.
    pub fn summary(&self, target: &str, policy: &str) -> Option<&PolicySummary> {
        let t = self.targets.iter().find(|t| t.target == target)?;
        t.policies.iter().map(|p| &p.summary).find(|s| s.policy == policy)
    }

    /// A policy's totals over the targets of viral campaigns.
    pub fn viral_total(&self, policy: &str) -> Option<&ViralTotals> {
        self.viral_totals.iter().find(|v| v.policy == policy)
    }
}

/// What the backtest keeps of its pass through the log.
#[derive(Default)]
struct Pass {
    /// Input counts (lines, rejections, duplicates).
    input: InputCounts,
    /// Each campaign's traffic, by campaign id.
    camps: BTreeMap<String, CampaignTraffic>,
    /// The engine's signals, in output order.
    signals: Vec<Signal>,
}

impl ReplaySink for Pass {
    fn signal(&mut self, signal: &Signal) -> io::Result<()> {
        self.signals.push(signal.clone());
        Ok(())
    }

    fn error(&mut self, error: &LineError) {
        if error.rejection.reason == RejectReason::Future {
            self.input.far_future += 1;
        } else {
            self.input.rejected += 1;
        }
    }

    fn applied(&mut self, _at: &LinePosition, ev: &Event<'_>, applied: Applied) {
        if applied == Applied::Duplicate {
            self.input.duplicates += 1;
            return;
        }
        let c = self.camps.entry(ev.campaign.to_string()).or_default();
        match ev.kind {
            EventKind::Send => {
                c.send_ms = Some(c.send_ms.map_or(ev.ts_ms, |s| s.min(ev.ts_ms)));
                if c.target.is_none() {
                    c.target = ev.target.as_ref().map(|t| t.to_string());
                }
            }
            EventKind::Click => {
                if c.target.is_none() {
                    c.target = ev.target.as_ref().map(|t| t.to_string());
                }
                c.clicks.push((ev.ts_ms, ev.generation));
            }
            EventKind::Forward => {}
        }
    }
}

/// One campaign's traffic.
#[derive(Clone, Debug, Default)]
struct CampaignTraffic {
    /// The first target named by a send or click of the campaign.
    target: Option<String>,
    /// Its first send (ms).
    send_ms: Option<i64>,
    /// Its clicks: time (ms) and generation.
    clicks: Vec<(i64, u32)>,
}

/// What the log and the engine say, whatever the capacity model: each
/// campaign's traffic and the engine's signals. Preparing is the expensive
/// part (a replay); [`evaluate`] turns it into a [`Backtest`] for one
/// [`Model`], so a sweep prepares once per engine configuration.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The configuration the engine ran with (capacity model per target).
    cfg: Arc<Config>,
    /// `estimator.allowed_lateness` (ms).
    lateness_ms: i64,
    /// Input counts of the traffic pass (attribution counted in [`evaluate`]).
    input: InputCounts,
    /// Traffic per campaign id.
    camps: BTreeMap<String, CampaignTraffic>,
    /// Earliest send or click (epoch ms).
    first_ms: i64,
    /// Latest send or click (epoch ms).
    last_ms: i64,
    /// floodgate's decisions per target, in signal order.
    scale: HashMap<String, Vec<ScaleMark>>,
    /// First `viral_onset` per campaign (event time).
    onsets: HashMap<String, i64>,
    /// The engine's R over time per campaign.
    r_series: HashMap<String, Vec<RPoint>>,
    /// What the engine had learned at the end of the replay.
    learned: LearnedModel,
}

impl Prepared {
    /// What the engine had learned at the end of the replay
    /// ([`Engine::learned_model`]).
    pub fn learned_model(&self) -> &LearnedModel {
        &self.learned
    }
}

/// One UTC day in milliseconds.
const DAY: i64 = 24 * 60 * MIN;

/// Runs the backtest on an NDJSON log.
pub fn backtest(log: &[u8], cfg: Arc<Config>, model: &Model) -> Result<Backtest, BacktestError> {
    Ok(backtest_from(log, cfg, model, None)?.0)
}

/// [`backtest`] with the engine starting from a learned model (`--model`),
/// and what it had learned at the end.
pub fn backtest_from(
    log: &[u8],
    cfg: Arc<Config>,
    model: &Model,
    start: Option<&LearnedModel>,
) -> Result<(Backtest, LearnedModel), BacktestError> {
    check_model(model)?;
    let prep = prepare_from(log, cfg, start)?;
    Ok((evaluate(&prep, model)?, prep.learned))
}

/// Rejects model parameters out of range.
fn check_model(model: &Model) -> Result<(), BacktestError> {
    if model.startup_ms < 0 || model.metrics_delay_ms < 0 || model.stabilisation_ms < 0 {
        return Err(BacktestError::Model("durations must not be negative".into()));
    }
    if model.sync_ms < 1000 {
        return Err(BacktestError::Model("--sync must be at least 1s".into()));
    }
    if model.trend_window_ms < 2 * MIN {
        return Err(BacktestError::Model("--trend-window must be at least 2m".into()));
    }
    if let Some(u) = model.target_utilisation {
        if !(u > 0.0 && u <= 1.0) {
            return Err(BacktestError::Model(format!("--target-utilisation {u} must be in (0, 1]")));
        }
    }
    Ok(())
}

/// Reads the log's traffic and replays it through the engine.
pub fn prepare(log: &[u8], cfg: Arc<Config>) -> Result<Prepared, BacktestError> {
    prepare_from(log, cfg, None)
}

/// [`prepare`] with the engine starting from a learned model (`--model`).
pub fn prepare_from(log: &[u8], cfg: Arc<Config>, start: Option<&LearnedModel>) -> Result<Prepared, BacktestError> {
    let mut engine = Engine::new(&*cfg)?.with_estimates(true);
    if let Some(m) = start {
        engine.load_model(m)?;
    }
    let lateness = cfg.estimator.allowed_lateness.ms();

    // 1. One pass through the ingest step: the engine's signals, and the
    // traffic it took.
    let mut pass = Pass::default();
    // Reading from a slice cannot fail, and neither does this sink. Lines
    // are decoded on every core, as `replay --threads` does (same output).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = replay_threads_into(log, &mut engine, &mut pass, threads).unwrap_or_default();
    let Pass { mut input, camps, signals } = pass;
    input.lines = report.lines;
    let times = camps.values().flat_map(|c| c.clicks.iter().map(|&(t, _)| t).chain(c.send_ms));
    let (Some(first), Some(last)) = (times.clone().min(), times.max()) else { return Err(BacktestError::NoTraffic) };
    if last - first >= 31 * DAY {
        return Err(BacktestError::TooLong((last - first) / DAY));
    }

    // 2. The engine's signals.
    let mut scale: HashMap<String, Vec<ScaleMark>> = HashMap::new();
    let mut onsets: HashMap<String, i64> = HashMap::new();
    let mut r_series: HashMap<String, Vec<RPoint>> = HashMap::new();
    for s in &signals {
        match s {
            Signal::ScaleAhead(a) => {
                let (reason, effective) = match a.reason {
                    ScaleReason::Send => ("send", a.time_ms),
                    ScaleReason::Forecast => ("forecast", a.time_ms + lateness),
                };
                scale.entry(a.target.to_string()).or_default().push(ScaleMark {
                    signal_ms: a.time_ms,
                    effective_ms: effective,
                    desired_replicas: a.desired_replicas,
                    reason,
                });
            }
            Signal::ViralOnset(e) => {
                onsets.entry(e.campaign.to_string()).or_insert(e.time_ms);
            }
            Signal::Estimate(e) => {
                r_series.entry(e.campaign.to_string()).or_default().push(RPoint { t_ms: e.time_ms, mean: e.r.mean, lo: e.r.lo, hi: e.r.hi })
            }
            Signal::ViralSubsided(_) => {}
        }
    }
    for marks in scale.values_mut() {
        marks.sort_by_key(|m| m.effective_ms);
    }
    let learned = engine.learned_model();
    Ok(Prepared { cfg, lateness_ms: lateness, input, camps, first_ms: first, last_ms: last, scale, onsets, r_series, learned })
}

/// The modelled minutes: `(start of the first, how many)`. The log's span,
/// or with `day` whole UTC days around it.
pub fn modelled_span(first_ms: i64, last_ms: i64, day: bool) -> (i64, usize) {
    let (t0, end) = if day {
        (first_ms.div_euclid(DAY) * DAY, (last_ms.div_euclid(DAY) + 1) * DAY)
    } else {
        (first_ms.div_euclid(MIN) * MIN, (last_ms.div_euclid(MIN) + 1) * MIN)
    };
    (t0, ((end - t0) / MIN) as usize)
}

/// Runs one policy's replica requests through the capacity model and sums
/// up its overload and cost on a target's requests (per minute from `t0_ms`).
pub fn run_policy(
    policy: &str,
    target: &str,
    requests: &[f64],
    pc: &PlannerConfig,
    decisions: Vec<Step>,
    t0_ms: i64,
    startup_ms: i64,
) -> PolicyRun {
    let minutes = requests.len();
    // Decisions after the modelled minutes change nothing measured.
    let end = t0_ms + minutes as i64 * MIN;
    let decisions: Vec<_> = decisions.into_iter().filter(|d| d.t_ms < end).collect();
    let prov = provision(t0_ms, pc.min_replicas, &decisions, startup_ms);
    let ready = per_minute_average(&prov.ready, t0_ms, minutes);
    let requested = per_minute_average(&prov.requested, t0_ms, minutes);
    let capacity: Vec<f64> = ready.iter().map(|r| r * pc.capacity_per_replica * 60.0).collect();
    let mut s = PolicySummary { policy: policy.to_string(), target: target.to_string(), ..Default::default() };
    for (m, &r) in requests.iter().enumerate() {
        let over = (r - capacity[m]).max(0.0);
        s.requests += r;
        s.overloaded_requests += over;
        s.minutes_overloaded += u32::from(over > 1e-9);
    }
    s.overloaded_pct = if s.requests > 0.0 { 100.0 * s.overloaded_requests / s.requests } else { 0.0 };
    s.replica_minutes = requested.iter().sum();
    s.peak_replicas = peak(&prov.requested, t0_ms, end);
    s.scale_ups = prov.requested.windows(2).filter(|w| w[1].replicas > w[0].replicas).count() as u32;
    PolicyRun { summary: s, provisioned: prov, capacity_per_minute: capacity }
}

/// Evaluates a prepared log under one capacity model.
pub fn evaluate(prep: &Prepared, model: &Model) -> Result<Backtest, BacktestError> {
    check_model(model)?;
    let cfg = &prep.cfg;
    let lateness = prep.lateness_ms;
    let camps = &prep.camps;
    let onsets = &prep.onsets;
    let mut input = prep.input.clone();
    let (t0, minutes) = modelled_span(prep.first_ms, prep.last_ms, model.day);
    let minute_of = |t: i64| ((t - t0).div_euclid(MIN)) as usize;

    // 3. Per target: requests, policies, capacity.
    let mut by_target: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, c) in camps {
        match &c.target {
            Some(t) if !c.clicks.is_empty() || c.send_ms.is_some() => by_target.entry(t.clone()).or_default().push(name),
            Some(_) => {}
            None => input.unattributed_clicks += c.clicks.len() as u64,
        }
        if c.target.is_some() {
            input.clicks += c.clicks.len() as u64;
        }
    }
    let mut targets = Vec::new();
    for (target, members) in &by_target {
        let pc = cfg.planner_for(target);
        let util = model.target_utilisation.unwrap_or_else(|| policy::default_utilisation(&pc));
        let mut req = vec![pc.baseline_rps * 60.0; minutes];
        for name in members {
            for &(t, _) in &camps[*name].clicks {
                req[minute_of(t)] += pc.requests_per_click;
            }
        }
        let params = LoopParams {
            t0_ms: t0,
            sync_ms: model.sync_ms,
            metrics_delay_ms: model.metrics_delay_ms,
            stabilisation_ms: model.stabilisation_ms,
            target_utilisation: util,
            trend_window_ms: model.trend_window_ms,
            lookahead_ms: model.startup_ms,
        };
        let marks = prep.scale.get(target).cloned().unwrap_or_default();
        let fg: Vec<(i64, u32)> = marks.iter().map(|m| (m.effective_ms, m.desired_replicas)).collect();
        let mut runs = Vec::new();
        for policy in POLICIES {
            let decisions = match policy {
                "reactive" => policy::reactive(&req, &pc, &params),
                "trend" => policy::trend(&req, &pc, &params),
                _ => policy::floodgate(&fg),
            };
            runs.push(run_policy(policy, target, &req, &pc, decisions, t0, model.startup_ms));
        }
        targets.push(TargetRun {
            target: target.clone(),
            requests_per_click: pc.requests_per_click,
            capacity_per_replica: pc.capacity_per_replica,
            target_utilisation: util,
            campaigns: members.iter().map(|s| s.to_string()).collect(),
            has_viral: members.iter().any(|m| onsets.contains_key(*m)),
            requests_per_minute: req,
            policies: runs,
            scale_ahead: marks,
        });
    }

    // 4. Campaigns: surge and leads.
    let mut campaigns = Vec::new();
    for (name, c) in camps {
        if c.clicks.is_empty() && c.send_ms.is_none() {
            continue;
        }
        let mut all = vec![0u64; minutes];
        let mut direct = vec![0u64; minutes];
        for &(t, g) in &c.clicks {
            all[minute_of(t)] += 1;
            if g == 0 {
                direct[minute_of(t)] += 1;
            }
        }
        let direct_peak = direct.iter().copied().max().unwrap_or(0);
        let onset = onsets.get(name).copied();
        let surge_m = if direct_peak > 0 { all.iter().position(|&n| n >= 3 * direct_peak) } else { None };
        let surge = surge_m.map(|m| t0 + m as i64 * MIN);
        let mut leads = Vec::new();
        if let (Some(_), Some(sm), Some(target)) = (onset, surge_m, c.target.as_ref()) {
            let surge_ms = t0 + sm as i64 * MIN;
            let from = c.send_ms.unwrap_or(t0);
            if let Some(t) = targets.iter().find(|t| &t.target == target) {
                for run in &t.policies {
                    let up = run
                        .provisioned
                        .requested
                        .windows(2)
                        .find(|w| w[1].replicas > w[0].replicas && w[1].t_ms >= from)
                        .map(|w| w[1].t_ms);
                    let need = t.requests_per_minute[sm];
                    let from_m = minute_of(from.max(t0));
                    let ready_m = (from_m..minutes).find(|&m| run.capacity_per_minute[m] + 1e-9 >= need);
                    let ready = ready_m.map(|m| t0 + m as i64 * MIN);
                    leads.push(Lead {
                        policy: run.summary.policy.clone(),
                        first_scale_up_ms: up,
                        lead_min: up.map(|u| (surge_ms - u) as f64 / MIN as f64),
                        ready_ms: ready,
                        ready_lead_min: ready.map(|r| (surge_ms - r) as f64 / MIN as f64),
                    });
                }
            }
        }
        campaigns.push(CampaignRun {
            campaign: name.clone(),
            target: c.target.clone(),
            send_ms: c.send_ms,
            clicks: c.clicks.len() as u64,
            direct_peak_per_minute: direct_peak,
            peak_per_minute: all.iter().copied().max().unwrap_or(0),
            viral_onset_ms: onset,
            surge_ms: surge,
            onset_lead_min: match (onset, surge) {
                (Some(o), Some(s)) => Some((s - o - lateness) as f64 / MIN as f64),
                _ => None,
            },
            leads,
            r: prep.r_series.get(name).cloned().unwrap_or_default(),
        });
    }
    campaigns.sort_by(|a, b| a.send_ms.cmp(&b.send_ms).then(a.campaign.cmp(&b.campaign)));

    // 5. Totals over targets of viral campaigns.
    let mut viral_totals = Vec::new();
    for policy in POLICIES {
        let mut v = ViralTotals { policy: policy.to_string(), ..Default::default() };
        for t in targets.iter().filter(|t| t.has_viral) {
            let Some(s) = t.policies.iter().map(|p| &p.summary).find(|s| s.policy == policy) else { continue };
            v.requests += s.requests;
            v.overloaded_requests += s.overloaded_requests;
            v.minutes_overloaded += s.minutes_overloaded;
            v.replica_minutes += s.replica_minutes;
            v.peak_replicas = v.peak_replicas.max(s.peak_replicas);
        }
        v.overloaded_pct = if v.requests > 0.0 { 100.0 * v.overloaded_requests / v.requests } else { 0.0 };
        let leads: Vec<&Lead> = campaigns.iter().flat_map(|c| &c.leads).filter(|l| l.policy == policy).collect();
        v.median_lead_min = median(leads.iter().filter_map(|l| l.lead_min));
        v.median_ready_lead_min = median(leads.iter().filter_map(|l| l.ready_lead_min));
        viral_totals.push(v);
    }

    Ok(Backtest {
        model: model.clone(),
        allowed_lateness_ms: lateness,
        start_ms: t0,
        start: rfc3339(t0),
        minutes,
        input,
        targets,
        campaigns,
        viral_totals,
        sweep: None,
    })
}

fn median(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = xs.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// The summary as an aligned text table (what the CLI prints).
pub fn text_table(b: &Backtest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<10} {:>12} {:>12} {:>8} {:>8} {:>10} {:>6}",
        "target", "policy", "requests", "overloaded", "%", "min", "replica-m", "peak"
    );
    for t in &b.targets {
        for p in &t.policies {
            let x = &p.summary;
            let _ = writeln!(
                s,
                "{:<16} {:<10} {:>12.0} {:>12.0} {:>7.2}% {:>8} {:>10.0} {:>6}",
                x.target,
                x.policy,
                x.requests,
                x.overloaded_requests,
                x.overloaded_pct,
                x.minutes_overloaded,
                x.replica_minutes,
                x.peak_replicas
            );
        }
    }
    let viral: Vec<&CampaignRun> = b.campaigns.iter().filter(|c| c.viral_onset_ms.is_some()).collect();
    if !viral.is_empty() {
        let _ = writeln!(s, "\nviral campaigns: lead of the first scale-up (ready capacity) before the surge, minutes");
        let _ = write!(s, "{:<20} {:<12} {:>6} {:>8}", "campaign", "target", "surge", "onset");
        for p in POLICIES {
            let _ = write!(s, " {:>16}", p);
        }
        let _ = writeln!(s);
        for c in viral {
            let surge = c.surge_ms.map_or("-".to_string(), |t| rfc3339(t)[11..16].to_string());
            let onset = c.onset_lead_min.map_or("-".to_string(), |l| format!("{l:.0}"));
            let _ = write!(s, "{:<20} {:<12} {:>6} {:>8}", c.campaign, c.target.as_deref().unwrap_or("-"), surge, onset);
            for p in POLICIES {
                let cell = c
                    .leads
                    .iter()
                    .find(|l| l.policy == p)
                    .map_or("-".to_string(), |l| format!("{} ({})", fmt_opt(l.lead_min), fmt_opt(l.ready_lead_min)));
                let _ = write!(s, " {:>16}", cell);
            }
            let _ = writeln!(s);
        }
    }
    s
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One send and no click: the requests are the baseline alone.
    const SEND: &str = r#"{"type":"send","campaign":"c","ts":"2026-03-02T08:00:10Z","recipients":1000,"target":"web","id":"s"}"#;

    #[test]
    fn a_day_of_constant_baseline_costs_what_it_needs_around_the_clock() {
        // 120 requests/s at 50 per replica: 2.4 → 3 replicas (reactive at
        // utilisation 0.8 wants 120 / 40 = 3 as well); min_replicas 2.
        let cfg = Arc::new(
            Config::from_toml("[planner]\nbaseline_rps = 120.0\ncapacity_per_replica = 50.0\nmin_replicas = 2\n").expect("config"),
        );
        let model = Model { target_utilisation: Some(0.8), ..Model::default() };
        let prep = prepare(SEND.as_bytes(), cfg).expect("prepare");

        let span = evaluate(&prep, &model).expect("log span");
        assert_eq!(span.minutes, 1, "the log is one minute long");
        let day = evaluate(&prep, &Model { day: true, ..model }).expect("day");
        assert_eq!(day.start, "2026-03-02T00:00:00Z");
        assert_eq!(day.minutes, 1440);
        let t = &day.targets[0];
        assert!(t.requests_per_minute.iter().all(|&r| r == 7200.0));
        let pc = prep.cfg.planner_for("web");
        let oracle = run_policy(
            "oracle",
            "web",
            &t.requests_per_minute,
            &pc,
            policy::oracle(&t.requests_per_minute, &pc, day.start_ms, 90_000),
            day.start_ms,
            90_000,
        );
        for s in [day.summary("web", "reactive").expect("reactive"), &oracle.summary] {
            // Both ask for 3 at midnight: 3 × 1440 replica-minutes. The third
            // replica is ready at 00:01:30, so minute 0 serves 2 × 3000 of
            // its 7200 requests; minute 1 averages 2.5 replicas = 7500.
            assert_eq!(s.requests, 7200.0 * 1440.0, "{s:?}");
            assert!((s.replica_minutes - 3.0 * 1440.0).abs() < 1e-6, "{s:?}");
            assert!((s.overloaded_requests - 1200.0).abs() < 1e-6, "{s:?}");
            assert_eq!(s.minutes_overloaded, 1, "{s:?}");
        }
        // Over the log's span alone the same policy costs 3 replica-minutes.
        let r = span.summary("web", "reactive").expect("reactive");
        assert!((r.replica_minutes - 3.0).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn modelled_span_is_the_log_or_whole_days() {
        let first = 1_772_438_410_000; // 2026-03-02T08:00:10Z
        assert_eq!(modelled_span(first, first + 5 * MIN, false), (first - 10_000, 6));
        assert_eq!(modelled_span(first, first + 5 * MIN, true), (first - 10_000 - 8 * 60 * MIN, 1440));
        // A log across midnight: two days.
        assert_eq!(modelled_span(first, first + 20 * 60 * MIN, true).1, 2880);
    }
}

//! `floodgate backtest --sweep`: the cost–overload frontier.
//!
//! For each replica start-up delay in [`STARTUPS_MS`], every policy runs at
//! several settings on the same log and capacity model, and each setting is
//! reduced to two numbers over all targets together: the share of requests
//! over capacity and the replica-minutes paid.
//!
//! ```text
//! reactive   target utilisation 0.5 … 0.9          (REACTIVE_UTILISATIONS)
//! trend      target utilisation 0.6, 0.7, 0.8      (TREND_UTILISATIONS)
//! floodgate  the configuration as given, a grid of forecast.r_quantile ×
//!            planner.quantile × fixed planner.headroom (+ cooldowns), and
//!            the learned headroom at several planner.target_overload, the
//!            engine re-run per setting and start-up, with planner.startup
//!            set to the start-up delay modelled     (floodgate_grid)
//! oracle     perfect foresight (policy::oracle): the yardstick
//! ```
//!
//! A setting is *on its policy's frontier* when no other setting of the same
//! policy is at most as overloaded and at most as costly, and better in one.
//! Every other parameter (metrics delay, sync, stabilisation, trend window,
//! `--day`) is the one of the [`Model`] given.

use std::sync::Arc;

use serde::Serialize;

use super::policy::{oracle, FLOODGATE, REACTIVE, TREND};
use super::{evaluate, prepare_from, run_policy, Backtest, BacktestError, Model, Prepared};
use crate::config::{Config, Duration};
use crate::engine::model_file::LearnedModel;
use crate::time::format_duration_ms;

/// Replica start-up delays of a sweep: 30 s, 90 s, 5 min, 10 min.
pub const STARTUPS_MS: [i64; 4] = [30_000, 90_000, 300_000, 600_000];
/// Target utilisations of the reactive policy in a sweep.
pub const REACTIVE_UTILISATIONS: [f64; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];
/// Target utilisations of the trend policy in a sweep.
pub const TREND_UTILISATIONS: [f64; 3] = [0.6, 0.7, 0.8];
/// The overload (percent of requests) a setting may leave and still count as
/// "safe" in the summary lines (issue 17's bar).
pub const SAFE_OVERLOAD_PCT: f64 = 0.1;
/// `planner.target_overload` of the learned-headroom settings of a sweep.
pub const TARGET_OVERLOADS: [f64; 4] = [0.0003, 0.001, 0.003, 0.01];
/// Name of the oracle in sweep points.
pub const ORACLE: &str = "oracle";

/// The floodgate knobs a sweep varies (`forecast.horizon`,
/// `forecast.r_quantile`, `planner.quantile`, `planner.headroom`,
/// `planner.learn_headroom`, `planner.target_overload`, `planner.cooldown`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FloodgateKnobs {
    /// `forecast.horizon` (ms).
    pub horizon_ms: i64,
    /// `forecast.r_quantile`.
    pub r_quantile: f64,
    /// `planner.quantile` (also set on every `[targets.*]` that overrides it).
    pub quantile: f64,
    /// `planner.headroom` (also set on every `[targets.*]` that overrides it).
    pub headroom: f64,
    /// `planner.learn_headroom` (also set on every `[targets.*]` that overrides it).
    pub learn_headroom: bool,
    /// `planner.target_overload` (also set on every `[targets.*]` that overrides it).
    pub target_overload: f64,
    /// `planner.cooldown` (ms; also set on every `[targets.*]` that overrides it).
    pub cooldown_ms: i64,
}

impl FloodgateKnobs {
    /// The knobs of a configuration (`[planner]` level).
    pub fn of(cfg: &Config) -> Self {
        FloodgateKnobs {
            horizon_ms: cfg.forecast.horizon.ms(),
            r_quantile: cfg.forecast.r_quantile,
            quantile: cfg.planner.quantile,
            headroom: cfg.planner.headroom,
            learn_headroom: cfg.planner.learn_headroom,
            target_overload: cfg.planner.target_overload,
            cooldown_ms: cfg.planner.cooldown.ms(),
        }
    }

    /// `cfg` with these knobs.
    pub fn apply(&self, cfg: &Config) -> Config {
        let mut c = cfg.clone();
        c.forecast.horizon = Duration(self.horizon_ms);
        c.forecast.r_quantile = self.r_quantile;
        c.planner.quantile = self.quantile;
        c.planner.headroom = self.headroom;
        c.planner.learn_headroom = self.learn_headroom;
        c.planner.target_overload = self.target_overload;
        c.planner.cooldown = Duration(self.cooldown_ms);
        for t in c.targets.values_mut() {
            if t.quantile.is_some() {
                t.quantile = Some(self.quantile);
            }
            if t.headroom.is_some() {
                t.headroom = Some(self.headroom);
            }
            if t.learn_headroom.is_some() {
                t.learn_headroom = Some(self.learn_headroom);
            }
            if t.target_overload.is_some() {
                t.target_overload = Some(self.target_overload);
            }
            if t.cooldown.is_some() {
                t.cooldown = Some(Duration(self.cooldown_ms));
            }
        }
        c
    }

    /// `horizon 30m, r_quantile 0.75, quantile 0.9, headroom 0.25, cooldown
    /// 10m` (a fixed headroom) or `…, headroom learned from 0.1 for 0.1 %
    /// overload, …`.
    pub fn label(&self) -> String {
        let headroom = if self.learn_headroom {
            format!("headroom learned from {} for {} % overload", self.headroom, self.target_overload * 100.0)
        } else {
            format!("headroom {}", self.headroom)
        };
        format!(
            "horizon {}, r_quantile {}, quantile {}, {headroom}, cooldown {}",
            format_duration_ms(self.horizon_ms),
            self.r_quantile,
            self.quantile,
            format_duration_ms(self.cooldown_ms)
        )
    }
}

/// floodgate's settings in a sweep: the configured knobs first, then
/// `forecast.r_quantile` ∈ {0.5, 0.75} × `planner.quantile` ∈ {0.5, 0.9,
/// 0.99} × a fixed `planner.headroom` ∈ {0, 0.1} at the configured horizon
/// and cooldown, the configured knobs with the headroom learned for
/// `planner.target_overload` ∈ [`TARGET_OVERLOADS`], and the configured
/// knobs with a cooldown of 2 and of 10 min (duplicates of the configured
/// setting left out). The horizon is not
/// varied: the time-phased plan reads the forecast only as far as each
/// target's lead time.
pub fn floodgate_grid(configured: FloodgateKnobs) -> Vec<FloodgateKnobs> {
    let mut out = vec![configured];
    for r_quantile in [0.5, 0.75] {
        for quantile in [0.5, 0.9, 0.99] {
            for headroom in [0.0, 0.1] {
                out.push(FloodgateKnobs { r_quantile, quantile, headroom, learn_headroom: false, ..configured });
            }
        }
    }
    for target_overload in TARGET_OVERLOADS {
        out.push(FloodgateKnobs { learn_headroom: true, target_overload, ..configured });
    }
    out.push(FloodgateKnobs { cooldown_ms: 120_000, ..configured });
    out.push(FloodgateKnobs { cooldown_ms: 600_000, ..configured });
    let mut unique: Vec<FloodgateKnobs> = Vec::new();
    for k in out {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    unique
}

/// `cfg` with `planner.startup` (and every `[targets.*]` override of it)
/// set to `startup_ms`.
pub fn with_startup(cfg: &Config, startup_ms: i64) -> Config {
    let mut c = cfg.clone();
    c.planner.startup = Duration(startup_ms);
    for t in c.targets.values_mut() {
        if t.startup.is_some() {
            t.startup = Some(Duration(startup_ms));
        }
    }
    c
}

/// One setting of one policy at one start-up delay, over all targets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    /// `reactive`, `trend`, `floodgate` or `oracle`.
    pub policy: String,
    /// The setting, for people (`utilisation 0.7`, the floodgate knobs, …).
    pub setting: String,
    /// Target utilisation (reactive, trend).
    pub target_utilisation: Option<f64>,
    /// The knobs (floodgate).
    pub floodgate: Option<FloodgateKnobs>,
    /// Whether this is floodgate with the configuration as given.
    pub configured: bool,
    /// Requests on all targets (clicks × requests_per_click + baseline).
    pub requests: f64,
    /// Requests over capacity.
    pub overloaded_requests: f64,
    /// `overloaded_requests / requests`, in percent.
    pub overloaded_pct: f64,
    /// Requested replicas integrated over the modelled minutes, all targets.
    pub replica_minutes: f64,
    /// `replica_minutes` / the oracle's.
    pub cost_vs_oracle: f64,
    /// No other setting of the same policy is at most as overloaded and at
    /// most as costly, and better in one.
    pub on_frontier: bool,
}

impl SweepPoint {
    /// Whether `self` is at most as overloaded and at most as costly as
    /// `other`, and better in one (comparisons to a millionth, relative).
    pub fn dominates(&self, other: &SweepPoint) -> bool {
        let le = |a: f64, b: f64| a <= b + 1e-6 * (1.0 + b.abs());
        let lt = |a: f64, b: f64| a < b - 1e-6 * (1.0 + b.abs());
        le(self.overloaded_requests, other.overloaded_requests)
            && le(self.replica_minutes, other.replica_minutes)
            && (lt(self.overloaded_requests, other.overloaded_requests) || lt(self.replica_minutes, other.replica_minutes))
    }
}

/// All settings at one start-up delay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StartupFrontier {
    /// Replica start-up delay (ms).
    pub startup_ms: i64,
    /// Perfect foresight: the cheapest plan that serves every request.
    pub oracle: SweepPoint,
    /// reactive, trend and floodgate settings, in that order.
    pub points: Vec<SweepPoint>,
    /// The cheapest reactive setting within [`SAFE_OVERLOAD_PCT`], if any
    /// (a choice only hindsight could make).
    pub cheapest_safe_reactive: Option<String>,
    /// The oracle's replica-minutes / that setting's.
    pub oracle_vs_cheapest_safe_reactive: Option<f64>,
    /// reactive and trend settings that dominate floodgate's configured one.
    pub configured_dominated_by: Vec<String>,
}

impl StartupFrontier {
    /// floodgate with the configuration as given.
    pub fn configured(&self) -> Option<&SweepPoint> {
        self.points.iter().find(|p| p.configured)
    }
}

/// The whole sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sweep {
    /// Whether the minutes are whole UTC days (`--day`).
    pub day: bool,
    /// The overload bar of the summary lines, percent.
    pub safe_overload_pct: f64,
    /// One frontier per start-up delay, in [`STARTUPS_MS`] order.
    pub startups: Vec<StartupFrontier>,
}

/// (requests, overloaded requests, replica-minutes) of a policy over all targets.
fn totals(b: &Backtest, policy: &str) -> (f64, f64, f64) {
    b.targets
        .iter()
        .flat_map(|t| &t.policies)
        .map(|p| &p.summary)
        .filter(|s| s.policy == policy)
        .fold((0.0, 0.0, 0.0), |acc, s| (acc.0 + s.requests, acc.1 + s.overloaded_requests, acc.2 + s.replica_minutes))
}

/// A sweep point from a policy's totals (oracle ratio and frontier filled in later).
fn point(policy: &str, setting: String, (requests, over, cost): (f64, f64, f64)) -> SweepPoint {
    SweepPoint {
        policy: policy.to_string(),
        setting,
        target_utilisation: None,
        floodgate: None,
        configured: false,
        requests,
        overloaded_requests: over,
        overloaded_pct: if requests > 0.0 { 100.0 * over / requests } else { 0.0 },
        replica_minutes: cost,
        cost_vs_oracle: f64::NAN,
        on_frontier: false,
    }
}

/// The oracle on every target of an evaluated backtest.
fn oracle_point(prep: &Prepared, b: &Backtest, startup_ms: i64) -> SweepPoint {
    let mut sum = (0.0, 0.0, 0.0);
    for t in &b.targets {
        let pc = prep.cfg.planner_for(&t.target);
        let steps = oracle(&t.requests_per_minute, &pc, b.start_ms, startup_ms);
        let s = run_policy(ORACLE, &t.target, &t.requests_per_minute, &pc, steps, b.start_ms, startup_ms).summary;
        sum = (sum.0 + s.requests, sum.1 + s.overloaded_requests, sum.2 + s.replica_minutes);
    }
    point(ORACLE, "perfect foresight".into(), sum)
}

/// Runs the sweep on a log: the model's parameters except start-up and
/// target utilisation, which the sweep varies.
pub fn sweep(log: &[u8], cfg: Arc<Config>, model: &Model) -> Result<Sweep, BacktestError> {
    sweep_from(log, cfg, model, None)
}

/// [`sweep`] with every engine replay starting from the same learned model
/// (`--model`).
pub fn sweep_from(log: &[u8], cfg: Arc<Config>, model: &Model, start: Option<&LearnedModel>) -> Result<Sweep, BacktestError> {
    let base = prepare_from(log, cfg.clone(), start)?;
    let at = |startup_ms: i64, target_utilisation: Option<f64>| Model { startup_ms, target_utilisation, ..model.clone() };
    let mut startups = Vec::new();
    for startup_ms in STARTUPS_MS {
        let mut points = Vec::new();
        let mut oracle = None;
        let mut trend_points = Vec::new();
        for u in REACTIVE_UTILISATIONS {
            let b = evaluate(&base, &at(startup_ms, Some(u)))?;
            if oracle.is_none() {
                oracle = Some(oracle_point(&base, &b, startup_ms));
            }
            points.push(SweepPoint { target_utilisation: Some(u), ..point(REACTIVE, format!("utilisation {u}"), totals(&b, REACTIVE)) });
            if TREND_UTILISATIONS.contains(&u) {
                trend_points
                    .push(SweepPoint { target_utilisation: Some(u), ..point(TREND, format!("utilisation {u}"), totals(&b, TREND)) });
            }
        }
        points.extend(trend_points);
        let Some(oracle) = oracle else { return Err(BacktestError::NoTraffic) };
        startups.push(StartupFrontier {
            startup_ms,
            oracle,
            points,
            cheapest_safe_reactive: None,
            oracle_vs_cheapest_safe_reactive: None,
            configured_dominated_by: Vec::new(),
        });
    }
    let configured = FloodgateKnobs::of(&cfg);
    for knobs in floodgate_grid(configured) {
        let with_knobs = knobs.apply(&cfg);
        for frontier in &mut startups {
            // A user whose replicas take this long to start says so
            // (`planner.startup`): the engine plans that far ahead.
            let prep = prepare_from(log, Arc::new(with_startup(&with_knobs, frontier.startup_ms)), start)?;
            let b = evaluate(&prep, &at(frontier.startup_ms, None))?;
            frontier.points.push(SweepPoint {
                floodgate: Some(knobs),
                configured: knobs == configured,
                ..point(FLOODGATE, knobs.label(), totals(&b, FLOODGATE))
            });
        }
    }
    for f in &mut startups {
        let oracle_cost = f.oracle.replica_minutes;
        f.oracle.cost_vs_oracle = 1.0;
        let all = f.points.clone();
        for p in &mut f.points {
            p.cost_vs_oracle = if oracle_cost > 0.0 { p.replica_minutes / oracle_cost } else { f64::NAN };
            p.on_frontier = !all.iter().any(|q| q.policy == p.policy && q.dominates(p));
        }
        let safe = f
            .points
            .iter()
            .filter(|p| p.policy == REACTIVE && p.overloaded_pct <= SAFE_OVERLOAD_PCT)
            .min_by(|a, b| a.replica_minutes.total_cmp(&b.replica_minutes));
        f.cheapest_safe_reactive = safe.map(|p| p.setting.clone());
        f.oracle_vs_cheapest_safe_reactive = safe.filter(|p| p.replica_minutes > 0.0).map(|p| oracle_cost / p.replica_minutes);
        if let Some(c) = f.configured().cloned() {
            f.configured_dominated_by = f
                .points
                .iter()
                .filter(|p| (p.policy == REACTIVE || p.policy == TREND) && p.dominates(&c))
                .map(|p| format!("{} {}", p.policy, p.setting))
                .collect();
        }
    }
    Ok(Sweep { day: model.day, safe_overload_pct: SAFE_OVERLOAD_PCT, startups })
}

/// The sweep as aligned text (what the CLI prints after the backtest table).
pub fn text_table(s: &Sweep) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "\ncost–overload frontier, all targets{}", if s.day { " (whole days, --day)" } else { "" });
    for f in &s.startups {
        let _ = writeln!(o, "\nstart-up {}", format_duration_ms(f.startup_ms));
        let _ = writeln!(o, "{:<10} {:<84} {:>9} {:>12} {:>9} {:>8}", "policy", "setting", "over %", "replica-m", "× oracle", "frontier");
        for p in std::iter::once(&f.oracle).chain(&f.points) {
            let _ = writeln!(
                o,
                "{:<10} {:<84} {:>8.3}% {:>12.0} {:>8.2}× {:>8}",
                p.policy,
                format!("{}{}", p.setting, if p.configured { " (configured)" } else { "" }),
                p.overloaded_pct,
                p.replica_minutes,
                p.cost_vs_oracle,
                if p.on_frontier { "yes" } else { "" }
            );
        }
        match (&f.cheapest_safe_reactive, f.oracle_vs_cheapest_safe_reactive) {
            (Some(name), Some(ratio)) => {
                let _ = writeln!(o, "cheapest reactive within {}% overload: {name}; oracle / it = {ratio:.2}", s.safe_overload_pct);
            }
            _ => {
                let _ = writeln!(o, "no reactive setting stays within {}% overload", s.safe_overload_pct);
            }
        }
        if let Some(c) = f.configured() {
            let _ = writeln!(
                o,
                "floodgate as configured: {:.3}% over capacity at {:.2}× the oracle; dominated by: {}",
                c.overloaded_pct,
                c.cost_vs_oracle,
                if f.configured_dominated_by.is_empty() { "none".to_string() } else { f.configured_dominated_by.join(", ") }
            );
        }
    }
    o
}

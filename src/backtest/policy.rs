//! The scaling policies compared by the backtest. Each turns what it could
//! have known at each instant into replica requests ([`Step`]s); the
//! capacity model ([`super::capacity`]) then decides what was ready.
//!
//! * **reactive** — the Kubernetes HPA algorithm on a request-rate metric.
//!   Every `sync` (15 s) it reads the request rate of the last complete
//!   minute that is at least `metrics_delay` old (what a metrics pipeline
//!   shows), and computes
//!   `desired = ceil(observed_rps / (capacity_per_replica × target_utilisation))`,
//!   skipping changes within the HPA's 10 % tolerance, clamped to
//!   `[min_replicas, max_replicas]`. Scale-up is immediate; scale-down uses
//!   the HPA's stabilisation window (the count applied is the highest
//!   recommendation of the last `stabilisation`). No scale-up rate limit is
//!   modelled (the HPA default allows doubling every 15 s).
//! * **trend** — the same loop on Prometheus' `predict_linear`: a
//!   least-squares line through the per-minute request rates of the last
//!   `trend_window` (each sample stamped at its minute's end, seen
//!   `metrics_delay` late), evaluated `startup` ahead of now; it scales for
//!   the larger of that prediction and the latest observed rate.
//! * **floodgate** — the engine's `floodgate.scale_ahead` decisions for the
//!   target (`desired_replicas`), from the moment each one would have been
//!   emitted: a send's at the send, a forecast's when the watermark makes its
//!   bin final (`time + estimator.allowed_lateness`).
//! * **oracle** (only in `backtest --sweep`) — perfect foresight: each
//!   minute exactly the replicas that minute's actual requests need
//!   ([`replicas_needed`], no headroom), each requested `startup` before the
//!   minute starts and released as soon as no minute within `startup` ahead
//!   needs it. No plan that holds one replica count per minute can serve
//!   every request for fewer replica-minutes (a replica has to be paid from
//!   its request `startup` ahead to the end of the last minute that needs
//!   it, and releasing it earlier only saves money if it is asked again at
//!   least `startup` later — which is what it does).

use std::collections::VecDeque;

use crate::config::PlannerConfig;

use super::capacity::{Step, MIN};

/// HPA tolerance: no change while observed / target utilisation is within 10 %.
pub const HPA_TOLERANCE: f64 = 0.1;

/// Name of the reactive (HPA) policy.
pub const REACTIVE: &str = "reactive";
/// Name of the trend (`predict_linear`) policy.
pub const TREND: &str = "trend";
/// Name of the floodgate policy.
pub const FLOODGATE: &str = "floodgate";

/// Utilisation the reactive and trend policies aim at when
/// `--target-utilisation` is not given, with a learned headroom: a careful
/// HPA's.
pub const DEFAULT_UTILISATION: f64 = 0.8;

/// The utilisation a reactive autoscaler of the target would aim at: that
/// of floodgate's own fixed headroom, `1 / (1 + planner.headroom)`, or
/// [`DEFAULT_UTILISATION`] when floodgate learns its headroom
/// (`planner.headroom` is then only where learning starts).
pub fn default_utilisation(cfg: &PlannerConfig) -> f64 {
    if cfg.learn_headroom {
        DEFAULT_UTILISATION
    } else {
        1.0 / (1.0 + cfg.headroom)
    }
}

/// The policies, in report order.
pub const POLICIES: [&str; 3] = [REACTIVE, TREND, FLOODGATE];

/// What the HPA-like policies need to know.
#[derive(Clone, Debug)]
pub struct LoopParams {
    /// Start of the first minute of the series (epoch ms).
    pub t0_ms: i64,
    /// Decision period (HPA `--horizontal-pod-autoscaler-sync-period`).
    pub sync_ms: i64,
    /// Age of the freshest metric sample.
    pub metrics_delay_ms: i64,
    /// Scale-down stabilisation window.
    pub stabilisation_ms: i64,
    /// Fraction of a replica's capacity the HPA targets.
    pub target_utilisation: f64,
    /// Trend: length of the regression window.
    pub trend_window_ms: i64,
    /// Trend: how far ahead `predict_linear` looks (the replica start-up delay).
    pub lookahead_ms: i64,
}

/// The HPA's replica recommendation loop (tolerance, stabilisation, bounds).
#[derive(Debug)]
struct Hpa<'a> {
    cfg: &'a PlannerConfig,
    per_replica_rps: f64,
    stabilisation_ms: i64,
    current: u32,
    recent: VecDeque<(i64, u32)>,
}

impl<'a> Hpa<'a> {
    fn new(cfg: &'a PlannerConfig, p: &LoopParams) -> Self {
        Hpa {
            cfg,
            per_replica_rps: cfg.capacity_per_replica * p.target_utilisation,
            stabilisation_ms: p.stabilisation_ms,
            current: cfg.min_replicas,
            recent: VecDeque::new(),
        }
    }

    /// One sync at `t_ms` with the metric `rps`; the new count if it changes.
    fn sync(&mut self, t_ms: i64, rps: f64) -> Option<u32> {
        let rps = rps.max(0.0);
        let ratio = rps / (f64::from(self.current.max(1)) * self.per_replica_rps);
        let raw = if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            self.current
        } else {
            let n = (rps / self.per_replica_rps).ceil();
            if n.is_finite() {
                n.min(f64::from(u32::MAX)) as u32
            } else {
                self.cfg.max_replicas
            }
        };
        let raw = raw.clamp(self.cfg.min_replicas, self.cfg.max_replicas);
        while self.recent.front().is_some_and(|&(t, _)| t <= t_ms - self.stabilisation_ms) {
            self.recent.pop_front();
        }
        while self.recent.back().is_some_and(|&(_, n)| n <= raw) {
            self.recent.pop_back();
        }
        self.recent.push_back((t_ms, raw));
        let applied = if raw >= self.current { raw } else { self.recent.front().map_or(raw, |&(_, n)| n).min(self.current) };
        if applied == self.current {
            return None;
        }
        self.current = applied;
        Some(applied)
    }
}

/// Index of the freshest complete minute visible at `t_ms`, if any.
fn visible_minute(p: &LoopParams, t_ms: i64) -> Option<usize> {
    let m = (t_ms - p.metrics_delay_ms - p.t0_ms).div_euclid(MIN) - 1;
    usize::try_from(m).ok()
}

fn decision_times(p: &LoopParams, minutes: usize) -> impl Iterator<Item = i64> {
    let (t0, end) = (p.t0_ms, p.t0_ms + minutes as i64 * MIN);
    let sync = p.sync_ms.max(1000);
    (0..).map(move |k| t0 + k * sync).take_while(move |&t| t < end)
}

/// The reactive (HPA) policy over `requests` (requests per minute, from `t0`).
pub fn reactive(requests: &[f64], cfg: &PlannerConfig, p: &LoopParams) -> Vec<Step> {
    let mut hpa = Hpa::new(cfg, p);
    let mut out = Vec::new();
    let idle_rps = cfg.baseline_rps;
    for t in decision_times(p, requests.len()) {
        let rps = visible_minute(p, t).and_then(|m| requests.get(m)).map_or(idle_rps, |r| r / 60.0);
        if let Some(n) = hpa.sync(t, rps) {
            out.push(Step { t_ms: t, replicas: n });
        }
    }
    out
}

/// `predict_linear` over the visible minutes ending at `last`, `lookahead`
/// after `t_ms`; at least the latest value.
pub fn predict_linear(requests: &[f64], p: &LoopParams, last: usize, t_ms: i64) -> f64 {
    let n = ((p.trend_window_ms / MIN).max(2) as usize).min(last + 1);
    let first = last + 1 - n;
    let latest = requests[last] / 60.0;
    if n < 2 {
        return latest;
    }
    // x in minutes relative to t (sample stamped at its minute's end).
    let xs: Vec<f64> = (first..=last).map(|m| ((p.t0_ms + (m as i64 + 1) * MIN) - t_ms) as f64 / MIN as f64).collect();
    let ys: Vec<f64> = (first..=last).map(|m| requests[m] / 60.0).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n as f64, ys.iter().sum::<f64>() / n as f64);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let at = p.lookahead_ms as f64 / MIN as f64;
    let predicted = my + slope * (at - mx);
    predicted.max(latest)
}

/// The trend (`predict_linear`) policy.
pub fn trend(requests: &[f64], cfg: &PlannerConfig, p: &LoopParams) -> Vec<Step> {
    let mut hpa = Hpa::new(cfg, p);
    let mut out = Vec::new();
    for t in decision_times(p, requests.len()) {
        let rps = match visible_minute(p, t).filter(|&m| m < requests.len()) {
            Some(m) => predict_linear(requests, p, m, t),
            None => cfg.baseline_rps,
        };
        if let Some(n) = hpa.sync(t, rps) {
            out.push(Step { t_ms: t, replicas: n });
        }
    }
    out
}

/// Replicas a minute of `requests_per_minute` requests needs at full
/// utilisation: `ceil(requests / (60 × capacity_per_replica))`, within
/// `[min_replicas, max_replicas]`.
pub fn replicas_needed(requests_per_minute: f64, cfg: &PlannerConfig) -> u32 {
    let n = (requests_per_minute.max(0.0) / (60.0 * cfg.capacity_per_replica) - 1e-9).ceil();
    let n = if n.is_finite() { n.clamp(0.0, f64::from(u32::MAX)) as u32 } else { cfg.max_replicas };
    n.clamp(cfg.min_replicas, cfg.max_replicas)
}

/// The oracle: perfect foresight of `requests` (per minute from `t0_ms`).
/// At every instant `t` it runs the most replicas any minute overlapping
/// `[t, t + startup]` needs, so each minute's replicas are ready when it
/// starts (a request before `t0_ms` is acted on at `t0_ms` by the capacity
/// model: the first minutes can only be served by the initial replicas).
pub fn oracle(requests: &[f64], cfg: &PlannerConfig, t0_ms: i64, startup_ms: i64) -> Vec<Step> {
    let need: Vec<u32> = requests.iter().map(|&r| replicas_needed(r, cfg)).collect();
    let Some(last) = need.len().checked_sub(1) else { return Vec::new() };
    let startup_ms = startup_ms.max(0);
    // The count can only change where a minute enters the window (startup
    // before it starts) or leaves it (when it ends).
    let mut times: Vec<i64> = (0..need.len() as i64).flat_map(|m| [t0_ms + m * MIN - startup_ms, t0_ms + (m + 1) * MIN]).collect();
    times.sort_unstable();
    times.dedup();
    let minute_at = |t: i64| (t - t0_ms).div_euclid(MIN).clamp(0, last as i64) as usize;
    let mut out: Vec<Step> = Vec::new();
    for t in times {
        if t >= t0_ms + need.len() as i64 * MIN {
            break;
        }
        let replicas = need[minute_at(t)..=minute_at(t + startup_ms)].iter().copied().max().unwrap_or(cfg.min_replicas);
        if out.last().is_none_or(|s| s.replicas != replicas) {
            out.push(Step { t_ms: t, replicas });
        }
    }
    out
}

/// The floodgate policy: the engine's decisions `(effective time, desired
/// replicas)`, in time order, as requests.
pub fn floodgate(decisions: &[(i64, u32)]) -> Vec<Step> {
    let mut out: Vec<Step> = decisions.iter().map(|&(t_ms, replicas)| Step { t_ms, replicas }).collect();
    out.sort_by_key(|s| s.t_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration;

    fn cfg() -> PlannerConfig {
        PlannerConfig {
            requests_per_click: 10.0,
            capacity_per_replica: 10.0,
            headroom: 0.25,
            learn_headroom: false,
            target_overload: 0.001,
            baseline_rps: 0.0,
            min_replicas: 1,
            max_replicas: 100,
            cooldown: Duration(600_000),
            startup: Duration(90_000),
            quantile: 0.9,
        }
    }

    fn params() -> LoopParams {
        LoopParams {
            t0_ms: 0,
            sync_ms: 15_000,
            metrics_delay_ms: 60_000,
            stabilisation_ms: 300_000,
            target_utilisation: 0.8,
            trend_window_ms: 600_000,
            lookahead_ms: 90_000,
        }
    }

    #[test]
    fn reactive_lags_by_the_metrics_delay_and_holds_during_stabilisation() {
        // 0 for 5 min, then 4 800 requests/min (80 rps → 10 replicas at 8 rps each), then 0.
        let mut req = vec![0.0; 5];
        req.extend(vec![4800.0; 5]);
        req.extend(vec![0.0; 15]);
        let d = reactive(&req, &cfg(), &params());
        // Minute 5 ends at 6m; visible 1 min later, at 7m.
        assert_eq!(d[0], Step { t_ms: 7 * MIN, replicas: 10 });
        // Load gone from minute 10 (visible at 12m); down only after 5 more minutes.
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[1].t_ms > 12 * MIN + 4 * MIN && d[1].t_ms <= 12 * MIN + 5 * MIN, "{d:?}");
        assert_eq!(d[1].replicas, 1);
    }

    #[test]
    fn oracle_asks_each_minute_exactly_what_it_needs_startup_ahead() {
        use crate::backtest::capacity::{per_minute_average, provision};
        // 10 rps per replica = 600 requests per replica-minute; min 1.
        // need:        1    1     3     3     1     1     2     1
        let req = [0.0, 600.0, 1300.0, 1800.0, 0.0, 500.0, 601.0, 0.0];
        let c = cfg();
        assert_eq!(req.iter().map(|&r| replicas_needed(r, &c)).collect::<Vec<_>>(), [1, 1, 3, 3, 1, 1, 2, 1]);
        let d = oracle(&req, &c, 0, 90_000);
        // 3 asked 90 s before minute 2, released when minute 3 ends; 2 asked
        // 90 s before minute 6, released when it ends.
        assert_eq!(
            d,
            vec![
                Step { t_ms: -90_000, replicas: 1 },
                Step { t_ms: 30_000, replicas: 3 },
                Step { t_ms: 4 * MIN, replicas: 1 },
                Step { t_ms: 4 * MIN + 30_000, replicas: 2 },
                Step { t_ms: 7 * MIN, replicas: 1 },
            ]
        );
        let p = provision(0, c.min_replicas, &d, 90_000);
        let ready = per_minute_average(&p.ready, 0, req.len());
        assert_eq!(ready, [1.0, 1.0, 3.0, 3.0, 1.0, 1.0, 2.0, 1.0], "ready exactly when needed");
        // Cost: 1 replica for 8 min, 2 more from 0:30 to 4:00, 1 more from 4:30 to 7:00.
        let cost: f64 = per_minute_average(&p.requested, 0, req.len()).iter().sum();
        assert!((cost - (8.0 + 2.0 * 3.5 + 1.0 * 2.5)).abs() < 1e-9, "{cost}");
        // A dip shorter than the start-up is held, not released and re-asked.
        let d = oracle(&[1800.0, 0.0, 1800.0], &c, 0, 90_000);
        assert_eq!(d, vec![Step { t_ms: -90_000, replicas: 3 }]);
    }

    #[test]
    fn trend_scales_before_reactive_on_a_ramp() {
        let req: Vec<f64> = (0..30).map(|m| 200.0 * m as f64).collect();
        let r = reactive(&req, &cfg(), &params());
        let t = trend(&req, &cfg(), &params());
        let reach = |d: &[Step], n: u32| d.iter().find(|s| s.replicas >= n).map(|s| s.t_ms);
        // Both must reach 8 replicas (an absent time would compare as "earlier").
        let (Some(trend_at), Some(reactive_at)) = (reach(&t, 8), reach(&r, 8)) else {
            panic!("both policies must reach 8 replicas on the ramp: trend {t:?} reactive {r:?}")
        };
        assert!(trend_at < reactive_at, "trend reaches 8 at {trend_at}, reactive at {reactive_at}");
    }
}

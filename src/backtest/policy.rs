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

use std::collections::VecDeque;

use crate::config::PlannerConfig;

use super::capacity::{Step, MIN};

/// HPA tolerance: no change while observed / target utilisation is within 10 %.
pub const HPA_TOLERANCE: f64 = 0.1;

/// The policies, in report order.
pub const POLICIES: [&str; 3] = ["reactive", "trend", "floodgate"];

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
            baseline_rps: 0.0,
            min_replicas: 1,
            max_replicas: 100,
            cooldown: Duration(600_000),
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
    fn trend_scales_before_reactive_on_a_ramp() {
        let req: Vec<f64> = (0..30).map(|m| 200.0 * m as f64).collect();
        let r = reactive(&req, &cfg(), &params());
        let t = trend(&req, &cfg(), &params());
        let reach = |d: &[Step], n: u32| d.iter().find(|s| s.replicas >= n).map(|s| s.t_ms);
        assert!(reach(&t, 8) < reach(&r, 8), "trend {t:?} reactive {r:?}");
    }
}

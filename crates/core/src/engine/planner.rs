//! Forecast → desired replicas for one target service.
//!
//! ```text
//! rps      = peak forecast clicks/s × requests_per_click + baseline_rps
//! desired  = clamp(ceil(rps × (1 + headroom) / capacity_per_replica), min_replicas, max_replicas)
//! ```
//!
//! Scaling up takes effect at once. Scaling down is *stabilised* the way the
//! Kubernetes HPA does it: the replica count applied is the maximum desired
//! over the last `cooldown`, so a forecast dip does not release capacity that
//! the next wave needs. Rises within [`TOLERANCE`] of the current count are
//! ignored. A `scale_ahead` signal is emitted only when the
//! applied count changes.

use std::collections::VecDeque;

use crate::config::PlannerConfig;

/// Rises of at most this fraction of the current count are not applied
/// (Kubernetes' HPA uses the same 10 % default tolerance).
pub const TOLERANCE: f64 = 0.1;

/// Replicas needed for `rps` under `cfg`, before stabilisation.
pub fn replicas_for(cfg: &PlannerConfig, rps: f64) -> u32 {
    let need = (rps.max(0.0) * (1.0 + cfg.headroom) / cfg.capacity_per_replica).ceil();
    let need = if need.is_finite() { need.min(f64::from(u32::MAX)) as u32 } else { cfg.max_replicas };
    need.clamp(cfg.min_replicas, cfg.max_replicas)
}

/// Stabilised replica count of one target.
#[derive(Clone, Debug)]
pub struct Planner {
    cfg: PlannerConfig,
    current: u32,
    recent: VecDeque<(i64, u32)>,
}

/// A change of the applied replica count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// Before.
    pub previous: u32,
    /// After.
    pub desired: u32,
}

impl Planner {
    /// A planner starting at `min_replicas`.
    pub fn new(cfg: PlannerConfig) -> Self {
        let current = cfg.min_replicas;
        Planner { cfg, current, recent: VecDeque::new() }
    }

    /// The capacity model.
    pub fn config(&self) -> &PlannerConfig {
        &self.cfg
    }

    /// Replicas currently applied.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// Feeds the forecast peak requests/s at event time `now_ms` (including
    /// the baseline). Returns the change, if the applied count moves.
    pub fn plan(&mut self, now_ms: i64, rps: f64) -> Option<Change> {
        let want = replicas_for(&self.cfg, rps);
        let horizon = now_ms - self.cfg.cooldown.ms();
        while self.recent.front().is_some_and(|&(t, _)| t <= horizon) {
            self.recent.pop_front();
        }
        // Keep the deque monotone (decreasing counts): older, smaller entries
        // can never be the maximum again.
        while self.recent.back().is_some_and(|&(_, n)| n <= want) {
            self.recent.pop_back();
        }
        self.recent.push_back((now_ms, want));
        let applied = if want >= self.current {
            // Like the HPA's tolerance: ignore rises within 10 % of the
            // current count, so a growing wave does not emit a signal per bin.
            if f64::from(want - self.current) <= TOLERANCE * f64::from(self.current) {
                self.current
            } else {
                want
            }
        } else {
            // Scale down only to the maximum desired over the cooldown.
            self.recent.front().map_or(want, |&(_, n)| n)
        };
        if applied == self.current {
            return None;
        }
        let change = Change { previous: self.current, desired: applied };
        self.current = applied;
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration;

    fn cfg() -> PlannerConfig {
        PlannerConfig {
            requests_per_click: 10.0,
            capacity_per_replica: 50.0,
            headroom: 0.25,
            baseline_rps: 0.0,
            min_replicas: 2,
            max_replicas: 20,
            cooldown: Duration(600_000),
        }
    }

    #[test]
    fn replica_arithmetic() {
        // 100 rps × 1.25 / 50 = 2.5 → 3.
        assert_eq!(replicas_for(&cfg(), 100.0), 3);
        assert_eq!(replicas_for(&cfg(), 0.0), 2, "min");
        assert_eq!(replicas_for(&cfg(), 1e9), 20, "max");
        assert_eq!(replicas_for(&cfg(), f64::INFINITY), 20);
    }

    #[test]
    fn up_at_once_down_after_cooldown() {
        let mut p = Planner::new(cfg());
        assert_eq!(p.plan(0, 400.0), Some(Change { previous: 2, desired: 10 }));
        assert_eq!(p.plan(60_000, 100.0), None, "held by cooldown");
        assert_eq!(p.plan(300_000, 100.0), None);
        assert_eq!(p.plan(600_001, 100.0), Some(Change { previous: 10, desired: 3 }));
        assert_eq!(p.plan(660_000, 480.0), Some(Change { previous: 3, desired: 12 }));
        // 12 → 13 is within the 10 % tolerance; 12 → 14 is not.
        assert_eq!(p.plan(720_000, 500.0), None);
        assert_eq!(p.plan(780_000, 540.0), Some(Change { previous: 12, desired: 14 }));
    }
}

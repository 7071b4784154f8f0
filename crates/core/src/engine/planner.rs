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
//!
//! A [`TargetPlanner`] is the planner of one target service together with
//! what it plans from: the latest [`DemandRecord`] of each campaign of the
//! target. The per-campaign work (windows, estimators, detector, the
//! campaign's forecast) hands it records; it never looks into a campaign, so
//! its input can come from campaign shards on other threads, or from other
//! processes (a record is plain, serializable data).

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::config::PlannerConfig;
use crate::signal::{CampaignDemand, ScaleAhead, ScaleReason, Signal};

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

/// One campaign's demand on its target, as the campaign's forecast left it:
/// the planner's whole input about that campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandRecord {
    /// The campaign.
    pub campaign: Arc<str>,
    /// Event time of the forecast (ms): the end of a bin step, or a send.
    pub time_ms: i64,
    /// Its forecast peak requests/s within the horizon (peak clicks/s ×
    /// the target's `requests_per_click`), baseline not included.
    pub forecast_rps: f64,
    /// Posterior mean of its R, if estimated (shown in `scale_ahead`).
    pub r_mean: Option<f64>,
}

/// The latest demand of one campaign of the target.
#[derive(Clone, Debug)]
struct Member {
    /// The campaign.
    campaign: Arc<str>,
    /// Its forecast peak requests/s.
    forecast_rps: f64,
    /// Posterior mean of its R, if estimated.
    r_mean: Option<f64>,
}

/// At most this many campaigns are listed in a `scale_ahead`, largest first.
pub const LISTED_CAMPAIGNS: usize = 5;

/// The planner of one target service and the latest demand of each of its
/// campaigns.
#[derive(Clone, Debug)]
pub struct TargetPlanner {
    /// Target service.
    name: Arc<str>,
    /// Its stabilised replica count.
    planner: Planner,
    /// Its campaigns, in the order they first named the target (the sum of
    /// their demands is taken in this order, so it does not depend on where
    /// the records came from).
    members: Vec<Member>,
    /// Index of each campaign in `members`.
    position: HashMap<Arc<str>, usize, foldhash::fast::FixedState>,
    /// Forecast peak requests/s of the last plan (baseline included).
    forecast_rps: f64,
}

impl TargetPlanner {
    /// A target with no campaign yet, at `cfg.min_replicas`.
    pub fn new(name: Arc<str>, cfg: PlannerConfig) -> TargetPlanner {
        TargetPlanner {
            name,
            planner: Planner::new(cfg),
            members: Vec::new(),
            position: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(3)),
            forecast_rps: 0.0,
        }
    }

    /// Target service.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The capacity model.
    pub fn config(&self) -> &PlannerConfig {
        self.planner.config()
    }

    /// Replicas currently applied.
    pub fn current(&self) -> u32 {
        self.planner.current()
    }

    /// Forecast peak requests/s of the last plan (baseline included).
    pub fn forecast_rps(&self) -> f64 {
        self.forecast_rps
    }

    /// A campaign's latest demand. The first record of a campaign makes it a
    /// member of the target.
    pub fn record(&mut self, r: DemandRecord) {
        match self.position.get(&*r.campaign) {
            Some(&i) => {
                let m = &mut self.members[i];
                m.forecast_rps = r.forecast_rps;
                m.r_mean = r.r_mean;
            }
            None => {
                self.position.insert(r.campaign.clone(), self.members.len());
                self.members.push(Member { campaign: r.campaign, forecast_rps: r.forecast_rps, r_mean: r.r_mean });
            }
        }
    }

    /// The campaign is gone (evicted): its demand no longer counts.
    pub fn remove(&mut self, campaign: &str) {
        if self.position.remove(campaign).is_some() {
            self.members.retain(|m| &*m.campaign != campaign);
            for (i, m) in self.members.iter().enumerate() {
                self.position.insert(m.campaign.clone(), i);
            }
        }
    }

    /// Plans at event time `time_ms` from the campaigns' latest demand. A
    /// forecast step emits `scale_ahead` only when the applied replica count
    /// changes; a send always emits one (the plan made at send time, before
    /// the first click), even if the count stays.
    pub fn plan(&mut self, time_ms: i64, reason: ScaleReason, horizon_s: f64, out: &mut Vec<Signal>) {
        let campaign_rps: f64 = self.members.iter().map(|m| m.forecast_rps).sum();
        let rps = campaign_rps + self.planner.config().baseline_rps;
        self.forecast_rps = rps;
        let change = match (self.planner.plan(time_ms, rps), reason) {
            (Some(change), _) => change,
            (None, ScaleReason::Send) => {
                let n = self.planner.current();
                Change { previous: n, desired: n }
            }
            (None, ScaleReason::Forecast) => return,
        };
        let mut campaigns: Vec<CampaignDemand> = self
            .members
            .iter()
            .filter(|m| m.forecast_rps > 0.0)
            .map(|m| CampaignDemand { campaign: m.campaign.clone(), forecast_rps: m.forecast_rps, r: m.r_mean })
            .collect();
        campaigns.sort_by(|a, b| b.forecast_rps.total_cmp(&a.forecast_rps).then(a.campaign.cmp(&b.campaign)));
        campaigns.truncate(LISTED_CAMPAIGNS);
        out.push(Signal::ScaleAhead(ScaleAhead {
            target: self.name.clone(),
            time_ms,
            desired_replicas: change.desired,
            previous_replicas: change.previous,
            forecast_rps: rps,
            horizon_s,
            reason,
            campaigns,
        }));
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

    fn record(campaign: &str, forecast_rps: f64) -> DemandRecord {
        DemandRecord { campaign: Arc::from(campaign), time_ms: 0, forecast_rps, r_mean: Some(1.2) }
    }

    /// A target plans from the latest record of each campaign, whatever the
    /// order later records arrive in (from one engine or several shards); a
    /// removed campaign no longer counts; the record survives a JSON round trip.
    #[test]
    fn target_planner_sums_the_latest_record_of_each_campaign() {
        let plan = |records: &[DemandRecord], removed: Option<&str>| {
            let mut t = TargetPlanner::new(Arc::from("web"), cfg());
            for r in records {
                t.record(r.clone());
            }
            if let Some(c) = removed {
                t.remove(c);
            }
            let mut out = Vec::new();
            t.plan(60_000, ScaleReason::Send, 1800.0, &mut out);
            match out.as_slice() {
                [Signal::ScaleAhead(s)] => s.clone(),
                other => panic!("one scale_ahead expected, got {other:?}"),
            }
        };
        let a = plan(&[record("a", 100.0), record("b", 200.0), record("a", 300.0), record("b", 50.0)], None);
        let b = plan(&[record("a", 100.0), record("b", 200.0), record("b", 50.0), record("a", 300.0)], None);
        assert_eq!(a, b);
        assert_eq!(a.forecast_rps, 350.0);
        // 350 × 1.25 / 50 = 8.75 → 9.
        assert_eq!(a.desired_replicas, 9);
        let names: Vec<&str> = a.campaigns.iter().map(|c| &*c.campaign).collect();
        assert_eq!(names, ["a", "b"]);
        let without_a = plan(&[record("a", 300.0), record("b", 50.0)], Some("a"));
        assert_eq!(without_a.forecast_rps, 50.0);
        let json = serde_json::to_string(&record("a", 1.5)).expect("serialize");
        assert_eq!(serde_json::from_str::<DemandRecord>(&json).expect("deserialize"), record("a", 1.5));
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

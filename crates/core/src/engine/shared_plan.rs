//! One plan per target from the demand of many engines.
//!
//! `floodgate run` keeps one engine per input partition, and several
//! instances share the partitions of a consumer group, while a target's
//! campaigns are spread over all of them. Each engine therefore does not
//! plan its targets itself ([`Engine::with_shared_plans`](crate::engine::Engine::with_shared_plans)):
//! at every bin step and send it exports, per target, a [`DemandShare`] —
//! the latest [`DemandRecord`] of each of its campaigns of that target and
//! the target's clicks in its latest final bins. [`SharedPlans`] keeps the
//! latest share of every *source* (engine) and plans a target from all of
//! them with the same [`TargetPlanner`] a single engine uses:
//!
//! ```text
//! apply(source, share):  sources[target][source] = share
//!                        planner.members = ∪ over sources of their campaigns' records
//!                        planner.observed = Σ over sources of the clicks of each bin (latest FLOOR_BINS bins)
//!                        learned headroom ← each final bin, Σ over the sources' shares of its bin step
//!                        if owned and share.time ≥ the last plan's time: planner.plan(share.time, share.reason)
//! ```
//!
//! Shares are merged in the order one engine makes its decisions: by the
//! time each is *acted on* — a send's at its time, a bin step's when the
//! watermark makes its bin final, `allowed_lateness` after the bin's end —
//! then by event time. A share is held until every source that holds
//! campaigns of the target has shared up to its acted time (the
//! *frontier*: the lowest latest acted time among those sources), then the
//! shares up to the frontier are taken in that order, and the target is
//! planned once per distinct time, from every
//! source's records as of that time (a send's share plans as a send). The
//! planner thus sees, and decides from, what one engine holding every
//! campaign would have at each of its plan times, so its decisions — and
//! its stabilisation history, on which the HPA-like cooldown and 10 %
//! tolerance depend — are the single engine's. A source that holds no
//! campaign of the target is not waited for; one that has gone quiet can be
//! released ([`SharedPlans::release`]) so that it does not hold the target
//! back (a share that arrives behind the frontier only updates the records).
//!
//! Only one process should plan a target (and emit its `scale_ahead`): the
//! caller says which targets it *owns*. The others keep the shares, so an
//! owner that takes a target over plans it from everything at once; its
//! stabilisation history (the cooldown's recent counts) starts again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::config::EngineConfig;
use crate::engine::planner::{DemandShare, ObservedBin, PlanTiming, TargetPlanner, FLOOR_BINS};
use crate::signal::{ScaleReason, Signal};

/// The latest shares of every source, and the plans of the owned targets.
#[derive(Debug)]
pub struct SharedPlans {
    /// The capacity model of each target (`planner` with its override).
    cfg: Arc<EngineConfig>,
    /// Bin width and decision delay (as the engines have them).
    timing: PlanTiming,
    /// Per target: its sources' shares and its planner.
    targets: BTreeMap<Arc<str>, SharedTarget>,
}

/// One target's input from every source, and its planner.
#[derive(Debug)]
struct SharedTarget {
    /// The latest share taken (merged) of each source, by source name.
    sources: BTreeMap<Box<str>, DemandShare>,
    /// Shares received and not yet taken (they lie ahead of the frontier),
    /// in arrival order.
    held: Vec<(Box<str>, DemandShare)>,
    /// Per source: the time of its latest share received, and whether that
    /// share has campaigns (a source without is not waited for).
    latest: BTreeMap<Box<str>, (i64, bool)>,
    /// Sources released from the frontier until they share again.
    released: std::collections::BTreeSet<Box<str>>,
    /// Its planner: the records of every source taken; it decides only
    /// while `owned`.
    planner: TargetPlanner,
    /// This process plans the target.
    owned: bool,
    /// Event time of the planner's last plan.
    planned_ms: Option<i64>,
    /// Each source's clicks of the target in the bins its bin steps made
    /// final, by bin start (ms), until every source has shared that step:
    /// then their sum is the learned headroom's input.
    finals: BTreeMap<i64, BTreeMap<Box<str>, u64>>,
    /// The bins realised lately (the last [`CORRECTABLE_BINS`]): each
    /// source's clicks and the replicas that were ready, so that a source's
    /// share of a bin arriving after it was realised (a source that began
    /// sharing late) corrects the headroom rather than being lost.
    realised: BTreeMap<i64, RealisedBin>,
}

/// A bin the learned headroom has taken.
#[derive(Debug, Default)]
struct RealisedBin {
    /// Each source's clicks in it.
    by_source: BTreeMap<Box<str>, u64>,
    /// Replicas the plan had ready for it.
    ready: u32,
}

/// How many realised bins a shared target keeps for late shares (a day of
/// minute bins).
const CORRECTABLE_BINS: usize = 1440;

impl SharedPlans {
    /// No share yet. `cfg` must be the engines' configuration (bin width,
    /// allowed lateness, planner and target overrides).
    pub fn new(cfg: Arc<EngineConfig>) -> SharedPlans {
        let timing = PlanTiming { bin_ms: cfg.estimator.bin.ms(), decision_delay_ms: cfg.estimator.allowed_lateness.ms() };
        SharedPlans { cfg, timing, targets: BTreeMap::new() }
    }

    /// Receives `source`'s share of a target (each source's shares in the
    /// order it made them) and takes every held share the frontier has
    /// passed, in time order. If the target is `owned`, it is planned at
    /// each time taken that is not behind its last plan, and `scale_ahead`
    /// signals are appended to `out` as [`TargetPlanner::plan`] decides.
    pub fn apply(&mut self, source: &str, share: DemandShare, owned: bool, out: &mut Vec<Signal>) {
        let name = share.target.clone();
        let (cfg, timing) = (&self.cfg, self.timing);
        let t = self.targets.entry(name.clone()).or_insert_with(|| SharedTarget {
            sources: BTreeMap::new(),
            held: Vec::new(),
            latest: BTreeMap::new(),
            released: Default::default(),
            planner: TargetPlanner::new(name.clone(), cfg.planner_for(&name), timing),
            owned: false,
            planned_ms: None,
            finals: BTreeMap::new(),
            realised: BTreeMap::new(),
        });
        if t.owned && !owned {
            t.disown();
        }
        t.owned = owned;
        t.latest.insert(Box::from(source), (acted_ms(&share, timing), !share.campaigns.is_empty()));
        t.released.remove(source);
        t.held.push((Box::from(source), share));
        t.take_ready(out);
    }

    /// Stops waiting for `source` (it has gone quiet: an idle or lost
    /// partition) until it shares again; shares held for it are taken.
    pub fn release(&mut self, source: &str, out: &mut Vec<Signal>) {
        for t in self.targets.values_mut() {
            if t.latest.contains_key(source) && t.released.insert(Box::from(source)) {
                t.take_ready(out);
            }
        }
    }

    /// This process no longer owns `target`: its planner's stabilisation
    /// history is dropped; the shares are kept.
    pub fn disown(&mut self, target: &str) {
        if let Some(t) = self.targets.get_mut(target) {
            t.disown();
            t.owned = false;
        }
    }

    /// The planner of `target`, if this process owns it.
    pub fn planner(&self, target: &str) -> Option<&TargetPlanner> {
        self.targets.get(target).filter(|t| t.owned).map(|t| &t.planner)
    }

    /// The targets some source has shared, by name.
    pub fn targets(&self) -> impl Iterator<Item = &Arc<str>> {
        self.targets.keys()
    }
}

impl SharedTarget {
    /// Drops the planner's stabilisation history.
    fn disown(&mut self) {
        self.planner.reset();
        self.planned_ms = None;
    }

    /// The time up to which every source it waits for has shared: the
    /// lowest latest time of the sources whose latest share has campaigns
    /// (not released); none such: every share can be taken.
    fn frontier(&self) -> i64 {
        self.latest.iter().filter(|(s, &(_, has))| has && !self.released.contains(*s)).map(|(_, &(time, _))| time).min().unwrap_or(i64::MAX)
    }

    /// Takes the held shares up to the frontier, in time order (arrival
    /// order within a time), planning once per time.
    fn take_ready(&mut self, out: &mut Vec<Signal>) {
        let frontier = self.frontier();
        let timing = self.planner.timing();
        let (mut ready, held): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.held).into_iter().partition(|(_, s)| acted_ms(s, timing) <= frontier);
        self.held = held;
        // Stable: arrival order within a time.
        // At one acted time, sends first: an engine plans a send when it
        // applies it, and steps the bins its watermark then passes after.
        ready.sort_by_key(|(_, s)| (acted_ms(s, timing), s.reason == ScaleReason::Forecast, s.time_ms));
        let mut ready = ready.into_iter().peekable();
        while let Some((source, share)) = ready.next() {
            let time_ms = share.time_ms;
            let acted = acted_ms(&share, timing);
            let mut reason = share.reason;
            self.take(source, share);
            while let Some((source, share)) = ready.next_if(|(_, s)| s.time_ms == time_ms && acted_ms(s, timing) == acted) {
                if share.reason == ScaleReason::Send {
                    reason = ScaleReason::Send;
                }
                self.take(source, share);
            }
            self.realise_finals(acted);
            if self.owned && self.planned_ms.is_none_or(|last| acted >= last) {
                self.planner.set_observed(summed_bins(self.sources.values()));
                self.planned_ms = Some(acted);
                self.planner.plan(time_ms, reason, out);
            }
        }
    }

    /// Gives the planner's learned headroom (if this process plans the
    /// target) every final bin whose bin step is acted on by `acted_ms`,
    /// in time order, with the clicks of every source summed: all sources
    /// have shared that step by then (the frontier passed it), however
    /// their shares interleaved on the way.
    fn realise_finals(&mut self, acted_ms: i64) {
        let timing = self.planner.timing();
        while let Some(entry) = self.finals.first_entry() {
            // The bin step that made the bin final ends where the bin does.
            if timing.acted_ms(*entry.key() + timing.bin_ms, ScaleReason::Forecast) > acted_ms {
                break;
            }
            let (bin_start_ms, by_source) = entry.remove_entry();
            if !self.owned {
                continue;
            }
            if let Some(ready) = self.planner.realise_final(ObservedBin { bin_start_ms, clicks: by_source.values().sum() }) {
                self.realised.insert(bin_start_ms, RealisedBin { by_source, ready });
                while self.realised.len() > CORRECTABLE_BINS {
                    self.realised.pop_first();
                }
            }
        }
    }

    /// Makes `share` the latest of `source`: its campaigns missing from it
    /// are gone, the others' records replaced.
    fn take(&mut self, source: Box<str>, share: DemandShare) {
        if let Some(prev) = self.sources.get(&source) {
            for gone in prev.campaigns.iter().filter(|r| !share.campaigns.iter().any(|n| n.campaign == r.campaign)) {
                self.planner.remove(&gone.campaign);
            }
        }
        for r in &share.campaigns {
            self.planner.record(r.clone());
        }
        if let Some(f) = share.final_bin {
            if let Some(r) = self.realised.get_mut(&f.bin_start_ms) {
                let before: u64 = r.by_source.values().sum();
                r.by_source.insert(source.clone(), f.clicks);
                let after: u64 = r.by_source.values().sum();
                if after != before {
                    self.planner.correct_final(r.ready, before, after);
                }
            } else {
                self.finals.entry(f.bin_start_ms).or_default().insert(source.clone(), f.clicks);
            }
        }
        self.sources.insert(source, share);
    }
}

/// When the decision a share is made for is acted on ([`PlanTiming::acted_ms`]):
/// the order one engine makes its decisions in (so a send at 08:10 is
/// planned before the bin step of the bin ending 08:06, as in the engine
/// that holds both).
fn acted_ms(share: &DemandShare, timing: PlanTiming) -> i64 {
    timing.acted_ms(share.time_ms, share.reason)
}

/// The latest [`FLOOR_BINS`] bins any of `shares` observed, oldest first,
/// each with the clicks of every share that observed it summed.
fn summed_bins<'a>(shares: impl Iterator<Item = &'a DemandShare>) -> Vec<ObservedBin> {
    let mut sum: BTreeMap<i64, u64> = BTreeMap::new();
    for s in shares {
        for b in &s.observed {
            *sum.entry(b.bin_start_ms).or_default() += b.clicks;
        }
    }
    let skip = sum.len().saturating_sub(FLOOR_BINS);
    sum.into_iter().skip(skip).map(|(bin_start_ms, clicks)| ObservedBin { bin_start_ms, clicks }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::planner::DemandRecord;

    fn record(name: &str, time_ms: i64, rps: f64) -> DemandRecord {
        DemandRecord {
            campaign: Arc::from(name),
            time_ms,
            forecast_rps: rps,
            r_mean: None,
            path_start_ms: time_ms,
            path_rps: vec![rps; 30],
        }
    }

    fn share(time_ms: i64, observed: &[(i64, u64)], campaigns: Vec<DemandRecord>) -> DemandShare {
        DemandShare {
            target: Arc::from("web"),
            time_ms,
            reason: ScaleReason::Forecast,
            final_bin: None,
            observed: observed.iter().map(|&(bin_start_ms, clicks)| ObservedBin { bin_start_ms, clicks }).collect(),
            campaigns,
        }
    }

    fn desired(out: &[Signal]) -> Option<u32> {
        out.iter().rev().find_map(|s| match s {
            Signal::ScaleAhead(a) => Some(a.desired_replicas),
            _ => None,
        })
    }

    fn plans() -> SharedPlans {
        let mut cfg = EngineConfig::default();
        cfg.planner.cooldown = crate::config::Duration(0);
        SharedPlans::new(Arc::new(cfg))
    }

    /// The learned headroom of a shared target takes each final bin once,
    /// with every source's clicks of it summed; a source's share of a bin
    /// that arrives after the bin was taken corrects it to the full sum.
    #[test]
    fn final_bins_are_summed_over_sources_and_a_late_share_corrects_the_headroom() {
        let at = |clicks: u64| {
            let mut one = TargetPlanner::new(Arc::from("web"), EngineConfig::default().planner_for("web"), plans().timing);
            one.realise_final(ObservedBin { bin_start_ms: 540_000, clicks });
            one.headroom()
        };
        let mut p = plans();
        let mut out = Vec::new();
        let with_final = |source_clicks: u64, campaign: &str| DemandShare {
            final_bin: Some(ObservedBin { bin_start_ms: 540_000, clicks: source_clicks }),
            ..share(600_000, &[], vec![record(campaign, 600_000, 0.0)])
        };
        let start = EngineConfig::default().planner.headroom;
        p.apply("a", with_final(500, "c1"), true, &mut out);
        let planner = |p: &SharedPlans| p.planner("web").map(TargetPlanner::headroom);
        assert_eq!(planner(&p), Some(start), "b holds campaigns too and has not shared the step yet");
        p.apply("b", with_final(400, "c2"), true, &mut out);
        // 900 clicks × 10 requests / 60 s = 150 rps against min_replicas × 50.
        let summed = at(900);
        assert!(summed > start + 0.3, "a third over capacity raises it: {summed}");
        assert_eq!(planner(&p), Some(summed));
        // A third source, sharing the bin late: corrected to 1 200 clicks.
        p.apply("c", DemandShare { campaigns: Vec::new(), ..with_final(300, "c3") }, true, &mut out);
        let full = planner(&p).unwrap_or(f64::NAN);
        assert!((full - at(1_200)).abs() < 1e-12, "{full} vs {}", at(1_200));
    }

    #[test]
    fn two_sources_plan_as_one_engine_with_both_campaigns() {
        let mut shared = plans();
        let mut out = Vec::new();
        shared.apply("p0", share(60_000, &[(0, 10)], vec![record("a", 60_000, 4_000.0)]), true, &mut out);
        let one = desired(&out).expect("scales up");
        shared.apply("p1", share(60_000, &[(0, 20)], vec![record("b", 60_000, 4_000.0)]), true, &mut out);
        let two = desired(&out).expect("scales up again");
        // The same records in one planner.
        let cfg = EngineConfig::default();
        let timing = PlanTiming { bin_ms: 60_000, decision_delay_ms: cfg.estimator.allowed_lateness.ms() };
        let mut single = TargetPlanner::new(Arc::from("web"), cfg.planner_for("web"), timing);
        single.record(record("a", 60_000, 4_000.0));
        single.record(record("b", 60_000, 4_000.0));
        single.observe(0, 30);
        let mut o = Vec::new();
        single.plan(60_000, ScaleReason::Forecast, &mut o);
        assert!(two > one, "{two} > {one}");
        assert_eq!(Some(two), desired(&o));
        let p = shared.planner("web").expect("owned");
        assert_eq!(p.floor_replicas(), single.floor_replicas(), "clicks of one bin are summed over sources");
        assert_eq!(p.forecast_rps(), single.forecast_rps());
    }

    #[test]
    fn a_campaign_missing_from_a_later_share_is_gone_and_old_shares_do_not_plan() {
        let mut shared = plans();
        let mut out = Vec::new();
        shared.apply("p0", share(60_000, &[], vec![record("a", 60_000, 4_000.0), record("c", 60_000, 4_000.0)]), true, &mut out);
        let both = desired(&out).expect("up");
        shared.apply("p0", share(120_000, &[], vec![record("a", 120_000, 4_000.0)]), true, &mut out);
        let one = desired(&out).expect("down (no cooldown)");
        assert!(one < both, "{one} < {both}");
        out.clear();
        // A share older than the last plan is taken but does not plan.
        shared.apply("p1", share(60_000, &[], vec![record("b", 60_000, 0.0)]), true, &mut out);
        assert!(out.is_empty());
        assert_eq!(shared.planner("web").map(|p| p.campaigns().count()), Some(2));
    }

    #[test]
    fn only_an_owner_plans_and_a_new_owner_starts_from_every_share() {
        let mut shared = plans();
        let mut out = Vec::new();
        shared.apply("p0", share(60_000, &[], vec![record("a", 60_000, 1_000.0)]), false, &mut out);
        shared.apply("p1", share(60_000, &[], vec![record("b", 60_000, 1_000.0)]), false, &mut out);
        assert!(out.is_empty() && shared.planner("web").is_none());
        // Owned now; p1 is ahead of p0, so its share waits for p0's.
        shared.apply("p1", share(120_000, &[], vec![record("b", 120_000, 1_000.0)]), true, &mut out);
        assert!(out.is_empty(), "held until p0 has shared up to 2:00");
        shared.apply("p0", share(120_000, &[], vec![record("a", 120_000, 1_000.0)]), true, &mut out);
        assert_eq!(shared.planner("web").map(|p| p.campaigns().count()), Some(2), "both sources' campaigns");
        assert!(desired(&out).is_some());
        // A quiet source is released: the other's shares are taken.
        out.clear();
        shared.apply("p1", share(180_000, &[], vec![record("b", 180_000, 3_000.0)]), true, &mut out);
        assert!(out.is_empty());
        shared.release("p0", &mut out);
        assert!(desired(&out).is_some(), "planned at 3:00 without p0");
        shared.disown("web");
        assert!(shared.planner("web").is_none());
        assert_eq!(shared.targets().count(), 1);
    }

    #[test]
    fn shares_are_planned_in_time_order_with_every_source_as_of_that_time() {
        // p0 races ahead; p1's share of 1:00 arrives after p0's of 2:00. The
        // plan at 1:00 must use p0's record of 1:00, not of 2:00.
        let cfg = EngineConfig::default();
        let mut shared = SharedPlans::new(Arc::new(cfg.clone()));
        let mut out = Vec::new();
        shared.apply("p1", share(0, &[], vec![record("b", 0, 100.0)]), true, &mut out);
        out.clear();
        shared.apply("p0", share(60_000, &[], vec![record("a", 60_000, 1_000.0)]), true, &mut out);
        shared.apply("p0", share(120_000, &[], vec![record("a", 120_000, 9_000.0)]), true, &mut out);
        assert!(out.is_empty(), "waiting for p1");
        shared.apply("p1", share(60_000, &[], vec![record("b", 60_000, 100.0)]), true, &mut out);
        let timing = PlanTiming { bin_ms: 60_000, decision_delay_ms: cfg.estimator.allowed_lateness.ms() };
        let mut single = TargetPlanner::new(Arc::from("web"), cfg.planner_for("web"), timing);
        single.record(record("b", 0, 100.0));
        let mut o = Vec::new();
        single.plan(0, ScaleReason::Forecast, &mut o);
        single.record(record("a", 60_000, 1_000.0));
        single.record(record("b", 60_000, 100.0));
        o.clear();
        single.plan(60_000, ScaleReason::Forecast, &mut o);
        assert_eq!(desired(&out), desired(&o), "the 1:00 plan, from both sources as of 1:00");
        assert!(shared.planner("web").is_some_and(|p| p.forecast_rps() < 2_000.0), "p0's 2:00 share is still held");
    }

    #[test]
    fn observed_bins_are_summed_by_bin_and_only_the_latest_count() {
        let a = share(0, &[(0, 5), (60_000, 7), (120_000, 1)], vec![]);
        let b = share(0, &[(60_000, 3), (120_000, 2), (180_000, 9)], vec![]);
        let bins = summed_bins([&a, &b].into_iter());
        let got: Vec<(i64, u64)> = bins.iter().map(|b| (b.bin_start_ms, b.clicks)).collect();
        assert_eq!(got, [(60_000, 10), (120_000, 3), (180_000, 9)]);
    }
}

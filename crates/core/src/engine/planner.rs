//! Forecast → desired replicas for one target service: a time-phased plan.
//!
//! ```text
//! demand(m) = Σ_c mean_c(m) + z_q · sqrt(Σ_c requests_per_click · mean_c(m) / bin_s) + baseline_rps
//! ready(m)  = replicas_for(demand(m))     replicas that must be serving in minute m
//! floor     = replicas_for(observed + baseline_rps)
//! request   = max(floor, max of ready(m) over the minutes m of the window)
//! window    = [acted, next bin end + allowed_lateness + startup)   (PlanWindow)
//! acted     = now (a send) or now + allowed_lateness (a bin's forecast)
//! replicas_for(rps) = clamp(ceil(rps × (1 + headroom) / capacity_per_replica), min_replicas, max_replicas)
//! ```
//!
//! `mean_c(m)` is campaign `c`'s forecast requests/s in future bin `m` (its
//! click path at `forecast.r_quantile` × `requests_per_click`), `z_q` the
//! standard normal quantile of `planner.quantile`: the sum of the campaigns'
//! paths plus the Poisson spread of their clicks. A bin's decision is acted
//! on when the watermark makes the bin final (`allowed_lateness` after its
//! end; a send's at once); the minutes before that were provided for by
//! earlier decisions. The next decision is acted on one bin later and its
//! replicas serve `startup` after that, so this one must cover every minute
//! until then — and no further: the forecast peak of the rest of the horizon
//! is asked for when it comes within reach. When the forecast falls, the
//! plan falls with it, as soon as no minute of the window needs the higher
//! count at the quantile (the cooldown then only damps flapping).
//!
//! `observed` is the highest request rate of the target's last
//! [`FLOOR_BINS`] *elapsed* bins, final or not (its clicks ×
//! `requests_per_click`; the engine passes them, see `Target::refresh_floor`):
//! the **reactive floor**, what an HPA would see now rather than
//! `allowed_lateness` ago. The plan never goes below what the target is visibly
//! serving, whether or not its campaigns are still forecast (a long tail of
//! a forgotten campaign, a forecast that is wrong).
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
use crate::engine::gamma::normal_quantile;
use crate::engine::headroom::HeadroomLearner;
use crate::signal::{CampaignDemand, ScaleAhead, ScaleReason, Signal};

/// The reactive floor looks at the request rate of this many of the
/// target's latest elapsed bins (the highest of them).
pub const FLOOR_BINS: usize = 3;

/// Rises of at most this fraction of the current count are not applied
/// (Kubernetes' HPA uses the same 10 % default tolerance).
pub const TOLERANCE: f64 = 0.1;

/// Replicas needed for `rps` under `cfg` with its configured headroom,
/// before stabilisation.
pub fn replicas_for(cfg: &PlannerConfig, rps: f64) -> u32 {
    replicas_with(cfg, rps, cfg.headroom)
}

/// Replicas needed for `rps` under `cfg` with `headroom` (the learned one,
/// see [`crate::engine::headroom`]), before stabilisation.
pub fn replicas_with(cfg: &PlannerConfig, rps: f64, headroom: f64) -> u32 {
    let need = (rps.max(0.0) * (1.0 + headroom) / cfg.capacity_per_replica).ceil();
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
        self.plan_replicas(now_ms, replicas_for(&self.cfg, rps))
    }

    /// Feeds the replicas wanted at event time `now_ms` (already within
    /// `[min_replicas, max_replicas]`). Returns the change, if the applied
    /// count moves.
    pub fn plan_replicas(&mut self, now_ms: i64, want: u32) -> Option<Change> {
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
    /// Event time (ms) at which the bin of `path_rps[0]` starts.
    pub path_start_ms: i64,
    /// Its forecast requests/s in each bin of the horizon from
    /// `path_start_ms` on (baseline not included); empty before its first
    /// forecast.
    pub path_rps: Vec<f64>,
}

impl DemandRecord {
    /// Its forecast requests/s in the bin starting at `bin_start_ms` (0
    /// outside its path).
    fn rps_at(&self, bin_start_ms: i64, bin_ms: i64) -> f64 {
        let i = (bin_start_ms - self.path_start_ms).div_euclid(bin_ms);
        usize::try_from(i).ok().and_then(|i| self.path_rps.get(i)).copied().unwrap_or(0.0)
    }
}

/// The clicks of one elapsed bin of a target (for the reactive floor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedBin {
    /// Event time (ms) at which the bin starts.
    pub bin_start_ms: i64,
    /// The target's clicks in it.
    pub clicks: u64,
}

/// Everything one engine knows about the demand on one target at one
/// moment: what a [`TargetPlanner`] plans from. A planner elsewhere (in
/// another process) that holds the latest share of every engine plans the
/// target as one engine holding all its campaigns would
/// ([`crate::engine::shared_plan`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandShare {
    /// Target service.
    pub target: Arc<str>,
    /// Event time (ms) of the plan it was made for: the end of a bin step,
    /// or a send.
    pub time_ms: i64,
    /// Why it was made: a send (plans at once) or a bin's forecasts.
    pub reason: ScaleReason,
    /// The engine's clicks of the target in the bin this bin step made final
    /// (absent for a send's share): the learned headroom's input, summed
    /// over the engines' shares of the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_bin: Option<ObservedBin>,
    /// The clicks of the engine's latest elapsed bins of the target (at
    /// most [`FLOOR_BINS`], oldest first).
    pub observed: Vec<ObservedBin>,
    /// The latest demand of each of the engine's campaigns of the target
    /// (all of them: a campaign missing from a later share is gone).
    pub campaigns: Vec<DemandRecord>,
}

/// When a target's decisions take effect, besides its own `startup`: what
/// the pipeline adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanTiming {
    /// Bin width (ms): forecast paths are per bin, and a bin's plan is
    /// followed by the next one a bin later.
    pub bin_ms: i64,
    /// From the end of a bin to the moment its plan is acted on: the allowed
    /// lateness (the watermark makes the bin final that much later).
    pub decision_delay_ms: i64,
}

impl PlanTiming {
    /// When a decision made at event time `time_ms` for `reason` is acted
    /// on: a send's at once, a bin step's when the watermark makes its bin
    /// final, `decision_delay_ms` after the bin's end.
    pub fn acted_ms(&self, time_ms: i64, reason: ScaleReason) -> i64 {
        match reason {
            ScaleReason::Send => time_ms,
            ScaleReason::Forecast => time_ms + self.decision_delay_ms,
        }
    }
}

/// The event times a decision provides for: `[from_ms, until_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanWindow {
    /// When the decision is acted on.
    pub from_ms: i64,
    /// When the next decision's replicas are ready.
    pub until_ms: i64,
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
    /// The latest demand record of each of its campaigns, in the order they
    /// first named the target (the sum of their demands is taken in this
    /// order, so it does not depend on where the records came from).
    members: Vec<DemandRecord>,
    /// Index of each campaign in `members`.
    position: HashMap<Arc<str>, usize, foldhash::fast::FixedState>,
    /// Forecast requests/s of the last plan (baseline included): the
    /// highest demand at the quantile within the lead.
    forecast_rps: f64,
    /// Bin width and decision delay.
    timing: PlanTiming,
    /// `z` of `planner.quantile` (standard normal quantile).
    z: f64,
    /// The target's clicks in its latest elapsed bins, newest last, at
    /// most [`FLOOR_BINS`]: the reactive floor's input.
    observed: VecDeque<ObservedBin>,
    /// The learned headroom (`planner.learn_headroom`), fed each bin of
    /// the target's clicks once it is final; `None`: `planner.headroom` as
    /// set.
    learned: Option<HeadroomLearner>,
    /// Bins starting before this (ms) have been given to `learned`.
    realised_until_ms: i64,
}

impl TargetPlanner {
    /// A target with no campaign yet, at `cfg.min_replicas`.
    pub fn new(name: Arc<str>, cfg: PlannerConfig, timing: PlanTiming) -> TargetPlanner {
        let z = normal_quantile(cfg.quantile.clamp(0.5, 0.999));
        let learned = cfg.learn_headroom.then(|| HeadroomLearner::new(cfg.headroom, cfg.target_overload));
        TargetPlanner {
            name,
            planner: Planner::new(cfg),
            members: Vec::new(),
            position: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(3)),
            forecast_rps: 0.0,
            timing,
            z,
            observed: VecDeque::with_capacity(FLOOR_BINS + 1),
            learned,
            realised_until_ms: i64::MIN,
        }
    }

    /// The headroom plans use now: the learned one, or `planner.headroom`.
    pub fn headroom(&self) -> f64 {
        self.learned.as_ref().map_or(self.config().headroom, HeadroomLearner::headroom)
    }

    /// The learned headroom's record: bins it learned from and their mean
    /// share of requests over capacity (`None` without learning).
    pub fn headroom_record(&self) -> Option<(u64, f64)> {
        self.learned.as_ref().map(HeadroomLearner::realised)
    }

    /// Starts the learned headroom from `headroom` (a loaded model's; no
    /// effect when the headroom is not learned).
    pub fn load_headroom(&mut self, headroom: f64) {
        if let Some(l) = self.learned.as_mut() {
            l.set_headroom(headroom);
        }
    }

    /// Gives the learned headroom the target's clicks of a bin that has
    /// just become final (each bin once, in time order: a bin starting
    /// before one given already is ignored). Final, not elapsed: a final
    /// bin's count does not depend on the order events arrived in, nor on
    /// how a stream was batched, and every engine sharing the target has
    /// its count of that bin in its share of the same bin step.
    pub fn realise_final(&mut self, bin: ObservedBin) -> Option<u32> {
        if bin.bin_start_ms < self.realised_until_ms {
            return None;
        }
        self.realised_until_ms = bin.bin_start_ms + self.timing.bin_ms;
        let cfg = self.planner.config();
        let l = self.learned.as_mut()?;
        Some(l.realise(cfg, bin.bin_start_ms, self.timing.bin_ms, bin.clicks).ready)
    }

    /// A bin given to [`TargetPlanner::realise_final`] with `before` clicks,
    /// when `ready` replicas were ready for it, turned out to have `after`
    /// (another engine's share of it came later): the learned headroom is
    /// corrected to what `after` would have given.
    pub fn correct_final(&mut self, ready: u32, before: u64, after: u64) {
        let cfg = self.planner.config();
        if let Some(l) = self.learned.as_mut() {
            l.recount(cfg, self.timing.bin_ms, ready, before, after);
        }
    }

    /// Bin width and decision delay.
    pub fn timing(&self) -> PlanTiming {
        self.timing
    }

    /// How far ahead of its event time a decision must provide, at most
    /// (ms): start-up plus decision delay plus one bin (until the next
    /// decision). The engine's forecast horizon is at least this.
    pub fn lead_ms(&self) -> i64 {
        self.config().startup.ms() + self.timing.decision_delay_ms + self.timing.bin_ms
    }

    /// The minutes a decision made at event time `time_ms` has to provide
    /// for: from the moment it is acted on (a send's at once, a forecast's
    /// when the watermark makes its bin final, `decision_delay` later; the
    /// minutes before that belong to earlier decisions) until the replicas
    /// of the next decision are ready (the next bin's decision, acted on
    /// `decision_delay` after that bin ends, plus `startup`).
    pub fn window(&self, time_ms: i64, reason: ScaleReason) -> PlanWindow {
        let bin_ms = self.timing.bin_ms.max(1);
        let next_bin_end_ms = (time_ms.div_euclid(bin_ms) + 1) * bin_ms;
        PlanWindow {
            from_ms: self.timing.acted_ms(time_ms, reason),
            until_ms: next_bin_end_ms + self.timing.decision_delay_ms + self.config().startup.ms(),
        }
    }

    /// The target's `clicks` in the bin starting at `bin_start_ms`, which
    /// just became final: its observed request rate, for the reactive floor.
    pub fn observe(&mut self, bin_start_ms: i64, clicks: u64) {
        if self.observed.len() == FLOOR_BINS {
            self.observed.pop_front();
        }
        self.observed.push_back(ObservedBin { bin_start_ms, clicks });
    }

    /// Replaces what the floor has observed with `bins` (oldest first; only
    /// the last [`FLOOR_BINS`] count): a planner fed by shares of other
    /// engines, which sums their bins.
    pub fn set_observed(&mut self, bins: impl IntoIterator<Item = ObservedBin>) {
        self.observed.clear();
        for b in bins {
            self.observe(b.bin_start_ms, b.clicks);
        }
    }

    /// Replicas the observed request rate needs now (the reactive floor).
    pub fn floor_replicas(&self) -> u32 {
        let bin_s = self.timing.bin_ms as f64 / 1000.0;
        let clicks = self.observed.iter().map(|b| b.clicks).max().unwrap_or(0);
        let observed = clicks as f64 * self.config().requests_per_click / bin_s;
        replicas_with(self.config(), observed + self.config().baseline_rps, self.headroom())
    }

    /// What this planner plans from at `time_ms`, for a planner elsewhere
    /// (see [`DemandShare`]).
    pub fn share(&self, time_ms: i64, reason: ScaleReason, final_bin: Option<ObservedBin>) -> DemandShare {
        DemandShare {
            target: self.name.clone(),
            time_ms,
            reason,
            final_bin,
            observed: self.observed.iter().copied().collect(),
            campaigns: self.members.clone(),
        }
    }

    /// Its campaigns' names, in the order they first named the target.
    pub fn campaigns(&self) -> impl Iterator<Item = &Arc<str>> {
        self.members.iter().map(|m| &m.campaign)
    }

    /// The highest demand (requests/s, baseline included) at the planner's
    /// quantile in any bin overlapping `window`.
    pub fn window_demand_rps(&self, window: PlanWindow) -> f64 {
        let cfg = self.config();
        let bin_ms = self.timing.bin_ms.max(1);
        let bin_s = bin_ms as f64 / 1000.0;
        let mut bin_start = window.from_ms.div_euclid(bin_ms) * bin_ms;
        let mut peak = 0.0f64;
        while bin_start < window.until_ms {
            let mean: f64 = self.members.iter().map(|m| m.rps_at(bin_start, bin_ms)).sum();
            // Poisson clicks: a bin's clicks have variance = mean; in
            // requests/s that is requests_per_click × mean_rps / bin_s.
            let spread = self.z * (cfg.requests_per_click * mean / bin_s).max(0.0).sqrt();
            peak = peak.max(mean + spread);
            bin_start += bin_ms;
        }
        peak + cfg.baseline_rps
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
            Some(&i) => self.members[i] = r,
            None => {
                self.position.insert(r.campaign.clone(), self.members.len());
                self.members.push(r);
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

    /// Plans at event time `time_ms` from the campaigns' latest demand and
    /// the reactive floor (see the module documentation). A forecast step
    /// emits `scale_ahead` only when the applied replica count changes; a
    /// send always emits one (the plan made at send time, before the first
    /// click), even if the count stays.
    pub fn plan(&mut self, time_ms: i64, reason: ScaleReason, out: &mut Vec<Signal>) {
        let window = self.window(time_ms, reason);
        let rps = self.window_demand_rps(window);
        self.forecast_rps = rps;
        let floor = self.floor_replicas();
        let want = replicas_with(self.config(), rps, self.headroom()).max(floor);
        let change = match (self.planner.plan_replicas(time_ms, want), reason) {
            (Some(change), _) => {
                if let Some(l) = self.learned.as_mut() {
                    l.decided(window.from_ms, change.desired);
                }
                change
            }
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
            horizon_s: (window.until_ms - time_ms) as f64 / 1000.0,
            floor_replicas: floor,
            headroom: self.headroom(),
            reason,
            campaigns,
        }));
    }

    /// Forgets the stabilisation history (the applied count goes back to
    /// `min_replicas`, the cooldown's recent counts are dropped); the
    /// campaigns' demand and the observed bins stay.
    pub fn reset(&mut self) {
        self.planner = Planner::new(self.config().clone());
        if let Some(l) = self.learned.as_mut() {
            l.forget_decisions();
        }
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
            learn_headroom: false,
            target_overload: 0.001,
            baseline_rps: 0.0,
            min_replicas: 2,
            max_replicas: 20,
            cooldown: Duration(600_000),
            startup: Duration(90_000),
            quantile: 0.9,
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

    /// With `learn_headroom`, a final bin the plan could not serve raises
    /// the headroom (each bin once), and the next plan and its signal use
    /// the learned headroom.
    #[test]
    fn a_learned_headroom_rises_after_a_bin_the_plan_could_not_serve() {
        let cfg = PlannerConfig { learn_headroom: true, headroom: 0.1, cooldown: Duration(0), ..cfg() };
        let mut t = TargetPlanner::new(Arc::from("web"), cfg, TIMING);
        assert!((t.headroom() - 0.1).abs() < 1e-12);
        // 720 clicks in a minute × 10 requests = 120 rps; the plan had
        // min_replicas (2 × 50 = 100 rps) ready: 20 of 120 over capacity.
        t.realise_final(ObservedBin { bin_start_ms: 600_000, clicks: 720 });
        let want = (1.1f64.ln() + crate::engine::headroom::STEP * (20.0 / 120.0 - 0.001)).exp_m1();
        assert!((t.headroom() - want).abs() < 1e-12, "{} vs {want}", t.headroom());
        t.realise_final(ObservedBin { bin_start_ms: 660_000, clicks: 60 });
        assert_eq!(t.headroom_record().map(|(bins, _)| bins), Some(1), "the 60-click bin is served by min_replicas: skipped");
        t.realise_final(ObservedBin { bin_start_ms: 600_000, clicks: 720 });
        assert!((t.headroom() - want).abs() < 1e-12, "a bin is realised once");
        // 200 rps: ceil(220 / 50) = 5 at the start headroom, ceil(259.6 / 50) = 6 now.
        t.record(flat_record("a", 200.0));
        let mut out = Vec::new();
        t.plan(900_000, ScaleReason::Send, &mut out);
        match out.as_slice() {
            [Signal::ScaleAhead(s)] => {
                assert!(s.desired_replicas >= 6, "{}", s.desired_replicas);
                assert!((s.headroom - want).abs() < 1e-12);
            }
            other => panic!("one scale_ahead expected, got {other:?}"),
        }
    }

    /// A record of `campaign` whose path is `rps` in every minute of the horizon.
    fn flat_record(campaign: &str, rps: f64) -> DemandRecord {
        DemandRecord {
            campaign: Arc::from(campaign),
            time_ms: 0,
            forecast_rps: rps,
            r_mean: Some(1.2),
            path_start_ms: 0,
            path_rps: vec![rps; 30],
        }
    }

    /// A target plans from the latest record of each campaign, whatever the
    /// order later records arrive in (from one engine or several shards); a
    /// removed campaign no longer counts; the record survives a JSON round trip.
    #[test]
    fn target_planner_sums_the_latest_record_of_each_campaign() {
        let plan = |records: &[DemandRecord], removed: Option<&str>| {
            let mut t = TargetPlanner::new(Arc::from("web"), cfg(), TIMING);
            for r in records {
                t.record(r.clone());
            }
            if let Some(c) = removed {
                t.remove(c);
            }
            let mut out = Vec::new();
            t.plan(60_000, ScaleReason::Send, &mut out);
            match out.as_slice() {
                [Signal::ScaleAhead(s)] => s.clone(),
                other => panic!("one scale_ahead expected, got {other:?}"),
            }
        };
        let r = flat_record;
        let a = plan(&[r("a", 100.0), r("b", 200.0), r("a", 300.0), r("b", 50.0)], None);
        let b = plan(&[r("a", 100.0), r("b", 200.0), r("b", 50.0), r("a", 300.0)], None);
        assert_eq!(a, b, "arrival order does not matter");
        assert_eq!(a, plan(&[r("a", 300.0), r("b", 50.0)], None), "only the latest record of a campaign counts");
        assert!(a.forecast_rps >= 350.0, "the quantile is at least the summed mean: {}", a.forecast_rps);
        let names: Vec<&str> = a.campaigns.iter().map(|c| &*c.campaign).collect();
        assert_eq!(names, ["a", "b"]);
        let without_a = plan(&[r("a", 300.0), r("b", 50.0)], Some("a"));
        assert_eq!(without_a, plan(&[r("b", 50.0)], None), "a removed campaign no longer counts");
        assert!(without_a.forecast_rps < a.forecast_rps);
        let json = serde_json::to_string(&r("a", 1.5)).expect("serialize");
        assert_eq!(serde_json::from_str::<DemandRecord>(&json).expect("deserialize"), r("a", 1.5));
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

    const TIMING: PlanTiming = PlanTiming { bin_ms: 60_000, decision_delay_ms: 300_000 };

    /// A record of campaign `name` made at `time_ms`, whose path starts at
    /// `time_ms` with the given requests/s per minute.
    fn record(name: &str, time_ms: i64, path_rps: Vec<f64>) -> DemandRecord {
        let forecast_rps = path_rps.iter().copied().fold(0.0, f64::max);
        DemandRecord { campaign: Arc::from(name), time_ms, forecast_rps, r_mean: None, path_start_ms: time_ms, path_rps }
    }

    fn desired(out: &[Signal]) -> Option<u32> {
        out.iter().rev().find_map(|s| match s {
            Signal::ScaleAhead(a) => Some(a.desired_replicas),
            _ => None,
        })
    }

    #[test]
    fn lead_is_startup_plus_decision_delay_plus_a_bin() {
        let t = TargetPlanner::new(Arc::from("web"), cfg(), TIMING);
        assert_eq!(t.lead_ms(), 90_000 + 300_000 + 60_000);
        // A forecast at the end of minute 0 is acted on at 6:00 (5 min
        // lateness); the next one at 7:00, whose replicas serve from 8:30.
        assert_eq!(t.window(60_000, ScaleReason::Forecast), PlanWindow { from_ms: 360_000, until_ms: 510_000 });
        // A send at 1:30 is acted on at once; the next decision is the same.
        assert_eq!(t.window(90_000, ScaleReason::Send), PlanWindow { from_ms: 90_000, until_ms: 510_000 });
    }

    #[test]
    fn a_peak_beyond_the_lead_is_asked_for_when_it_comes_within_reach() {
        let mut t = TargetPlanner::new(Arc::from("web"), PlannerConfig { cooldown: Duration(0), ..cfg() }, TIMING);
        // 10 quiet minutes (50 rps), then 10 minutes at 800 rps.
        let path: Vec<f64> = (0..30).map(|m| if (10..20).contains(&m) { 800.0 } else { 50.0 }).collect();
        t.record(record("c", 0, path));
        let mut out = Vec::new();
        t.plan(0, ScaleReason::Send, &mut out);
        let quiet = desired(&out).expect("a send always signals");
        // The send's window ends at 7:30: minute 10 is not yet within reach.
        assert!(quiet <= 3, "the later peak is not bought 10 minutes early: {quiet}");
        // The forecast at 3:00 is acted on at 8:00 and covers until 10:30.
        t.plan(180_000, ScaleReason::Forecast, &mut out);
        let ready = desired(&out).expect("scales up");
        assert!(ready >= replicas_for(t.config(), 800.0), "{ready}");
        // At minute 20 the wave is over and nothing later needs it: down at once.
        out.clear();
        t.plan(1_200_000, ScaleReason::Forecast, &mut out);
        assert!(desired(&out).expect("scales down") < ready / 2);
    }

    #[test]
    fn the_quantile_adds_the_poisson_spread() {
        // 2 clicks/min (20 requests/min = 0.33 rps at 10 requests per click):
        // the mean needs 1 replica of 50 rps; a bin of 6 clicks is not rare.
        let at = |q: f64| {
            let mut t = TargetPlanner::new(
                Arc::from("web"),
                PlannerConfig { quantile: q, capacity_per_replica: 1.0, min_replicas: 0, headroom: 0.0, ..cfg() },
                TIMING,
            );
            t.record(record("c", 0, vec![20.0 / 60.0; 30]));
            t.window_demand_rps(PlanWindow { from_ms: 0, until_ms: 60_000 })
        };
        let (median, upper) = (at(0.5), at(0.99));
        assert!((median - 20.0 / 60.0).abs() < 1e-9, "the median is the mean path: {median}");
        // σ in requests/s = sqrt(10 × 0.333 / 60) = 0.2357; z(0.99) = 2.326.
        assert!((upper - (20.0 / 60.0 + 2.326 * (10.0 * (20.0 / 60.0) / 60.0f64).sqrt())).abs() < 1e-3, "{upper}");
    }

    #[test]
    fn campaign_paths_add_up_bin_by_bin_aligned_on_event_time() {
        let mut t = TargetPlanner::new(Arc::from("web"), PlannerConfig { quantile: 0.5, ..cfg() }, TIMING);
        // Campaign a forecast at minute 0, b at minute 2: b's path[0] is a's path[2].
        t.record(record("a", 0, vec![100.0, 100.0, 300.0, 0.0]));
        t.record(record("b", 120_000, vec![200.0, 0.0]));
        assert!((t.window_demand_rps(PlanWindow { from_ms: 120_000, until_ms: 180_000 }) - 500.0).abs() < 1e-9);
        t.remove("a");
        assert!((t.window_demand_rps(PlanWindow { from_ms: 120_000, until_ms: 180_000 }) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn the_observed_rate_floors_the_plan_after_the_campaigns_are_gone() {
        let mut t = TargetPlanner::new(Arc::from("web"), PlannerConfig { cooldown: Duration(0), ..cfg() }, TIMING);
        let mut out = Vec::new();
        t.record(record("c", 0, vec![0.0; 30]));
        t.remove("c");
        // 600 clicks in the last minute = 100 rps × 1.25 / 50 → 3 replicas.
        t.observe(0, 600);
        t.plan(60_000, ScaleReason::Forecast, &mut out);
        assert_eq!(desired(&out), Some(3));
        assert_eq!(t.floor_replicas(), 3);
        // The highest of the last FLOOR_BINS bins counts: two quiet bins keep it.
        for k in 1..FLOOR_BINS {
            t.observe(k as i64 * 60_000, 0);
            assert_eq!(t.floor_replicas(), 3);
        }
        t.observe(FLOOR_BINS as i64 * 60_000, 0);
        assert_eq!(t.floor_replicas(), 2, "back to min_replicas once the busy bin is out of the floor's bins");
    }
}

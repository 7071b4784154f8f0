//! The engine: a pure, synchronous, deterministic state machine.
//!
//! ```text
//! apply(event) ──► campaign table ──► bins (counts) + pending links
//! advance_to(watermark) ──► for each bin that became final:
//!   advance_detect: for each active campaign:
//!     settle links ─► renewal + lineage estimators ─► detector ─► onset / subsided
//!   advance_plan: for each campaign stepped: forecast;
//!     then per target: planner ─► scale_ahead
//! ```
//!
//! `advance_to` is the two halves back to back. A driver that hands signals
//! on as they become final calls them separately, so that an onset leaves
//! before the forecasts of every live campaign are computed (they are most of
//! a bin step's cost); the output is the same either way.
//!
//! Time comes only from events: the driver (file replay, Kafka source, tests,
//! benchmarks) tells the engine how far event time has progressed with
//! [`Engine::advance_to`]. A bin `b` is *final* once the watermark reaches its
//! end; events for a final bin are counted as late and not applied. A send is
//! planned for at once ([`Engine::apply`] may emit a `scale_ahead`), so
//! capacity is requested before the first click.
//!
//! Hot path: [`Engine::apply`] does one hash lookup for the campaign (no
//! allocation for a known campaign), one in the dedup ids of the event's bin
//! (`dedup.rs`), a push of the pending link and bin arithmetic — O(1)
//! amortised. Per-bin work is
//! proportional to the number of *active* campaigns times the window and
//! generation-interval lengths.

pub mod campaign;
pub mod case_r;
pub mod config;
pub mod dedup;
pub mod delay_learner;
pub mod detector;
pub mod direct_wave;
pub mod forecast;
pub mod forecast_error;
pub mod gamma;
pub mod generation_interval;
pub mod generation_learner;
pub mod headroom;
mod known;
pub mod lifetime;
pub mod lineage;
pub mod model_file;
pub mod planner;
pub mod predictive;
pub mod r_prior;
pub mod renewal;
pub mod shared_plan;
pub mod window;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use serde::Serialize;

use crate::config::MethodChoice;
use crate::event::{person_key, Event, EventKind};
use crate::signal::{CountInterval, Episode, Estimate, Forecast, Method, RSummary, ScaleReason, Signal};
use crate::time::rfc3339;

pub use config::EngineConfig;

use campaign::{Campaign, CampaignEstimate, Pending, PendingKind};
use case_r::case_r;
use dedup::Seen;
use detector::Transition;
use direct_wave::{CampaignDelays, DirectWave};
use forecast::{Demand, ResponseCurve, SendRecord, Spread};
use forecast_error::{ErrorAtHorizon, ErrorLearner, PendingForecasts, Realized};
use generation_interval::GenerationInterval;
use generation_learner::GenerationLearner;
use known::Known;
use lineage::ForwardModel;
use model_file::{LearnedModel, ModelError, TargetModel};
use planner::{DemandRecord, DemandShare, ObservedBin, PlanTiming, TargetPlanner, FLOOR_BINS};
use r_prior::RPriorLearner;
use renewal::Prior;
use window::bin_of;

/// Campaigns with more clicks than this are never evicted to make room
/// (only idle ones are, after `limits.idle_timeout`).
pub const EVICTABLE_CLICKS: u64 = 2;

/// What happened to an applied event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Counted.
    Accepted,
    /// Same campaign and id as an event already counted.
    Duplicate,
    /// Its bin was already final (beyond the allowed lateness).
    Late,
    /// A new campaign could not be tracked (`limits.max_campaigns`).
    Shed,
}

/// An event refused because its time is more than `estimator.max_future`
/// ahead of the reference: the clock if the driver set one
/// ([`Engine::set_clock`]), else the latest event time. The driver decides
/// what it means (see `ingest`: a bad clock, or a real jump in the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FarAhead {
    /// The event's time (ms).
    pub ts_ms: i64,
    /// The time it was compared with (ms).
    pub reference_ms: i64,
    /// Whether `reference_ms` is the driver's clock (else the latest event time).
    pub reference_is_clock: bool,
    /// `estimator.max_future` (ms).
    pub max_future_ms: i64,
}

/// Counters of the engine's life.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Events counted.
    pub accepted: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// Events beyond the allowed lateness.
    pub late: u64,
    /// Sends / clicks / forwards counted.
    pub sends: u64,
    /// Clicks counted.
    pub clicks: u64,
    /// Forwards counted.
    pub forwards: u64,
    /// Events of campaigns not tracked because of `limits.max_campaigns`
    /// (the table was full of campaigns with traffic).
    pub shed_campaigns: u64,
    /// Low-traffic campaigns evicted to admit a new one when the table was full.
    pub shed_campaigns_evicted: u64,
    /// Clickers not followed because of `limits.max_clickers_per_campaign`.
    pub shed_clickers: u64,
    /// Event ids not remembered for dedup because of `limits.max_dedup_ids`.
    pub shed_dedup_ids: u64,
    /// Silent campaigns forgotten: the model expected fewer than
    /// `limits.forget_below` more clicks, or `limits.idle_timeout` passed.
    pub evicted_campaigns: u64,
    /// Campaigns that had events again after being forgotten (among the
    /// last `limits.max_campaigns` forgotten), and were tracked afresh.
    pub returned_campaigns: u64,
    /// Campaigns ever tracked.
    pub campaigns_seen: u64,
    /// Signals emitted, by type.
    pub signals: SignalCounts,
}

/// Signals emitted, by type.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SignalCounts {
    /// `floodgate.estimate`.
    pub estimate: u64,
    /// `floodgate.viral_onset`.
    pub viral_onset: u64,
    /// `floodgate.viral_subsided`.
    pub viral_subsided: u64,
    /// `floodgate.scale_ahead`.
    pub scale_ahead: u64,
}

/// A campaign as shown by `/api/campaigns` and the top-K metrics.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CampaignView {
    /// Campaign id.
    pub campaign: String,
    /// Target service.
    pub target: Option<String>,
    /// Latest posterior of R.
    pub r: Option<RSummary>,
    /// Latest P(R > 1).
    pub p_viral: Option<f64>,
    /// Estimator used.
    pub method: Option<&'static str>,
    /// Whether a viral episode is open.
    pub viral: bool,
    /// Local clicks in the latest window.
    pub local_cases: u64,
    /// Clicks counted in all.
    pub clicks: u64,
    /// Forecast peak requests/s of this campaign.
    pub forecast_rps: f64,
    /// Event time of the latest event (RFC 3339).
    pub last_event: String,
}

/// A target service's plan.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TargetView {
    /// Target service.
    pub target: String,
    /// Replicas applied by the planner.
    pub desired_replicas: u32,
    /// Forecast peak requests/s (baseline included).
    pub forecast_rps: f64,
    /// The headroom its plans use now: learned (`planner.learn_headroom`)
    /// or as set.
    pub headroom: f64,
    /// The learned headroom's record (absent when not learned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headroom_learned: Option<HeadroomView>,
    /// Clicks counted for this target.
    pub clicks: u64,
    /// What its direct wave has learned (`forecast.learn`; absent when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_wave: Option<DirectWaveView>,
    /// What its generation interval has learned
    /// (`estimator.generation_interval.learn`; absent when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_interval: Option<GenerationIntervalView>,
    /// What the direct wave of each audience named by its sends has learned,
    /// by audience name (`forecast.learn`; absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<AudienceView>,
    /// Its learned model error per horizon (`forecast.learn_error`; absent
    /// when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_error: Option<Vec<ErrorAtHorizon>>,
}

/// What a target's learned headroom (`headroom.rs`) has seen, as reported
/// by `/api/targets`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct HeadroomView {
    /// Bins it learned from (those `min_replicas` alone could not serve).
    pub bins: u64,
    /// Their mean share of requests over the capacity the plan had ready.
    pub mean_overload: f64,
}

/// A target's learned generation interval (`generation_learner.rs`), as
/// reported by `/api/targets` and the
/// `floodgate_target_generation_interval_seconds` gauge.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GenerationIntervalView {
    /// Median click → offspring click delay, seconds (a delay of Δ bins
    /// counts as Δ + ½ bins).
    pub median_s: f64,
    /// Its 90th percentile, seconds.
    pub p90_s: f64,
    /// Parent → child delays learned from.
    pub delays: f64,
}

/// An audience's learned direct wave under its target (`direct_wave.rs`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AudienceView {
    /// The audience, as named by the sends.
    pub audience: String,
    /// What its direct wave has learned.
    pub direct_wave: DirectWaveView,
}

/// What one target has learned, loaded or seen (`floodgate model show`,
/// [`Engine::learned_views`]).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LearnedView {
    /// Target service.
    pub target: String,
    /// Its direct wave, learned from all its campaigns.
    pub direct_wave: DirectWaveView,
    /// Its audiences' direct waves, by audience name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<AudienceView>,
    /// Its generation interval (absent: learning off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_interval: Option<GenerationIntervalView>,
    /// Its prior of R (absent: learning off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r_prior: Option<RPriorView>,
}

/// A target's learned prior of R (`r_prior.rs`).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct RPriorView {
    /// The prior mean of R its campaigns are estimated with.
    pub mean: f64,
    /// Matured exposure (clickers × F) it was learned from.
    pub exposure: f64,
}

/// A target's learned direct wave (`direct_wave.rs`), as reported by
/// `/api/targets` and the `floodgate_target_response_delay_seconds` and
/// `floodgate_target_click_through` gauges.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DirectWaveView {
    /// Median send → direct click delay of the learned curve, seconds.
    pub response_median_s: f64,
    /// Its 90th percentile, seconds.
    pub response_p90_s: f64,
    /// Direct clicks learned from.
    pub delays: f64,
    /// The click-through a new campaign starts from.
    pub click_through: f64,
    /// Its weight, in recipients.
    pub click_through_weight: f64,
    /// Campaigns whose click-through was pooled.
    pub campaigns: u32,
}

/// A target service: its planner (with its campaigns' latest demand) and
/// what is counted for it.
#[derive(Debug)]
struct Target {
    /// The planner and its input.
    planner: TargetPlanner,
    /// Clicks counted for this target.
    clicks: u64,
    /// Its clicks per bin (bin → clicks), from the first bin the reactive
    /// floor may still read on (see [`Target::refresh_floor`]).
    bin_clicks: BTreeMap<i64, u64>,
    /// Its direct wave, learned from its campaigns (`forecast.learn`).
    direct: DirectWave,
    /// Its generation interval, learned from its campaigns' parent → child
    /// delays (`estimator.generation_interval.learn`).
    generation: Option<GenerationLearner>,
    /// Its prior of R, learned from its campaigns' matured lineage cohorts
    /// (`estimator.learn_prior`).
    r_prior: Option<RPriorLearner>,
    /// The model error of its forecasts, learned from how they turned out
    /// (`forecast.learn_error`).
    error: Option<ErrorLearner>,
    /// The direct waves of the audiences its sends named, in order of first
    /// appearance (at most `limits.max_audiences_per_target`; a campaign
    /// refers to one by its slot here).
    audiences: Vec<Audience>,
    /// Slot of each audience in `audiences`, by name.
    audience_index: HashMap<Box<str>, u32, foldhash::fast::FixedState>,
}

/// One audience of a target.
#[derive(Debug)]
struct Audience {
    /// Its name, as the sends give it.
    name: Arc<str>,
    /// Its direct wave, learned under its target's (`direct_wave.rs`).
    direct: DirectWave,
}

impl Target {
    /// Gives the planner's reactive floor the clicks of the target's
    /// [`FLOOR_BINS`] latest *elapsed* bins, up to `elapsed` (the last bin
    /// the event time has passed; an open bin's clicks may still gain a few
    /// late events), final or not; a bin without clicks counts 0. That is
    /// the rate an HPA would see (its metrics lag about a minute), not the
    /// one `allowed_lateness` ago: a decision is made when its bin becomes
    /// final, but the load since is already visible. Bins before that
    /// window are dropped: no floor reads them again.
    fn refresh_floor(&mut self, elapsed: i64, bin_ms: i64) {
        let from = elapsed - FLOOR_BINS as i64 + 1;
        let bins = self.bin_clicks.range(from..=elapsed).map(|(&bin, &clicks)| ObservedBin { bin_start_ms: bin * bin_ms, clicks });
        self.planner.set_observed(bins);
    }

    /// Bin `b` is final: its clicks, for the learned headroom (the
    /// planner's [`TargetPlanner::realise_final`]). Bins no floor reads
    /// again and no later bin step realises (before `b + 1` and before the
    /// floor's window at `elapsed`) are dropped.
    fn final_bin(&mut self, b: i64, elapsed: i64, bin_ms: i64) -> ObservedBin {
        let clicks = self.bin_clicks.get(&b).copied().unwrap_or(0);
        let keep_from = (b + 1).min(elapsed - FLOOR_BINS as i64 + 1);
        while let Some(entry) = self.bin_clicks.first_entry() {
            if *entry.key() >= keep_from {
                break;
            }
            entry.remove();
        }
        ObservedBin { bin_start_ms: b * bin_ms, clicks }
    }

    /// What it has learned, for the model file.
    fn to_model(&self) -> TargetModel {
        TargetModel {
            direct: self.direct.to_model(),
            audiences: self.audiences.iter().map(|a| (a.name.to_string(), a.direct.to_model())).collect(),
            generation_interval: self.generation.as_ref().map(GenerationLearner::to_model),
            r_prior: self.r_prior.as_ref().map(RPriorLearner::to_model),
            headroom: self.planner.headroom_record().map(|_| self.planner.headroom()),
        }
    }

    /// Its views of the learned waves, audiences by name.
    fn learned(&self) -> (DirectWaveView, Vec<AudienceView>) {
        let mut audiences: Vec<AudienceView> =
            self.audiences.iter().map(|a| AudienceView { audience: a.name.to_string(), direct_wave: a.direct.view() }).collect();
        audiences.sort_by(|a, b| a.audience.cmp(&b.audience));
        (self.direct.view(), audiences)
    }

    /// The wave of audience `slot` (none, or a slot it does not have: the
    /// target's own).
    fn wave(&self, audience: Option<u32>) -> &DirectWave {
        audience.and_then(|a| self.audiences.get(a as usize)).map_or(&self.direct, |a| &a.direct)
    }

    /// Adds audience `name` with the wave its target's learned values give
    /// it, taking what `model` says it learned (a loaded model file).
    fn add_audience(&mut self, name: &str, learn_weight: f64, model: Option<&model_file::DirectWaveModel>) -> u32 {
        let mut direct = DirectWave::audience_of(&self.direct, learn_weight);
        if let Some(m) = model {
            direct.load(m);
            direct.refresh_under(&self.direct, learn_weight);
        }
        self.audiences.push(Audience { name: Arc::from(name), direct });
        let slot = (self.audiences.len() - 1) as u32;
        self.audience_index.insert(Box::from(name), slot);
        slot
    }
}

/// The engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    cfg: Arc<EngineConfig>,
    bin_ms: i64,
    window_bins: i64,
    lineage_bins: i64,
    /// The longest a clicker is followed, bins (`estimator.generation_interval.follow`
    /// when the interval is learned, else the lineage window); each target's
    /// learned interval sets its own horizon below it.
    follow_bins: i64,
    keep_active_bins: i64,
    /// The configured generation interval.
    gi: GenerationInterval,
    /// What every forecast's input takes from the configuration (with the
    /// horizon and the cut generation interval).
    model: known::Model,
    forward: Option<ForwardModel>,
    prior: Prior,
    emit_estimates: bool,
    index: HashMap<Box<str>, u32, foldhash::fast::FixedState>,
    campaigns: Vec<Option<Campaign>>,
    free: Vec<u32>,
    live: usize,
    targets: Vec<Target>,
    target_index: HashMap<Box<str>, u32, foldhash::fast::FixedState>,
    max_ts: Option<i64>,
    clock_ms: Option<i64>,
    /// Bins before this one are final.
    closed: Option<i64>,
    active_until: i64,
    dedup_ids: u64,
    evict_cursor: u64,
    stats: Stats,
    work: Vec<Pending>,
    /// Parent cohorts of the offspring linked in the bin being settled.
    parents: Vec<i64>,
    scratch: Vec<f64>,
    /// What the forecast being made may know of its campaign.
    known: Known,
    /// The last forecast's per-bin click rates (reused between forecasts).
    path: Vec<f64>,
    /// The last bin stepped by [`Engine::advance_detect`], whose forecasts
    /// and plans [`Engine::advance_plan`] has not made yet.
    plan_pending: Option<i64>,
    /// Campaigns stepped in that bin.
    stepped: Vec<u32>,
    /// Its estimate signals (they sort after its scale decisions).
    deferred: Vec<Signal>,
    /// The campaign of each of `deferred`, whose forecast fills it in.
    deferred_slots: Vec<u32>,
    /// Idle eviction due once the pending plan is made.
    evict_pending: Option<i64>,
    /// Name hashes of the most recently forgotten campaigns (at most
    /// `limits.max_campaigns`), to count those that come back.
    forgotten: HashSet<u64, foldhash::fast::FixedState>,
    /// The same hashes, oldest first.
    forgotten_order: VecDeque<u64>,
    /// What a loaded model file says targets not seen yet learned, by name:
    /// taken by [`Engine::target_slot`] when the target first appears, and
    /// written back as it is by [`Engine::learned_model`] otherwise.
    loaded: BTreeMap<String, TargetModel>,
    /// Targets are also planned elsewhere: each plan's input is exported as
    /// a [`DemandShare`] ([`Engine::with_shared_plans`]).
    shared_plans: bool,
    /// The shares exported and not yet taken ([`Engine::take_shares`]).
    shares: Vec<DemandShare>,
    /// The horizons (bins) the model error is learned at.
    error_horizons: Vec<usize>,
    /// The model error of campaigns without a target (`forecast.learn_error`).
    untargeted_error: Option<ErrorLearner>,
    /// Forecasts realized in the bin being stepped (reused).
    realized: Vec<Realized>,
}

/// Why an engine could not be built from a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`: {reason}")]
pub struct EngineConfigError {
    /// The configuration key at fault.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl Engine {
    /// Builds an engine from a validated configuration (an [`EngineConfig`],
    /// or the application's `Config`, which converts into one).
    pub fn new(cfg: impl Into<EngineConfig>) -> Result<Engine, EngineConfigError> {
        let cfg = Arc::new(cfg.into());
        let e = &cfg.estimator;
        let bin_ms = e.bin.ms();
        let bins = |ms: i64| ms as f64 / bin_ms as f64;
        let gi = GenerationInterval::from_mean_sd_bins(bins(e.generation_interval.mean.ms()), bins(e.generation_interval.sd.ms()))
            .map_err(|reason| EngineConfigError { key: "estimator.generation_interval", reason })?;
        let forward = if e.forward.enabled {
            let delay = GenerationInterval::from_mean_sd_bins(bins(e.forward.delay.mean.ms()), bins(e.forward.delay.sd.ms()))
                .map_err(|reason| EngineConfigError { key: "estimator.forward.delay", reason })?;
            Some(ForwardModel { delay, click_prior: e.forward.click_prior, click_prior_weight: e.forward.click_prior_weight })
        } else {
            None
        };
        let window_bins = i64::from(cfg.window_in_bins());
        let lineage_bins = i64::from(cfg.lineage_window_in_bins());
        let follow_bins =
            if e.generation_interval.learn { (e.generation_interval.follow.ms() / bin_ms).max(lineage_bins) } else { lineage_bins };
        // The forecast covers at least the longest lead of any target (a
        // time-phased plan reads the path that far ahead).
        let startup_ms = cfg.targets.values().filter_map(|o| o.startup).map(|d| d.ms()).fold(cfg.planner.startup.ms(), i64::max);
        let lead_bins = (startup_ms + e.allowed_lateness.ms() + bin_ms + bin_ms - 1) / bin_ms + 1;
        let horizon_bins = (cfg.forecast.horizon.ms() / bin_ms).max(lead_bins).max(1) as usize;
        let cooldown_bins = cfg.planner.cooldown.ms() / bin_ms + 1;
        let keep_active_bins = window_bins.max(lineage_bins).max(gi.len() as i64) + horizon_bins as i64 + cooldown_bins;
        let model = known::Model {
            bin_ms,
            gi: forecast::truncated_gi(gi.weights()),
            horizon_bins,
            curve: ResponseCurve::new(cfg.forecast.response.mean.ms() as f64, cfg.forecast.response.sd.ms() as f64),
            click_through: (cfg.forecast.click_through, cfg.forecast.click_through_weight),
        };
        let error_horizons = forecast_error::learned_horizons(horizon_bins);
        Ok(Engine {
            untargeted_error: cfg.forecast.learn_error.then(|| ErrorLearner::new(&error_horizons)),
            error_horizons,
            realized: Vec::new(),
            bin_ms,
            model,
            window_bins,
            lineage_bins,
            follow_bins,
            keep_active_bins,
            gi,
            forward,
            prior: Prior { mean: e.prior_mean, sd: e.prior_sd },
            emit_estimates: false,
            index: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(1)),
            campaigns: Vec::new(),
            free: Vec::new(),
            live: 0,
            targets: Vec::new(),
            target_index: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(2)),
            max_ts: None,
            clock_ms: None,
            closed: None,
            active_until: i64::MIN,
            dedup_ids: 0,
            evict_cursor: 0x5eed,
            stats: Stats::default(),
            work: Vec::new(),
            parents: Vec::new(),
            scratch: Vec::new(),
            known: Known::default(),
            path: Vec::new(),
            plan_pending: None,
            stepped: Vec::new(),
            deferred: Vec::new(),
            deferred_slots: Vec::new(),
            evict_pending: None,
            forgotten: HashSet::with_hasher(foldhash::fast::FixedState::with_seed(3)),
            forgotten_order: VecDeque::new(),
            loaded: BTreeMap::new(),
            shared_plans: false,
            shares: Vec::new(),
            cfg,
        })
    }

    /// Also emit a `floodgate.estimate` per active campaign per bin step.
    pub fn with_estimates(mut self, on: bool) -> Self {
        self.emit_estimates = on;
        self
    }

    /// Targets are also planned elsewhere, from the demand of several
    /// engines (`floodgate run` with `kafka.demand_topic`): at each bin
    /// step and send, besides planning its own campaigns (its `scale_ahead`
    /// signals are unchanged), the engine exports what each target's plan
    /// is made from, a [`DemandShare`] per target it planned (every target
    /// it knows at a bin step; a send's target), for [`Engine::take_shares`].
    /// A [`shared_plan::SharedPlans`] fed the shares of every engine plans
    /// each target as one engine holding every campaign would.
    pub fn with_shared_plans(mut self, on: bool) -> Self {
        self.shared_plans = on;
        self
    }

    /// The demand shares exported since the last call (see
    /// [`Engine::with_shared_plans`]), in the order they were made.
    pub fn take_shares(&mut self) -> Vec<DemandShare> {
        std::mem::take(&mut self.shares)
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Campaigns tracked now.
    pub fn campaigns_tracked(&self) -> usize {
        self.live
    }

    /// Campaigns with an open viral episode.
    pub fn campaigns_viral(&self) -> usize {
        self.campaigns.iter().flatten().filter(|c| c.detector.is_viral()).count()
    }

    /// Latest event time seen (ms).
    pub fn max_event_ms(&self) -> Option<i64> {
        self.max_ts
    }

    /// Event time up to which bins are final (ms), once any bin closed.
    pub fn final_until_ms(&self) -> Option<i64> {
        self.closed.map(|c| c * self.bin_ms)
    }

    /// The watermark a single ordered source implies: latest event time minus
    /// the allowed lateness.
    pub fn natural_watermark(&self) -> Option<i64> {
        self.max_ts.map(|m| m - self.cfg.estimator.allowed_lateness.ms())
    }

    /// Sets the reference time for the `future` check (a live source passes
    /// its wall clock). Without one, events more than `estimator.max_future`
    /// ahead of the latest event time are refused, and the driver decides
    /// with [`Engine::accept_jump`] whether a refused time was a real jump.
    pub fn set_clock(&mut self, now_ms: Option<i64>) {
        self.clock_ms = now_ms;
    }

    /// Accepts that event time really jumped to `ts_ms` (two events agree on
    /// it), so events near it are no longer refused as `future`.
    pub fn accept_jump(&mut self, ts_ms: i64) {
        self.max_ts = Some(self.max_ts.map_or(ts_ms, |m| m.max(ts_ms)));
    }

    /// Counts one event. Signals caused directly by it (a send's
    /// `scale_ahead`) are appended to `out`. Never advances the watermark.
    /// An event too far ahead is not applied ([`FarAhead`]).
    pub fn apply_event(&mut self, ev: &Event<'_>, out: &mut Vec<Signal>) -> Result<Applied, FarAhead> {
        self.advance_plan(out);
        if let Some(m) = self.clock_ms.or(self.max_ts) {
            let max_future_ms = self.cfg.estimator.max_future.ms();
            if ev.ts_ms > m.saturating_add(max_future_ms) {
                return Err(FarAhead { ts_ms: ev.ts_ms, reference_ms: m, reference_is_clock: self.clock_ms.is_some(), max_future_ms });
            }
        }
        let bin = bin_of(ev.ts_ms, self.bin_ms);
        if let Some(c) = self.closed {
            if bin < c {
                self.stats.late += 1;
                return Ok(Applied::Late);
            }
        }
        let Some(slot) = self.campaign_slot(&ev.campaign, bin) else {
            self.stats.shed_campaigns += 1;
            return Ok(Applied::Shed);
        };
        if let Some(id) = &ev.id {
            let room = self.dedup_ids < u64::from(self.cfg.limits.max_dedup_ids);
            match slot_mut(&mut self.campaigns, slot).dedup.check(bin, person_key(id), room) {
                Seen::Before => {
                    self.stats.duplicates += 1;
                    return Ok(Applied::Duplicate);
                }
                Seen::New => self.dedup_ids += 1,
                Seen::NoRoom => self.stats.shed_dedup_ids += 1,
            }
        }
        self.max_ts = Some(self.max_ts.map_or(ev.ts_ms, |m| m.max(ev.ts_ms)));
        self.active_until = self.active_until.max(bin + self.keep_active_bins);
        let target = match &ev.target {
            Some(t) if self.campaign_mut(slot).target.is_none() => Some(self.target_slot(t)),
            _ => None,
        };
        let c = slot_mut(&mut self.campaigns, slot);
        if ev.target.is_some() {
            c.target_since_bin = c.target_since_bin.min(bin);
        }
        c.last_event_ms = c.last_event_ms.max(ev.ts_ms);
        c.last_event_bin = c.last_event_bin.max(bin);
        let Some(counts) = c.bins.get_mut(bin) else {
            // Before this campaign's retained bins: only possible for a bin
            // that is already final, handled above.
            self.stats.late += 1;
            return Ok(Applied::Late);
        };
        let mut pending = None;
        match ev.kind {
            EventKind::Send => {
                self.stats.sends += 1;
            }
            EventKind::Click => {
                if ev.generation == 0 {
                    counts.imported += 1;
                    c.direct_clicks += 1;
                } else {
                    counts.local += 1;
                }
                c.clicks += 1;
                self.stats.clicks += 1;
                let person = ev.person.as_deref().map(person_key);
                let parent = ev.parent.as_deref().map(person_key);
                if person.is_some() || parent.is_some() {
                    let what = PendingKind::Click { has_person: person.is_some(), has_parent: parent.is_some() };
                    pending = Some(Pending { bin, what, person: person.unwrap_or(0), other: parent.unwrap_or(0) });
                }
            }
            EventKind::Forward => {
                self.stats.forwards += 1;
                if let Some(p) = ev.person.as_deref() {
                    pending = Some(Pending { bin, what: PendingKind::Forward, person: person_key(p), other: ev.recipients });
                }
            }
        }
        if let Some(p) = pending {
            c.pending.push(p);
        }
        if let Some(t) = target {
            self.attach_target(slot, t);
        }
        if let Some(t) = self.campaign_mut(slot).target {
            if ev.kind == EventKind::Click {
                let target = &mut self.targets[t as usize];
                target.clicks += 1;
                *target.bin_clicks.entry(bin).or_insert(0) += 1;
            }
        }
        self.stats.accepted += 1;
        if ev.kind == EventKind::Send {
            if let Some(a) = &ev.audience {
                self.name_audience(slot, a, bin);
            }
            self.campaign_mut(slot).add_send(SendRecord { ts_ms: ev.ts_ms, recipients: ev.recipients });
            self.plan_send(slot, ev.ts_ms, out);
        }
        Ok(Applied::Accepted)
    }

    /// Declares that no event earlier than `watermark_ms` will be applied any
    /// more (beyond that, they count as late). Closes every bin that ends at
    /// or before the watermark, estimating, detecting and planning at each
    /// bin step. Signals are appended to `out` in a deterministic order.
    ///
    /// The same as [`Engine::advance_detect`] followed by
    /// [`Engine::advance_plan`].
    pub fn advance_to(&mut self, watermark_ms: i64, out: &mut Vec<Signal>) {
        self.advance_detect(watermark_ms, out);
        self.advance_plan(out);
    }

    /// The first half of [`Engine::advance_to`], for drivers that hand
    /// signals on as soon as they are final: closes the bins, but of the last
    /// bin stepped only settles, estimates and detects. Its `viral_onset` and
    /// `viral_subsided` are in `out` when this returns, before any capacity
    /// forecast of that bin is computed (the forecasts of every live campaign
    /// are most of a bin step's cost, and an onset does not depend on them).
    /// [`Engine::advance_plan`] then makes the forecasts and plans; any other
    /// call that changes the engine makes them first, so the engine never
    /// skips them. Taken together, the two halves emit exactly what
    /// `advance_to` does, in the same order.
    pub fn advance_detect(&mut self, watermark_ms: i64, out: &mut Vec<Signal>) {
        self.advance_plan(out);
        let target = bin_of(watermark_ms, self.bin_ms);
        let Some(max_ts) = self.max_ts else { return };
        let mut from = match self.closed {
            Some(c) => c,
            None => self.campaigns.iter().flatten().map(|c| c.bins.base()).min().unwrap_or(bin_of(max_ts, self.bin_ms)),
        };
        if target <= from {
            if self.closed.is_none() {
                self.closed = Some(from.min(target));
            }
            return;
        }
        let start = out.len();
        while from < target {
            if from > self.active_until {
                // Nothing is active any more: the remaining bins are empty.
                break;
            }
            if self.plan_pending.is_some() {
                // Not the last bin: its plan comes before the next bin's step.
                self.finish_plan(out);
            }
            self.detect_bin(from, out);
            self.plan_pending = Some(from);
            from += 1;
        }
        self.closed = Some(target);
        if target % 16 == 0 || target - 1 > self.active_until {
            self.evict_pending = Some(target);
        }
        out[start..].sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }

    /// The second half of [`Engine::advance_to`]: the forecasts and plans
    /// (and estimate signals) of the bin [`Engine::advance_detect`] left
    /// pending, if any.
    pub fn advance_plan(&mut self, out: &mut Vec<Signal>) {
        if self.plan_pending.is_none() && self.evict_pending.is_none() {
            return;
        }
        let start = out.len();
        self.finish_plan(out);
        if let Some(t) = self.evict_pending.take() {
            self.evict_idle(t);
        }
        out[start..].sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }

    fn finish_plan(&mut self, out: &mut Vec<Signal>) {
        if let Some(b) = self.plan_pending.take() {
            self.plan_bin(b, out);
        }
        self.deferred_slots.clear();
        out.append(&mut self.deferred);
    }

    /// End of input: closes every bin that has data (and the planning
    /// horizon after it), as if the watermark had passed them all.
    pub fn flush(&mut self, out: &mut Vec<Signal>) {
        if let Some(m) = self.max_ts {
            let end = (bin_of(m, self.bin_ms) + 1) * self.bin_ms;
            self.advance_to(end, out);
        }
    }

    /// Current plan of every target, by name.
    pub fn targets(&self) -> Vec<TargetView> {
        let mut v: Vec<TargetView> = self
            .targets
            .iter()
            .map(|t| {
                let (direct_wave, audiences) = if self.cfg.forecast.learn { t.learned() } else { (t.direct.view(), Vec::new()) };
                TargetView {
                    target: t.planner.name().to_string(),
                    desired_replicas: t.planner.current(),
                    forecast_rps: t.planner.forecast_rps(),
                    headroom: t.planner.headroom(),
                    headroom_learned: t.planner.headroom_record().map(|(bins, mean_overload)| HeadroomView { bins, mean_overload }),
                    clicks: t.clicks,
                    direct_wave: self.cfg.forecast.learn.then_some(direct_wave),
                    audiences,
                    generation_interval: t.generation.as_ref().map(GenerationLearner::view),
                    forecast_error: t.error.as_ref().map(|e| e.view(self.bin_ms)),
                }
            })
            .collect();
        v.sort_by(|a, b| a.target.cmp(&b.target));
        v
    }

    /// Everything the engine has learned (`model_file.rs`): every target's
    /// and audience's delay sums and click-through pool, and what a loaded
    /// model holds for targets this engine has not seen. What campaigns
    /// still running will teach (their delay bins not complete yet) is not
    /// in it.
    pub fn learned_model(&self) -> LearnedModel {
        let mut m = LearnedModel::empty(self.bin_ms);
        m.targets = self.loaded.clone();
        for t in &self.targets {
            m.targets.insert(t.planner.name().to_string(), t.to_model());
        }
        m
    }

    /// Starts from a learned model (what [`Engine::learned_model`] of an
    /// engine with the same `estimator.bin` gave, e.g. read from a file):
    /// each target takes its learned state when it first appears, with the
    /// priors of this engine's configuration. Only before the first event;
    /// the model must be of this version and bin, with arrays of the right
    /// length and at most `limits.max_audiences_per_target` audiences per
    /// target (the error names the field).
    pub fn load_model(&mut self, m: &LearnedModel) -> Result<(), ModelError> {
        m.check()?;
        if m.bin_ms != self.bin_ms {
            return Err(ModelError::Bin { model: m.bin_ms, config: self.bin_ms });
        }
        if self.max_ts.is_some() || !self.targets.is_empty() {
            return Err(ModelError::NotFresh);
        }
        let max = self.cfg.limits.max_audiences_per_target;
        for (name, t) in &m.targets {
            if t.audiences.len() > max as usize {
                return Err(ModelError::TooManyAudiences { target: name.clone(), found: t.audiences.len(), max });
            }
        }
        self.loaded = m.targets.clone();
        Ok(())
    }

    /// What every target has learned, by name: the targets seen (as
    /// [`Engine::targets`] shows them) and those only in a loaded model.
    pub fn learned_views(&self) -> Vec<LearnedView> {
        let view = |target: String, t: &Target| {
            let (direct_wave, audiences) = t.learned();
            let generation_interval = t.generation.as_ref().map(GenerationLearner::view);
            let r_prior = t.r_prior.as_ref().map(|p| RPriorView { mean: p.prior().mean, exposure: p.exposure() });
            LearnedView { target, direct_wave, audiences, generation_interval, r_prior }
        };
        let mut v: Vec<LearnedView> = self.targets.iter().map(|t| view(t.planner.name().to_string(), t)).collect();
        for (name, m) in &self.loaded {
            v.push(view(name.clone(), &self.new_target(name, Some(m))));
        }
        v.sort_by(|a, b| a.target.cmp(&b.target));
        v
    }

    /// The `k` campaigns with the highest forecast and R: viral first, then
    /// by posterior mean of R, then by forecast.
    pub fn top_campaigns(&self, k: usize) -> Vec<CampaignView> {
        let mut all: Vec<&Campaign> = self.campaigns.iter().flatten().collect();
        let score = |c: &Campaign| -> f64 { c.last.map_or(0.0, |e| e.posterior.mean()) };
        all.sort_by(|a, b| {
            b.detector
                .is_viral()
                .cmp(&a.detector.is_viral())
                .then(score(b).total_cmp(&score(a)))
                .then(b.demand_rps.total_cmp(&a.demand_rps))
                .then(a.name.cmp(&b.name))
        });
        all.into_iter().take(k).map(|c| self.view(c)).collect()
    }

    fn view(&self, c: &Campaign) -> CampaignView {
        CampaignView {
            campaign: c.name.to_string(),
            target: c.target.map(|t| self.targets[t as usize].planner.name().to_string()),
            r: c.last.map(|e| summary(&e.posterior)),
            p_viral: c.last.map(|e| e.p_viral),
            method: c.last.map(|e| e.method.as_str()),
            viral: c.detector.is_viral(),
            local_cases: c.last.map_or(0, |e| e.local_cases),
            clicks: c.clicks,
            forecast_rps: c.demand_rps,
            last_event: if c.last_event_ms == i64::MIN { String::new() } else { rfc3339(c.last_event_ms) },
        }
    }

    fn campaign_mut(&mut self, slot: u32) -> &mut Campaign {
        slot_mut(&mut self.campaigns, slot)
    }

    fn campaign_slot(&mut self, name: &str, bin: i64) -> Option<u32> {
        if let Some(&slot) = self.index.get(name) {
            let closed = self.closed;
            let (lineage_bins, keep) = (self.lineage_bins, self.keep_bins());
            let c = slot_mut(&mut self.campaigns, slot);
            let follow_bins = follow_bins_of(&self.targets, c.target, lineage_bins);
            if let Some(cl) = closed {
                if c.closed < cl {
                    // Woken from dormancy: skip the empty bins (a dormant
                    // campaign's cohorts teach the prior of R nothing: this
                    // happens on arrival, not as a bin closes).
                    c.closed = cl;
                    self.dedup_ids = self.dedup_ids.saturating_sub(c.dedup.forget_before(cl) as u64);
                    c.lineage.expire_before(cl - lineage_bins, |_, _| {});
                    c.lineage.unfollow_before(cl - follow_bins);
                    c.bins.trim_before(cl - keep);
                }
            }
            return Some(slot);
        }
        if self.live >= self.cfg.limits.max_campaigns as usize && !self.evict_for_new() {
            return None;
        }
        // Bins from the final frontier on must be placeable; before the
        // first watermark, anything within the allowed lateness of this event.
        let lateness_bins = self.cfg.estimator.allowed_lateness.ms() / self.bin_ms + 1;
        let closed = self.closed.unwrap_or(bin - lateness_bins);
        let name: Arc<str> = Arc::from(name);
        let c = Campaign::new(name.clone(), bin, closed, self.cfg.limits.max_clickers_per_campaign as usize);
        let slot = match self.free.pop() {
            Some(s) => {
                self.campaigns[s as usize] = Some(c);
                s
            }
            None => {
                self.campaigns.push(Some(c));
                (self.campaigns.len() - 1) as u32
            }
        };
        if !self.forgotten.is_empty() && self.forgotten.remove(&name_hash(&name)) {
            self.stats.returned_campaigns += 1;
        }
        self.index.insert(Box::from(&*name), slot);
        self.live += 1;
        self.stats.campaigns_seen += 1;
        Some(slot)
    }

    /// The table is full: make room for a new campaign by evicting the
    /// campaign with the least traffic among a few sampled slots (an
    /// approximated least-frequently-used policy, as Redis does for its keys:
    /// O(1) per admission, and a flood of one-event campaign ids evicts
    /// itself while campaigns with real traffic stay). A candidate must have
    /// at most [`EVICTABLE_CLICKS`] clicks, no send and no open viral episode;
    /// otherwise the new campaign is shed. Returns whether a slot was freed.
    fn evict_for_new(&mut self) -> bool {
        const SAMPLES: usize = 16;
        let n = self.campaigns.len();
        if n == 0 {
            return false;
        }
        let mut best: Option<(u64, i64, usize)> = None;
        for i in 0..SAMPLES {
            self.evict_cursor =
                self.evict_cursor.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407 + i as u64);
            let slot = (self.evict_cursor >> 33) as usize % n;
            let Some(c) = &self.campaigns[slot] else { continue };
            if c.clicks > EVICTABLE_CLICKS || c.detector.is_viral() || !c.sends.is_empty() {
                continue;
            }
            let key = (c.clicks, c.last_event_ms, slot);
            if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some(key);
            }
        }
        let Some((_, _, slot)) = best else { return false };
        self.remove_campaign(slot);
        self.stats.shed_campaigns_evicted += 1;
        true
    }

    fn remove_campaign(&mut self, slot: usize) {
        if let Some(mut c) = self.campaigns[slot].take() {
            // What the campaign taught its target, up to the bins closed.
            if let (Some(t), Some(d), Some(closed)) = (c.target, c.delays.as_deref_mut(), self.closed) {
                if self.cfg.forecast.learn && c.target_since_bin < closed {
                    let now = closed * self.bin_ms;
                    let target = &mut self.targets[t as usize];
                    let audience = d.audience.and_then(|a| target.audiences.get_mut(a as usize)).map(|a| &mut a.direct);
                    target.direct.observe_bin(audience, d, now, now, 0);
                }
            }
            self.index.remove(&*c.name);
            self.dedup_ids = self.dedup_ids.saturating_sub(c.dedup.len() as u64);
            if let Some(t) = c.target {
                self.targets[t as usize].planner.remove(&c.name);
            }
            self.free.push(slot as u32);
            self.live -= 1;
        }
    }

    fn target_slot(&mut self, name: &str) -> u32 {
        if let Some(&t) = self.target_index.get(name) {
            return t;
        }
        let name = if self.targets.len() + 1 >= self.cfg.limits.max_targets as usize { "other" } else { name };
        if let Some(&t) = self.target_index.get(name) {
            return t;
        }
        let model = self.loaded.remove(name);
        let target = self.new_target(name, model.as_ref());
        self.targets.push(target);
        let t = (self.targets.len() - 1) as u32;
        self.target_index.insert(Box::from(name), t);
        t
    }

    /// A target `name` that starts from the configured direct wave, or from
    /// what `model` says it learned (its audiences in name order).
    fn new_target(&self, name: &str, model: Option<&TargetModel>) -> Target {
        let timing = PlanTiming { bin_ms: self.bin_ms, decision_delay_ms: self.cfg.estimator.allowed_lateness.ms() };
        let planner = TargetPlanner::new(Arc::from(name), self.cfg.planner_for(name), timing);
        let f = &self.cfg.forecast;
        let g = &self.cfg.estimator.generation_interval;
        let mut direct = DirectWave::new(&self.model.curve, f.learn_weight, f.click_through, f.click_through_weight);
        if let Some(m) = model {
            direct.load(&m.direct);
        }
        let mut t = Target {
            planner,
            clicks: 0,
            bin_clicks: BTreeMap::new(),
            direct,
            generation: g.learn.then(|| GenerationLearner::new(&self.gi, self.bin_ms, g.learn_weight, self.lineage_bins, self.follow_bins)),
            r_prior: self.cfg.estimator.learn_prior.then(|| RPriorLearner::new(self.prior)),
            error: f.learn_error.then(|| ErrorLearner::new(&self.error_horizons)),
            audiences: Vec::new(),
            audience_index: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(3)),
        };
        for (a, m) in model.iter().flat_map(|m| &m.audiences) {
            t.add_audience(a, f.learn_weight, Some(m));
        }
        if let (Some(g), Some(sums)) = (t.generation.as_mut(), model.and_then(|m| m.generation_interval.as_ref())) {
            g.load(sums);
        }
        if let (Some(p), Some(sums)) = (t.r_prior.as_mut(), model.and_then(|m| m.r_prior)) {
            p.load(sums);
        }
        if let Some(h) = model.and_then(|m| m.headroom) {
            t.planner.load_headroom(h);
        }
        t
    }

    /// A send of the campaign in `slot`, in bin `bin`, names audience
    /// `name`: the campaign takes the audience of the first send (in arrival
    /// order) that names one, as a slot of its target's (made if new and
    /// there is room: `limits.max_audiences_per_target`; otherwise the
    /// campaign stays at its target's level). Only with `forecast.learn`.
    fn name_audience(&mut self, slot: u32, name: &str, bin: i64) {
        let max = self.cfg.limits.max_audiences_per_target as usize;
        let learn_weight = self.cfg.forecast.learn_weight;
        let learn = self.cfg.forecast.learn;
        let c = slot_mut(&mut self.campaigns, slot);
        let first = c.audience_since_bin == i64::MAX;
        c.audience_since_bin = c.audience_since_bin.min(bin);
        let (true, true, Some(t)) = (first, learn, c.target) else { return };
        let target = &mut self.targets[t as usize];
        let audience = match target.audience_index.get(name) {
            Some(&a) => Some(a),
            None if target.audiences.len() < max => Some(target.add_audience(name, learn_weight, None)),
            None => None,
        };
        slot_mut(&mut self.campaigns, slot).audience = audience;
    }

    fn attach_target(&mut self, slot: u32, t: u32) {
        let c = slot_mut(&mut self.campaigns, slot);
        c.target = Some(t);
        let record = demand_record(c, c.last_event_ms);
        self.targets[t as usize].planner.record(record);
    }

    /// Forgets the silent campaigns that are over: those the model expects
    /// fewer than `limits.forget_below` more clicks of (`lifetime.rs`), and
    /// any silent for `limits.idle_timeout`. A campaign is silent once its
    /// last event is further back than the bins an estimate or plan reads.
    fn evict_idle(&mut self, closed: i64) {
        let cutoff = closed * self.bin_ms - self.cfg.limits.idle_timeout.ms();
        for slot in 0..self.campaigns.len() {
            let (silent, timed_out) = match &self.campaigns[slot] {
                Some(c) => (c.last_event_bin + self.keep_active_bins < closed, c.last_event_ms < cutoff),
                None => (false, false),
            };
            if !silent || !(timed_out || self.expected_remaining(slot as u32, closed) < self.cfg.limits.forget_below) {
                continue;
            }
            if let Some(c) = &self.campaigns[slot] {
                let h = name_hash(&c.name);
                if self.forgotten.insert(h) {
                    self.forgotten_order.push_back(h);
                }
                while self.forgotten_order.len() > self.cfg.limits.max_campaigns as usize {
                    if let Some(old) = self.forgotten_order.pop_front() {
                        self.forgotten.remove(&old);
                    }
                }
            }
            self.remove_campaign(slot);
            self.stats.evicted_campaigns += 1;
        }
    }

    /// The clicks the model still expects of the campaign in `slot` at the
    /// end of the closed bins (`lifetime.rs`).
    fn expected_remaining(&mut self, slot: u32, closed: i64) -> f64 {
        let Some(c) = self.campaigns[slot as usize].as_ref() else { return 0.0 };
        let (last_bin, now_ms) = (closed - 1, closed * self.bin_ms);
        let target = c.target_at(last_bin);
        let gi = generation_of(&self.targets, &self.gi, target);
        let (curve, click_through) = direct_wave_of(&self.targets, &self.model, self.cfg.forecast.learn, target, c.audience_at(last_bin));
        self.known.fill(c, last_bin, 0, now_ms);
        let input = self.known.input(&self.model, &self.model.gi, now_ms, last_bin, 0.0, click_through);
        let p = forecast::click_through(&input, curve);
        let direct = c.sends.iter().map(|s| s.recipients as f64 * p * (1.0 - curve.cdf((now_ms - s.ts_ms) as f64))).sum();
        let exposure = if c.lineage.clickers() > 0 {
            c.lineage.followed_cohorts().map(|(cohort, n)| f64::from(n) * (1.0 - gi.lineage.cdf((last_bin - cohort) as usize))).sum()
        } else {
            c.bins.iter_range(i64::MIN, last_bin).map(|(t, x)| x.incidence() * (1.0 - gi.renewal.cdf((last_bin - t) as usize))).sum()
        };
        let prior = prior_of(&self.targets, self.prior, target);
        let r = c.last.map_or(prior.mean, |e| e.posterior.mean());
        lifetime::Remaining { direct, exposure }.expected_clicks(r)
    }

    /// First half of a bin step (bin `b` became final): every active
    /// campaign settles, estimates and detects.
    fn detect_bin(&mut self, b: i64, out: &mut Vec<Signal>) {
        let time_ms = (b + 1) * self.bin_ms;
        self.stepped.clear();
        for slot in 0..self.campaigns.len() {
            let active = matches!(&self.campaigns[slot], Some(c) if c.closed <= b && c.last_event_bin != i64::MIN && b <= c.last_event_bin + self.keep_active_bins);
            if !active {
                continue;
            }
            self.stepped.push(slot as u32);
            self.detect_campaign(slot as u32, b, time_ms, out);
        }
        if self.cfg.forecast.learn {
            let w = self.cfg.forecast.learn_weight;
            for t in &mut self.targets {
                t.direct.refresh();
                for a in &mut t.audiences {
                    a.direct.refresh_under(&t.direct, w);
                }
            }
        }
        for t in &mut self.targets {
            if let Some(g) = t.generation.as_mut() {
                g.step(b);
                g.refresh();
            }
            if let Some(p) = t.r_prior.as_mut() {
                p.commit();
            }
            if let Some(e) = t.error.as_mut() {
                e.commit();
            }
        }
        if let Some(e) = self.untargeted_error.as_mut() {
            e.commit();
        }
    }

    /// Second half: the campaigns stepped forecast, then every target plans.
    fn plan_bin(&mut self, b: i64, out: &mut Vec<Signal>) {
        let time_ms = (b + 1) * self.bin_ms;
        let stepped = std::mem::take(&mut self.stepped);
        let keep = self.keep_bins();
        let elapsed = self.max_ts.map_or(b, |m| bin_of(m, self.bin_ms) - 1);
        // The bins every engine stepping bin `b` has seen elapse: its
        // watermark passed the end of `b` + the allowed lateness.
        let seen = b + self.cfg.estimator.allowed_lateness.ms().div_euclid(self.bin_ms);
        for &slot in &stepped {
            self.forecast(slot, seen, time_ms);
            self.campaign_mut(slot).bins.trim_before(b + 1 - keep);
        }
        self.stepped = stepped;
        let (mut deferred, slots) = (std::mem::take(&mut self.deferred), std::mem::take(&mut self.deferred_slots));
        for (signal, &slot) in deferred.iter_mut().zip(&slots) {
            if let Signal::Estimate(e) = signal {
                e.forecast = self.estimate_forecast(slot, b, time_ms);
            }
        }
        (self.deferred, self.deferred_slots) = (deferred, slots);
        for t in &mut self.targets {
            let final_bin = t.final_bin(b, elapsed, self.bin_ms);
            t.refresh_floor(elapsed, self.bin_ms);
            plan_or_share(t, self.shared_plans, &mut self.shares, time_ms, ScaleReason::Forecast, Some(final_bin), out);
        }
    }

    fn detect_campaign(&mut self, slot: u32, b: i64, time_ms: i64, out: &mut Vec<Signal>) {
        let mut work = std::mem::take(&mut self.work);
        let mut parents = std::mem::take(&mut self.parents);
        parents.clear();
        let (forgotten, target, matured) = {
            let lineage_bins = self.lineage_bins;
            let c = slot_mut(&mut self.campaigns, slot);
            // Bins skipped while dormant hold nothing pending.
            c.settle_bin(b, &mut work, &mut parents);
            c.closed = b + 1;
            let target = c.target_at(b);
            let follow_bins = follow_bins_of(&self.targets, target, lineage_bins);
            let gi = generation_of(&self.targets, &self.gi, target).lineage;
            // Cohorts leaving the lineage window: what the target's prior of
            // R learns from, if the campaign's offspring are linked (its
            // last estimate was a lineage one).
            let linked = c.last.is_some_and(|e| matches!(e.method, Method::Lineage | Method::LineageForward));
            let (mut offspring, mut exposure) = (0u64, 0.0);
            c.lineage.expire_before(b + 1 - lineage_bins, |cohort, sums| {
                if linked {
                    offspring += sums.y;
                    exposure += sums.n as f64 * gi.cdf((b - cohort) as usize);
                }
            });
            c.lineage.unfollow_before(b + 1 - follow_bins);
            (c.dedup.forget_before(b + 1), target, (offspring, exposure))
        };
        if let Some(p) = target.and_then(|t| self.targets[t as usize].r_prior.as_mut()) {
            if matured.1 > 0.0 {
                p.add_cohort(matured.0, matured.1);
            }
        }
        if let Some(g) = target.and_then(|t| self.targets[t as usize].generation.as_mut()) {
            for &cohort in &parents {
                g.child(cohort);
            }
        }
        self.work = work;
        self.parents = parents;
        self.dedup_ids = self.dedup_ids.saturating_sub(forgotten as u64);
        self.realize_forecasts(slot, b);
        if self.cfg.forecast.learn {
            self.learn_direct_wave(slot, b);
        }
        self.close_infectivity(slot, b);
        let estimate = self.estimate(slot, b, time_ms);
        let emit_estimates = self.emit_estimates;
        let c = slot_mut(&mut self.campaigns, slot);
        let (p, local) = estimate.map_or((0.0, 0), |e| (e.p_viral, e.local_cases));
        let transition = c.detector.step(&self.cfg.detector, p, local);
        c.last = estimate.or(c.last);
        if !emit_estimates && transition == Transition::None {
            return;
        }
        let target_name = c.target_at(b).map(|t| self.targets[t as usize].planner.name().clone());
        if let Some(e) = estimate.filter(|_| emit_estimates) {
            self.deferred.push(Signal::Estimate(Estimate {
                campaign: c.name.clone(),
                target: target_name.clone(),
                time_ms,
                window_start: rfc3339(e.window_start_ms),
                r: summary(&e.posterior),
                r_case: case_r(&e.posterior, e.dispersion, e.clickers),
                p_viral: e.p_viral,
                local_cases: e.local_cases,
                imported_cases: e.imported_cases,
                method: e.method,
                dispersion: e.dispersion,
                forecast: Forecast::default(),
            }));
            self.deferred_slots.push(slot);
        }
        let episode = |n: u32, c: &Campaign| {
            let e = c.last;
            Episode {
                campaign: c.name.clone(),
                target: target_name.clone(),
                time_ms,
                episode: n,
                r: e.map_or(RSummary { mean: 0.0, sd: 0.0, lo: 0.0, hi: 0.0 }, |e| summary(&e.posterior)),
                p_viral: p,
                local_cases: local,
                method: e.map_or(Method::Renewal, |e| e.method),
            }
        };
        match transition {
            Transition::Onset(n) => out.push(Signal::ViralOnset(episode(n, c))),
            Transition::Subsided(n) => out.push(Signal::ViralSubsided(episode(n, c))),
            Transition::None => {}
        }
    }

    /// Bin `b` of the campaign in `slot` has closed: its forecasts whose
    /// horizon ended with it are compared with its clicks, and teach their
    /// target's model error (`forecast_error.rs`), applied at the end of
    /// the bin step.
    fn realize_forecasts(&mut self, slot: u32, b: i64) {
        let Some(Some(c)) = self.campaigns.get_mut(slot as usize) else { return };
        let Some(p) = c.forecasts.as_deref_mut() else { return };
        let clicks = c.bins.get(b).map_or(0, |x| u64::from(x.local) + u64::from(x.imported));
        let mut realized = std::mem::take(&mut self.realized);
        realized.clear();
        p.close_bin(b, clicks, &self.error_horizons, &mut realized);
        for &(target, k, mean, var, y) in &realized {
            let learner = match target {
                Some(t) => self.targets.get_mut(t as usize).and_then(|t| t.error.as_mut()),
                None => self.untargeted_error.as_mut(),
            };
            if let Some(l) = learner {
                l.observe(k, mean, var, y);
            }
        }
        self.realized = realized;
    }

    /// Bin `b` of the campaign in `slot` has closed: its direct clicks join
    /// the campaign's delays since its first send, and what has matured
    /// goes to its target's learned direct wave (`direct_wave.rs`), and to
    /// its audience's if the campaign had one when its learning started
    /// (named by a send of bin ≤ that bin). Only sends before the bin's end
    /// count, and only a target named by an event of bin ≤ `b`: all of them
    /// have arrived by now, whatever the order.
    fn learn_direct_wave(&mut self, slot: u32, b: i64) {
        let end = (b + 1) * self.bin_ms;
        let Some(Some(c)) = self.campaigns.get_mut(slot as usize) else { return };
        let mut sent = c.sends.iter().filter(|s| s.ts_ms < end);
        let Some(first) = sent.clone().map(|s| s.ts_ms).min() else { return };
        let recipients = sent.by_ref().map(|s| s.recipients).sum();
        let imported = c.bins.get(b).map_or(0, |x| x.imported);
        let target = c.target_at(b);
        let audience = c.audience_at(b);
        let d = c.delays.get_or_insert_with(|| Box::new(CampaignDelays::new(first, recipients, audience)));
        d.recipients = recipients;
        if let Some(t) = target {
            let target = &mut self.targets[t as usize];
            let audience = d.audience.and_then(|a| target.audiences.get_mut(a as usize)).map(|a| &mut a.direct);
            target.direct.observe_bin(audience, d, b * self.bin_ms, end, imported);
        }
    }

    /// Computes and stores Λ_b once, when bin `b` closes (all bins before it
    /// are final, so it never changes afterwards). Zero, without the
    /// convolution, once the last click is a whole GI support behind.
    fn close_infectivity(&mut self, slot: u32, b: i64) {
        let Some(Some(c)) = self.campaigns.get_mut(slot as usize) else { return };
        let w = generation_of(&self.targets, &self.gi, c.target_at(b)).renewal.weights();
        let gi_len = w.len() as i64;
        let lambda =
            if c.last_incidence_bin != i64::MIN && b - c.last_incidence_bin < gi_len { infectivity_at(&c.bins, w, b) } else { 0.0 };
        // Bins after a campaign's last event are not materialised (a quiet
        // campaign does not grow its ring); the estimator recomputes their Λ.
        if let Some(x) = c.bins.get_mut_if_held(b) {
            x.lambda = lambda;
            if x.local + x.imported > 0 {
                c.last_incidence_bin = b;
            }
        }
    }

    /// Closed bins a campaign keeps: the renewal window plus the GI support
    /// (for Λ and the forecast's history), or the lineage window if longer.
    fn keep_bins(&self) -> i64 {
        (self.window_bins + self.gi.len() as i64).max(self.lineage_bins) + 1
    }

    /// Renewal and lineage estimates at the end of bin `b`; picks one.
    fn estimate(&self, slot: u32, b: i64, time_ms: i64) -> Option<CampaignEstimate> {
        let c = self.campaigns[slot as usize].as_ref()?;
        let first = b - self.window_bins + 1;
        let (mut sum_local, mut sum_imported, mut held_lambda) = (0u64, 0u64, 0.0);
        for (_, x) in c.bins.iter_range(first, b) {
            sum_local += u64::from(x.local);
            sum_imported += u64::from(x.imported);
            held_lambda += x.lambda;
        }
        let lineage_first = b - self.lineage_bins + 1;
        let (mut local_lw, mut linked_lw) = (0u64, 0u64);
        for (_, x) in c.bins.iter_range(lineage_first, b) {
            local_lw += u64::from(x.local);
            linked_lw += u64::from(x.linked);
        }
        // Without any local click there is nothing to detect or plan with; a
        // campaign in that state (e.g. one of a flood of one-click campaign
        // ids) costs nothing per step unless estimates are requested or a
        // viral episode must be able to subside.
        if sum_local == 0 && local_lw == 0 && !self.emit_estimates && !c.detector.is_viral() {
            return None;
        }
        let target = c.target_at(b);
        let gi = generation_of(&self.targets, &self.gi, target);
        let prior = prior_of(&self.targets, self.prior, target);
        let w = gi.renewal.weights();
        // Λ of bins not held: before the ring (the campaign did not exist:
        // no incidence, Λ = 0) or after its last event (recomputed here).
        let mut sum_lambda = held_lambda;
        for t in c.bins.end().max(first)..=b {
            if c.last_incidence_bin != i64::MIN && t - c.last_incidence_bin < w.len() as i64 {
                sum_lambda += infectivity_at(&c.bins, w, t);
            }
        }
        if sum_local == 0 && sum_imported == 0 && sum_lambda <= 0.0 && local_lw == 0 {
            return None;
        }
        let coverage = if local_lw > 0 { linked_lw as f64 / local_lw as f64 } else { 0.0 };
        let use_lineage = match self.cfg.estimator.method {
            MethodChoice::Renewal => false,
            MethodChoice::Lineage => true,
            MethodChoice::Auto => local_lw > 0 && coverage >= self.cfg.estimator.lineage_min_coverage,
        };
        let (posterior, method, dispersion, window_start, clickers) = if use_lineage {
            let l = c.lineage.estimate(lineage_first, b, gi.lineage, self.forward.as_ref(), prior);
            let method = if l.with_forwards { Method::LineageForward } else { Method::Lineage };
            (l.posterior, method, l.dispersion, lineage_first, l.clickers)
        } else {
            if sum_lambda <= 0.0 {
                return None;
            }
            // Without links, a window's clicks stand for its clickers.
            (renewal::posterior_from_sums(sum_local as f64, sum_lambda, prior), Method::Renewal, 1.0, first, sum_local + sum_imported)
        };
        Some(CampaignEstimate {
            time_ms,
            window_start_ms: window_start * self.bin_ms,
            p_viral: posterior.sf(1.0),
            posterior,
            local_cases: sum_local,
            imported_cases: sum_imported,
            method,
            dispersion,
            clickers,
        })
    }

    /// Campaign demand from its clicks of the bins up to `last_bin` and its
    /// sends before `sends_before_ms`, projected from `now_ms`, with R of
    /// its estimate as of `estimated_at_ms` (the bin step's end, or a send).
    ///
    /// `target`: whose learned direct wave to forecast with (none: the
    /// configured one); the campaign's audience's, if it has one.
    fn campaign_demand(
        &mut self,
        slot: u32,
        last_bin: i64,
        now_ms: i64,
        sends_before_ms: i64,
        estimated_at_ms: i64,
        target: Option<u32>,
    ) -> Demand {
        let Some(c) = self.campaigns[slot as usize].as_ref() else { return Demand::default() };
        let audience = c.audience;
        let est = self.projection_estimate(c, estimated_at_ms);
        let r = est.map_or(0.0, |e| e.posterior.quantile(self.cfg.forecast.r_quantile));
        // The bins after the estimate's window (its last bin ends at its
        // time): the fresh-bin check's (`forecast::fresh_scale`).
        let fresh = est.map_or(0, |e| usize::try_from(last_bin - (e.time_ms.div_euclid(self.bin_ms) - 1)).unwrap_or(0));
        let gi = generation_of(&self.targets, &self.gi, target).forecast.unwrap_or(&self.model.gi);
        // The click history only feeds the renewal projection (R > 0) and
        // its check: the interval's length before the first checked bin.
        self.known.fill(c, last_bin, if r > 0.0 { gi.len() + fresh } else { 0 }, sends_before_ms);
        let (curve, click_through) = direct_wave_of(&self.targets, &self.model, self.cfg.forecast.learn, target, audience);
        let mut input = self.known.input(&self.model, gi, now_ms, last_bin, r, click_through);
        input.fresh_bins = fresh;
        input.r_fit = est.map_or(0.0, |e| e.posterior.mean());
        forecast::project(&input, curve, &mut self.scratch, &mut self.path)
    }

    /// The estimate whose posterior of R a forecast projects pass-along
    /// with: the campaign's latest, if it is fresh (this bin step's or the
    /// one before) and rests on at least `detector.min_local_cases` local
    /// clicks; otherwise none, and no pass-along is projected. One rule for
    /// the planner (which takes the `forecast.r_quantile` quantile) and the
    /// estimate's predictive forecast (which takes the mean and the sd).
    fn projection_estimate(&self, c: &Campaign, now_ms: i64) -> Option<CampaignEstimate> {
        let min_cases = u64::from(self.cfg.detector.min_local_cases);
        c.last.filter(|e| e.local_cases >= min_cases && e.time_ms >= now_ms - self.bin_ms)
    }

    /// The predictive forecast of an estimate at the end of bin `b`
    /// (`forecast::predictive` on the posterior-mean path), with the
    /// planner's peak for this campaign.
    fn estimate_forecast(&mut self, slot: u32, b: i64, time_ms: i64) -> Forecast {
        let Some(c) = self.campaigns[slot as usize].as_ref() else { return Forecast::default() };
        let est = self.projection_estimate(c, time_ms);
        let (r, spread) = est.map_or((0.0, Spread { r_sd: 0.0, dispersion: 1.0 }), |e| {
            (e.posterior.mean(), Spread { r_sd: e.posterior.sd(), dispersion: e.dispersion })
        });
        let target = c.target_at(b);
        let gi = generation_of(&self.targets, &self.gi, target).forecast.unwrap_or(&self.model.gi);
        // The level check (`forecast::level_scale`) reads as many bins as
        // the forecast projects; the renewal projection, and the check's
        // expectation, the interval's length before them.
        let level_bins = self.model.horizon_bins;
        self.known.fill(c, b, level_bins + if r > 0.0 { gi.len() } else { 0 }, time_ms);
        let (curve, click_through) = direct_wave_of(&self.targets, &self.model, self.cfg.forecast.learn, target, c.audience_at(b));
        let mut input = self.known.input(&self.model, gi, time_ms, b, r, click_through);
        input.level_bins = level_bins;
        input.r_fit = r;
        let demand_rps = c.demand_rps;
        let mut path = forecast::predictive(&input, curve, spread);
        if self.cfg.forecast.learn_error {
            let learner = match target {
                Some(t) => self.targets.get(t as usize).and_then(|t| t.error.as_ref()),
                None => self.untargeted_error.as_ref(),
            };
            path.model_error = learner.map(ErrorLearner::model_error).unwrap_or_default();
            let horizons = &self.error_horizons;
            let pending = slot_mut(&mut self.campaigns, slot).forecasts.get_or_insert_with(|| Box::new(PendingForecasts::default()));
            pending.push(b, target, horizons, |k| {
                let f = path.model_clicks(horizons[k]);
                (f.mean, f.variance)
            });
        }
        let table = path.clicks(self.model.horizon_bins).table();
        let clicks = CountInterval { mean: path.clicks(self.model.horizon_bins).mean, lo: table.quantile(0.05), hi: table.quantile(0.95) };
        // The peak this bin step planned for: `plan_bin` made this campaign's
        // forecast (`Engine::forecast`, from the same known state) just
        // before, so it is not a send's, made when the send arrived.
        let peak_rps = if target.is_some() { demand_rps } else { 0.0 };
        Forecast { horizon_s: self.cfg.forecast.horizon.secs_f64(), clicks, peak_rps, path: Arc::new(path) }
    }

    /// The campaign's forecast at the bin step ending at `time_ms` (bin
    /// `b`'s end), handed to its target's planner: from the bins up to
    /// `seen` = `b` + `allowed_lateness` (in bins), final or not, with R
    /// estimated at the end of `b`. Those are the bins that have elapsed for
    /// any engine when it steps `b` (its watermark passed `b`'s end +
    /// `allowed_lateness`), so a stream split over partitions, or read in
    /// batches, gives each engine the same bins to forecast from.
    ///
    /// The plan is acted on now, `allowed_lateness` after `b` ended; the
    /// clicks of the bins since are known and are the freshest evidence of
    /// a wave (the reactive floor reads them too). R, P(R>1) and the
    /// estimate's predictive forecast stay on final bins only, so they do
    /// not depend on the order events arrive in; the plan does (as the
    /// floor does): it uses whatever has arrived by the decision.
    fn forecast(&mut self, slot: u32, seen: i64, time_ms: i64) {
        let Some(t) = self.campaigns[slot as usize].as_ref().and_then(|c| c.target) else { return };
        let seen_end_ms = (seen + 1) * self.bin_ms;
        let d = self.campaign_demand(slot, seen, seen_end_ms, seen_end_ms, time_ms, Some(t));
        self.record_demand(slot, t, d, time_ms, seen_end_ms);
    }

    /// A send: the campaign's forecast now, and its target's plan (always
    /// emitted, see [`TargetPlanner::plan`]).
    fn plan_send(&mut self, slot: u32, ts_ms: i64, out: &mut Vec<Signal>) {
        let Some(t) = self.campaigns[slot as usize].as_ref().and_then(|c| c.target) else { return };
        let last_bin = bin_of(ts_ms, self.bin_ms) - 1;
        // The send itself (at `ts_ms`) and those before it.
        let d = self.campaign_demand(slot, last_bin, ts_ms, ts_ms + 1, ts_ms, Some(t));
        self.record_demand(slot, t, d, ts_ms, (last_bin + 1) * self.bin_ms);
        let target = &mut self.targets[t as usize];
        target.refresh_floor(bin_of(ts_ms, self.bin_ms) - 1, self.bin_ms);
        plan_or_share(target, self.shared_plans, &mut self.shares, ts_ms, ScaleReason::Send, None, out);
    }

    /// Stores a campaign's new demand and gives its target's planner the
    /// record, with the forecast path (`self.path`, starting with the bin
    /// that starts at `path_start_ms`) in requests/s.
    fn record_demand(&mut self, slot: u32, t: u32, d: Demand, time_ms: i64, path_start_ms: i64) {
        let target = &mut self.targets[t as usize].planner;
        let c = slot_mut(&mut self.campaigns, slot);
        c.demand = d;
        let rpc = target.config().requests_per_click;
        c.demand_rps = d.peak_clicks_per_s * rpc;
        let mut record = demand_record(c, time_ms);
        record.path_start_ms = path_start_ms;
        record.path_rps = self.path.iter().map(|clicks_per_s| clicks_per_s * rpc).collect();
        target.record(record);
    }

    /// Counts signals in the stats (the driver calls this for what it emits).
    pub fn count_signals(&mut self, signals: &[Signal]) {
        for s in signals {
            match s {
                Signal::Estimate(_) => self.stats.signals.estimate += 1,
                Signal::ViralOnset(_) => self.stats.signals.viral_onset += 1,
                Signal::ViralSubsided(_) => self.stats.signals.viral_subsided += 1,
                Signal::ScaleAhead(_) => self.stats.signals.scale_ahead += 1,
            }
        }
    }

    /// Clickers not followed because of the per-campaign limit, over live campaigns.
    pub fn shed_clickers(&self) -> u64 {
        self.campaigns.iter().flatten().map(|c| c.lineage.shed()).sum()
    }
}

/// Plans target `t` at `time_ms` — after giving its learned headroom
/// `final_bin`, the bin this bin step made final (none at a send) — and,
/// with shared plans, first exports what it plans from.
#[allow(clippy::too_many_arguments)]
fn plan_or_share(
    t: &mut Target,
    shared: bool,
    shares: &mut Vec<DemandShare>,
    time_ms: i64,
    reason: ScaleReason,
    final_bin: Option<ObservedBin>,
    out: &mut Vec<Signal>,
) {
    if let Some(f) = final_bin {
        t.planner.realise_final(f);
    }
    if shared {
        shares.push(t.planner.share(time_ms, reason, final_bin));
    }
    t.planner.plan(time_ms, reason, out);
}

/// What the planner of `c`'s target needs of it at `time_ms`, with an empty
/// forecast path (the caller adds the path of a forecast).
fn demand_record(c: &Campaign, time_ms: i64) -> DemandRecord {
    DemandRecord {
        campaign: c.name.clone(),
        time_ms,
        forecast_rps: c.demand_rps,
        r_mean: c.last.map(|e| e.posterior.mean()),
        path_start_ms: time_ms,
        path_rps: Vec::new(),
    }
}

/// Λ_t = Σ_{s=1}^{K} w_s I_{t−s} (Cori et al. 2013, eq. 1; I = local +
/// imported clicks), summed in the order s = 1, 2, … as EpiEstim does, over
/// the bins the ring holds: a bin it does not hold had no clicks, so its term
/// is zero and skipping it changes nothing. A sparse campaign (a few clicks
/// in the last K bins) costs a few terms, not K index computations.
fn infectivity_at(bins: &window::Bins<window::BinCounts>, w: &[f64], t: i64) -> f64 {
    let k = w.len() as i64 - 1;
    bins.iter_range(t - k, t - 1).rev().map(|(u, x)| w[(t - u) as usize] * x.incidence()).sum()
}

/// The response curve and click-through prior a forecast for `target` uses:
/// the learned direct wave of the campaign's `audience` under it, or without
/// one the target's, or (no target, or `forecast.learn` off) the configured one.
fn direct_wave_of<'a>(
    targets: &'a [Target],
    model: &'a known::Model,
    learn: bool,
    target: Option<u32>,
    audience: Option<u32>,
) -> (&'a ResponseCurve, (f64, f64)) {
    match target.filter(|_| learn) {
        Some(t) => {
            let d = targets[t as usize].wave(audience);
            (d.current_curve(), d.click_through_prior())
        }
        None => (&model.curve, model.click_through),
    }
}

/// The generation intervals a campaign of `target` is estimated and
/// forecast with: its target's learned ones
/// (`estimator.generation_interval.learn`), or the configured one.
struct GenerationIntervals<'a> {
    /// For the lineage estimator's censoring correction.
    lineage: &'a GenerationInterval,
    /// For the renewal estimator's Λ.
    renewal: &'a GenerationInterval,
    /// For the forecast (cut at `forecast::GI_TAIL`); `None`: the configured
    /// interval's cut (`known::Model::gi`).
    forecast: Option<&'a [f64]>,
}

fn generation_of<'a>(targets: &'a [Target], configured: &'a GenerationInterval, target: Option<u32>) -> GenerationIntervals<'a> {
    match target.and_then(|t| targets[t as usize].generation.as_ref()) {
        Some(g) => GenerationIntervals { lineage: g.lineage(), renewal: g.renewal(), forecast: g.forecast() },
        None => GenerationIntervals { lineage: configured, renewal: configured, forecast: None },
    }
}

/// The prior of R a campaign of `target` is estimated with: its target's
/// learned one (`estimator.learn_prior`, `r_prior.rs`), or the configured one.
fn prior_of(targets: &[Target], configured: Prior, target: Option<u32>) -> Prior {
    target.and_then(|t| targets[t as usize].r_prior.as_ref()).map_or(configured, RPriorLearner::prior)
}

/// How many bins a campaign of `target` follows its clickers: as long as
/// its target's learned interval says (`generation_learner.rs`), or the
/// lineage window without one.
fn follow_bins_of(targets: &[Target], target: Option<u32>, lineage_bins: i64) -> i64 {
    target.and_then(|t| targets[t as usize].generation.as_ref()).map_or(lineage_bins, GenerationLearner::follow_bins)
}

/// The hash a forgotten campaign's name is remembered by.
fn name_hash(name: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(4).hash_one(name)
}

/// The live campaign in `slot` (slots handed out by the engine are live
/// until evicted, and evicted slots are never used again before reuse).
fn slot_mut(campaigns: &mut [Option<Campaign>], slot: u32) -> &mut Campaign {
    match campaigns.get_mut(slot as usize) {
        Some(Some(c)) => c,
        _ => unreachable!("campaign slot {slot} is live"),
    }
}

/// Mean, sd and 95% equal-tailed interval of a Gamma posterior.
pub fn summary(g: &gamma::Gamma) -> RSummary {
    RSummary { mean: g.mean(), sd: g.sd(), lo: g.quantile(0.025), hi: g.quantile(0.975) }
}

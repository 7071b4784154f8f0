//! Prometheus metrics of `floodgate run` (the names are a contract: the ops
//! kit's alerts, dashboards and KEDA queries use them).
//!
//! Counters are incremented by the partition tasks for events at or after the
//! committed offset only (the rebuild prefix was counted by whoever processed
//! it first). Gauges that describe engine state (`campaigns_*`, `target_*`,
//! `campaign_*`) are recomputed from the partition snapshots once a second.
//! `floodgate_target_desired_replicas{target}` and
//! `floodgate_target_forecast_rps{target}` are the plan of the target made
//! from every engine's demand, exported only by the instance that owns the
//! target (`kafka.demand_topic`, see `service::demand`); with demand sharing
//! off, they are this instance's partition engines' forecasts summed and
//! `planner::replicas_with(planner_for(target), that sum, the largest headroom of the partitions)`.
//!
//! Every series the rules and dashboards select exists from the first scrape:
//! counters whose label values are known (event types, reject reasons, signal
//! types, shed kinds) start at 0 so that `rate()`/`increase()` see the first
//! increments; `floodgate_ready` and `floodgate_watermark_timestamp_seconds`
//! are 0 until ready / until the first event; the targets configured under
//! `[targets.<name>]` are always exported (at their baseline when no campaign
//! of this instance uses them) so that an autoscaler querying one gets the
//! planner's answer (its `min_replicas`) instead of an empty result, and
//! `floodgate_target_max_replicas{target}` (the ceiling
//! FloodgateTargetAtMaxReplicas compares with) exists for every exported
//! target.

use std::collections::{BTreeMap, BTreeSet};

use prometheus::{Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::config::Config;
use crate::decode::RejectReason;
use crate::engine::planner::replicas_with;
use crate::engine::{AudienceView, CampaignView, DirectWaveView, GenerationIntervalView, Stats, TargetView};

/// Every metric of the service, registered in one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// `floodgate_events_total{type}`.
    pub events: IntCounterVec,
    /// The `send`, `click` and `forward` children of `events`, resolved once
    /// (a label lookup per event is a hash and a lock on the hot path).
    pub events_by_kind: [IntCounter; 3],
    /// `floodgate_events_rejected_total{reason}`.
    pub rejected: IntCounterVec,
    /// `floodgate_events_duplicate_total`.
    pub duplicates: IntCounter,
    /// `floodgate_events_late_total`.
    pub late: IntCounter,
    /// `floodgate_dead_letter_total`.
    pub dead_letter: IntCounter,
    /// `floodgate_signals_total{type}`.
    pub signals: IntCounterVec,
    /// `floodgate_campaigns_tracked`.
    pub campaigns_tracked: IntGauge,
    /// `floodgate_campaigns_viral`.
    pub campaigns_viral: IntGauge,
    /// `floodgate_campaigns_shed_total{what}`.
    pub shed: IntCounterVec,
    /// `floodgate_target_desired_replicas{target}`.
    pub desired_replicas: IntGaugeVec,
    /// `floodgate_target_forecast_rps{target}`.
    pub forecast_rps: GaugeVec,
    /// `floodgate_target_max_replicas{target}`: the planner's `max_replicas`
    /// of each exported target.
    pub max_replicas: IntGaugeVec,
    /// `floodgate_target_headroom{target}`: the headroom the plan uses now
    /// (learned with `planner.learn_headroom`).
    pub headroom: GaugeVec,
    /// `floodgate_target_clicks_total{target}`.
    pub target_clicks: IntCounterVec,
    /// `floodgate_target_response_delay_seconds{target,quantile}`: the
    /// learned send → direct click delay's median and 90th percentile.
    pub response_delay: GaugeVec,
    /// `floodgate_target_click_through{target}`: the learned click-through a
    /// new campaign starts from.
    pub click_through: GaugeVec,
    /// `floodgate_target_generation_interval_seconds{target,quantile}`: the
    /// learned click → offspring click delay's median and 90th percentile.
    pub generation_interval: GaugeVec,
    /// `floodgate_campaign_r{campaign,stat}`.
    pub campaign_r: GaugeVec,
    /// `floodgate_campaign_p_viral{campaign}`.
    pub campaign_p_viral: GaugeVec,
    /// `floodgate_consumer_lag{topic,partition}`.
    pub consumer_lag: IntGaugeVec,
    /// `floodgate_processing_latency_seconds`.
    pub latency: Histogram,
    /// `floodgate_watermark_timestamp_seconds`.
    pub watermark: Gauge,
    /// `floodgate_ready`.
    pub ready: IntGauge,
    /// `floodgate_build_info{version}`.
    pub build_info: IntGaugeVec,
    /// `floodgate_partitions_assigned`.
    pub partitions_assigned: IntGauge,
    /// `floodgate_unkeyed_events_total`.
    pub unkeyed: IntCounter,
    /// `floodgate_rebalances_total`.
    pub rebalances: IntCounter,
    /// `floodgate_campaigns_returned_total`: campaigns that had events again
    /// after being forgotten, tracked afresh.
    pub campaigns_returned: IntCounter,
    /// `floodgate_model_records_rejected_total{reason}`: model-topic
    /// records skipped at start (reasons in [`MODEL_REJECT_REASONS`]).
    pub model_rejected: IntCounterVec,
    /// `floodgate_model_records_published_total`: target records the
    /// broker acknowledged on the model topic.
    pub model_published: IntCounter,
    /// `floodgate_model_targets_loaded`: targets read from the model topic
    /// at start (loaded into every partition engine).
    pub model_targets_loaded: IntGauge,
    /// `floodgate_demand_records_rejected_total`: demand-topic records
    /// skipped (not a demand share of a known format; logged with partition
    /// and offset).
    pub demand_rejected: IntCounter,
    /// `floodgate_demand_publish_errors_total`: demand shares the producer
    /// refused (the next bin step's share replaces a lost one).
    pub demand_publish_errors: IntCounter,
    top_campaigns: std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>,
    targets_seen: std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>,
}

/// The `what` label values of `floodgate_campaigns_shed_total`.
pub const SHED_WHAT: [&str; 5] = ["campaigns", "campaigns_evicted", "clickers", "dedup_ids", "idle"];

/// The engine's shed counters by `what` label (in [`SHED_WHAT`] order):
/// `campaigns` = events of campaigns not tracked (`limits.max_campaigns`),
/// `campaigns_evicted` = low-traffic campaigns evicted to admit a new one,
/// `clickers` = clickers not followed (`limits.max_clickers_per_campaign`),
/// `dedup_ids` = event ids not remembered (`limits.max_dedup_ids`),
/// `idle` = campaigns forgotten after `limits.idle_timeout` (normal
/// housekeeping, not a limit being hit; the alert ignores it).
pub fn shed_counts(s: &Stats) -> [(&'static str, u64); 5] {
    [
        ("campaigns", s.shed_campaigns),
        ("campaigns_evicted", s.shed_campaigns_evicted),
        ("clickers", s.shed_clickers),
        ("dedup_ids", s.shed_dedup_ids),
        ("idle", s.evicted_campaigns),
    ]
}

/// The `reason` label values of `floodgate_model_records_rejected_total`:
/// `key` = no key, or not the record's target; `json` = not a record
/// (not JSON, wrong shape); `format`, `version` = not a floodgate model
/// record of the version this build reads; `bin` = learned with another
/// `estimator.bin`; `invalid` = a value or array that cannot have been
/// learned, or more audiences than `limits.max_audiences_per_target`.
pub const MODEL_REJECT_REASONS: [&str; 6] = ["key", "json", "format", "version", "bin", "invalid"];

/// Buckets of `floodgate_processing_latency_seconds`: sub-millisecond
/// processing up to 10 minutes, so that the p99 > 60 s objective of
/// FloodgateProcessingLatencyHigh can be measured (a quantile beyond the
/// largest finite bucket is reported as that bucket's bound).
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0];

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are static and unique, so registration cannot fail.
    let _ = r.register(Box::new(m.clone()));
    m
}

impl Metrics {
    /// Creates and registers every metric (label sets that are known up front
    /// — event types, reject reasons, signal types — are pre-created at 0).
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| reg(&r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"));
        let events = counter_vec("floodgate_events_total", "Events applied (accepted), by type.", &["type"]);
        for t in ["send", "click", "forward"] {
            events.with_label_values(&[t]);
        }
        let rejected = counter_vec("floodgate_events_rejected_total", "Input records rejected, by reason.", &["reason"]);
        for reason in RejectReason::ALL {
            rejected.with_label_values(&[reason.as_str()]);
        }
        let signals = counter_vec("floodgate_signals_total", "Signals published, by CloudEvents type.", &["type"]);
        for t in ["floodgate.estimate", "floodgate.viral_onset", "floodgate.viral_subsided", "floodgate.scale_ahead"] {
            signals.with_label_values(&[t]);
        }
        let shed = counter_vec("floodgate_campaigns_shed_total", "State shed under the limits, by what.", &["what"]);
        for w in SHED_WHAT {
            shed.with_label_values(&[w]);
        }
        let build_info = reg(
            &r,
            IntGaugeVec::new(Opts::new("floodgate_build_info", "Build information (always 1)."), &["version"]).expect("valid metric"),
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let events_by_kind = ["send", "click", "forward"].map(|t| events.with_label_values(&[t]));
        Metrics {
            events_by_kind,
            events,
            rejected,
            duplicates: reg(&r, IntCounter::new("floodgate_events_duplicate_total", "Duplicate events dropped.").expect("valid metric")),
            late: reg(&r, IntCounter::new("floodgate_events_late_total", "Events beyond the allowed lateness.").expect("valid metric")),
            dead_letter: reg(
                &r,
                IntCounter::new("floodgate_dead_letter_total", "Records published to the dead-letter topic.").expect("valid metric"),
            ),
            signals,
            campaigns_tracked: reg(
                &r,
                IntGauge::new("floodgate_campaigns_tracked", "Campaigns tracked by this instance.").expect("valid metric"),
            ),
            campaigns_viral: reg(
                &r,
                IntGauge::new("floodgate_campaigns_viral", "Campaigns with an open viral episode.").expect("valid metric"),
            ),
            shed,
            desired_replicas: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("floodgate_target_desired_replicas", "Replicas this instance's forecast asks for, per target."),
                    &["target"],
                )
                .expect("valid metric"),
            ),
            forecast_rps: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "floodgate_target_forecast_rps",
                        "Forecast peak requests/s per target (sum over this instance's partitions).",
                    ),
                    &["target"],
                )
                .expect("valid metric"),
            ),
            max_replicas: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("floodgate_target_max_replicas", "The planner's configured max_replicas, per target."),
                    &["target"],
                )
                .expect("valid metric"),
            ),
            headroom: reg(
                &r,
                GaugeVec::new(
                    Opts::new("floodgate_target_headroom", "Headroom the target's plan uses now (learned or configured), per target."),
                    &["target"],
                )
                .expect("valid metric"),
            ),
            response_delay: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "floodgate_target_response_delay_seconds",
                        "Learned send-to-direct-click delay per target: median (quantile=\"0.5\") and 90th percentile (quantile=\"0.9\"); from the partition that learned from the most clicks.",
                    ),
                    &["target", "quantile"],
                )
                .expect("valid metric"),
            ),
            generation_interval: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "floodgate_target_generation_interval_seconds",
                        "Learned click-to-offspring-click delay per target: median (quantile=\"0.5\") and 90th percentile (quantile=\"0.9\"); from the partition that learned from the most delays.",
                    ),
                    &["target", "quantile"],
                )
                .expect("valid metric"),
            ),
            click_through: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "floodgate_target_click_through",
                        "Learned direct click-through a new campaign of the target starts from (clicks per recipient).",
                    ),
                    &["target"],
                )
                .expect("valid metric"),
            ),
            target_clicks: counter_vec("floodgate_target_clicks_total", "Clicks counted per target.", &["target"]),
            campaign_r: reg(
                &r,
                GaugeVec::new(Opts::new("floodgate_campaign_r", "R of the top-K campaigns (stat = mean, lo, hi)."), &["campaign", "stat"])
                    .expect("valid metric"),
            ),
            campaign_p_viral: reg(
                &r,
                GaugeVec::new(Opts::new("floodgate_campaign_p_viral", "P(R > 1) of the top-K campaigns."), &["campaign"])
                    .expect("valid metric"),
            ),
            consumer_lag: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("floodgate_consumer_lag", "Messages between the partition's end and the next offset to process."),
                    &["topic", "partition"],
                )
                .expect("valid metric"),
            ),
            latency: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "floodgate_processing_latency_seconds",
                        "From polling a message (its batch's first) to its effects being committable (its batch applied; its signals acknowledged).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            watermark: reg(
                &r,
                Gauge::new("floodgate_watermark_timestamp_seconds", "Lowest event-time watermark over assigned partitions.")
                    .expect("valid metric"),
            ),
            ready: reg(&r, IntGauge::new("floodgate_ready", "1 when assigned, rebuilt and caught up.").expect("valid metric")),
            build_info,
            partitions_assigned: reg(
                &r,
                IntGauge::new("floodgate_partitions_assigned", "Input partitions assigned to this instance.").expect("valid metric"),
            ),
            unkeyed: reg(
                &r,
                IntCounter::new("floodgate_unkeyed_events_total", "Events whose Kafka key is not their campaign (estimates may be split).")
                    .expect("valid metric"),
            ),
            rebalances: reg(
                &r,
                IntCounter::new("floodgate_rebalances_total", "Consumer group rebalances (assign or revoke).").expect("valid metric"),
            ),
            campaigns_returned: reg(
                &r,
                IntCounter::new(
                    "floodgate_campaigns_returned_total",
                    "Campaigns that had events again after being forgotten as over (tracked afresh; a high rate means limits.forget_below is too high).",
                )
                .expect("valid metric"),
            ),
            model_rejected: {
                let c = counter_vec(
                    "floodgate_model_records_rejected_total",
                    "Model-topic records skipped at start (logged with topic, partition, offset), by reason.",
                    &["reason"],
                );
                for reason in MODEL_REJECT_REASONS {
                    c.with_label_values(&[reason]);
                }
                c
            },
            model_published: reg(
                &r,
                IntCounter::new("floodgate_model_records_published_total", "Target records published to the model topic (acknowledged).")
                    .expect("valid metric"),
            ),
            model_targets_loaded: reg(
                &r,
                IntGauge::new("floodgate_model_targets_loaded", "Targets read from the model topic at start.").expect("valid metric"),
            ),
            demand_rejected: reg(
                &r,
                IntCounter::new("floodgate_demand_records_rejected_total", "Demand-topic records skipped (not a demand share; logged with partition and offset).")
                    .expect("valid metric"),
            ),
            demand_publish_errors: reg(
                &r,
                IntCounter::new("floodgate_demand_publish_errors_total", "Demand shares the producer refused (the next bin step's replaces a lost one).")
                    .expect("valid metric"),
            ),
            registry: r,
            top_campaigns: Default::default(),
            targets_seen: Default::default(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Sets the per-target gauges to the plans this instance exports (the
    /// targets it owns, from the demand topic; or, with demand sharing off,
    /// [`sum_targets`] of its partition engines): desired replicas, the
    /// forecast requests/s planned for, the planner's `max_replicas`; the
    /// target's click counter is created at 0. Targets no longer in
    /// `targets` lose their gauges.
    pub fn set_targets(&self, cfg: &Config, targets: &BTreeMap<String, TargetPlan>) {
        let mut seen = self.targets_seen.lock().unwrap_or_else(|e| e.into_inner());
        for (name, plan) in targets {
            let planner = cfg.planner_for(name);
            self.forecast_rps.with_label_values(&[name]).set(plan.forecast_rps);
            self.desired_replicas.with_label_values(&[name]).set(i64::from(plan.desired_replicas));
            self.max_replicas.with_label_values(&[name]).set(i64::from(planner.max_replicas));
            self.headroom.with_label_values(&[name]).set(plan.headroom);
            self.target_clicks.with_label_values(&[name]);
            seen.insert(name.clone());
        }
        // A target no longer planned by this instance (its partitions moved)
        // contributes nothing here. (Its click counter stays: counters are
        // not removed.)
        for name in seen.iter().filter(|n| !targets.contains_key(*n)) {
            let _ = self.forecast_rps.remove_label_values(&[name]);
            let _ = self.desired_replicas.remove_label_values(&[name]);
            let _ = self.max_replicas.remove_label_values(&[name]);
            let _ = self.headroom.remove_label_values(&[name]);
        }
        seen.retain(|n| targets.contains_key(n));
    }

    /// Sets the learned direct-wave gauges of each target.
    pub fn set_direct_waves(&self, waves: &BTreeMap<String, DirectWaveView>) {
        for (name, w) in waves {
            self.response_delay.with_label_values(&[name, "0.5"]).set(w.response_median_s);
            self.response_delay.with_label_values(&[name, "0.9"]).set(w.response_p90_s);
            self.click_through.with_label_values(&[name]).set(w.click_through);
        }
    }

    /// Sets the learned generation-interval gauges of each target.
    pub fn set_generation_intervals(&self, intervals: &BTreeMap<String, GenerationIntervalView>) {
        for (name, g) in intervals {
            self.generation_interval.with_label_values(&[name, "0.5"]).set(g.median_s);
            self.generation_interval.with_label_values(&[name, "0.9"]).set(g.p90_s);
        }
    }

    /// Adds the growth of the engine's shed counters from `before` to `now`
    /// to `floodgate_campaigns_shed_total{what}`, and of its returned
    /// campaigns to `floodgate_campaigns_returned_total`.
    pub fn add_shed(&self, before: &Stats, now: &Stats) {
        for ((what, b), (_, n)) in shed_counts(before).into_iter().zip(shed_counts(now)) {
            if n > b {
                self.shed.with_label_values(&[what]).inc_by(n - b);
            }
        }
        if now.returned_campaigns > before.returned_campaigns {
            self.campaigns_returned.inc_by(now.returned_campaigns - before.returned_campaigns);
        }
    }

    /// Sets the per-campaign gauges for the top-K campaigns and removes the
    /// label sets of campaigns that dropped out.
    pub fn set_top_campaigns(&self, top: &[CampaignView]) {
        let mut prev = self.top_campaigns.lock().unwrap_or_else(|e| e.into_inner());
        let now: BTreeSet<String> = top.iter().map(|c| c.campaign.clone()).collect();
        for gone in prev.difference(&now) {
            for stat in ["mean", "lo", "hi"] {
                let _ = self.campaign_r.remove_label_values(&[gone, stat]);
            }
            let _ = self.campaign_p_viral.remove_label_values(&[gone]);
        }
        for c in top {
            if let Some(r) = c.r {
                self.campaign_r.with_label_values(&[&c.campaign, "mean"]).set(r.mean);
                self.campaign_r.with_label_values(&[&c.campaign, "lo"]).set(r.lo);
                self.campaign_r.with_label_values(&[&c.campaign, "hi"]).set(r.hi);
            }
            if let Some(p) = c.p_viral {
                self.campaign_p_viral.with_label_values(&[&c.campaign]).set(p);
            }
        }
        *prev = now;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Orders campaigns as [`crate::engine::Engine::top_campaigns`] does: viral
/// first, then by posterior mean of R, then by forecast, then by name.
pub fn rank_campaigns(all: &mut [CampaignView]) {
    let score = |c: &CampaignView| c.r.map_or(0.0, |r| r.mean);
    all.sort_by(|a, b| {
        b.viral
            .cmp(&a.viral)
            .then(score(b).total_cmp(&score(a)))
            .then(b.forecast_rps.total_cmp(&a.forecast_rps))
            .then(a.campaign.cmp(&b.campaign))
    });
}

/// Each target's learned direct wave, from the partition engine that
/// learned from the most direct clicks (each partition learns from its own
/// campaigns).
pub fn best_direct_waves(per_partition: &[&[TargetView]]) -> BTreeMap<String, DirectWaveView> {
    best_learned(per_partition, |t| t.direct_wave.as_ref(), |w| w.delays)
}

/// Each target's learned generation interval, from the partition engine
/// that learned from the most parent → child delays.
pub fn best_generation_intervals(per_partition: &[&[TargetView]]) -> BTreeMap<String, GenerationIntervalView> {
    best_learned(per_partition, |t| t.generation_interval.as_ref(), |g| g.delays)
}

/// Per target, the learned model error of the partition engine that
/// realized the most forecasts.
pub fn best_forecast_errors(per_partition: &[&[TargetView]]) -> BTreeMap<String, Vec<crate::engine::forecast_error::ErrorAtHorizon>> {
    best_learned(per_partition, |t| t.forecast_error.as_ref(), |e| e.iter().flat_map(|h| h.forecasts).map(|n| n as f64).sum())
}

/// Per target, the learned value `get` of the partition engine whose value
/// rests on the most data (`weight`).
fn best_learned<V: Clone>(
    per_partition: &[&[TargetView]],
    get: impl Fn(&TargetView) -> Option<&V>,
    weight: impl Fn(&V) -> f64,
) -> BTreeMap<String, V> {
    let mut out: BTreeMap<String, V> = BTreeMap::new();
    for t in per_partition.iter().flat_map(|v| v.iter()) {
        let Some(v) = get(t) else { continue };
        match out.get(&t.target) {
            Some(best) if weight(best) >= weight(v) => {}
            _ => {
                out.insert(t.target.clone(), v.clone());
            }
        }
    }
    out
}

/// Each target's audiences' learned direct waves (`/api/targets`), each
/// from the partition engine that learned it from the most direct clicks,
/// as [`best_direct_waves`] picks the target's own.
pub fn best_audiences(per_partition: &[&[TargetView]]) -> BTreeMap<String, Vec<AudienceView>> {
    let mut best: BTreeMap<(&str, &str), &AudienceView> = BTreeMap::new();
    for t in per_partition.iter().flat_map(|v| v.iter()) {
        for a in &t.audiences {
            match best.get(&(t.target.as_str(), a.audience.as_str())) {
                Some(b) if b.direct_wave.delays >= a.direct_wave.delays => {}
                _ => {
                    best.insert((&t.target, &a.audience), a);
                }
            }
        }
    }
    let mut out: BTreeMap<String, Vec<AudienceView>> = BTreeMap::new();
    for ((target, _), a) in best {
        out.entry(target.to_string()).or_default().push(a.clone());
    }
    out
}

/// The plan of a target this instance exports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetPlan {
    /// Replicas it should run.
    pub desired_replicas: u32,
    /// The forecast request rate the plan was made for (baseline included).
    pub forecast_rps: f64,
    /// The headroom it was made with.
    pub headroom: f64,
}

/// With demand sharing off: sums target forecasts over partition engines
/// (the baseline of a target is counted once, not once per partition) and
/// turns each sum into replicas with the target's planner configuration.
/// Every target configured under `[targets.<name>]` is included, at its
/// baseline when no partition engine plans it.
pub fn sum_targets(cfg: &Config, per_partition: &[&[TargetView]]) -> BTreeMap<String, TargetPlan> {
    let mut out: BTreeMap<String, (f64, Option<f64>)> = cfg.targets.keys().map(|name| (name.clone(), (0.0, None))).collect();
    for views in per_partition {
        for t in views.iter() {
            let baseline = cfg.planner_for(&t.target).baseline_rps;
            let (rps, headroom) = out.entry(t.target.clone()).or_default();
            *rps += (t.forecast_rps - baseline).max(0.0);
            // The partitions' learned headrooms differ: the largest (the
            // one whose traffic needed most) is kept.
            *headroom = Some(headroom.map_or(t.headroom, |h: f64| h.max(t.headroom)));
        }
    }
    out.into_iter()
        .map(|(name, (rps, headroom))| {
            let planner = cfg.planner_for(&name);
            let forecast_rps = rps + planner.baseline_rps;
            let headroom = headroom.unwrap_or(planner.headroom);
            (name, TargetPlan { desired_replicas: replicas_with(&planner, forecast_rps, headroom), forecast_rps, headroom })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn known_series_exist_from_the_first_scrape() {
        let text = Metrics::new().render();
        for series in [
            "floodgate_ready",
            "floodgate_watermark_timestamp_seconds",
            "floodgate_partitions_assigned",
            "floodgate_rebalances_total",
            "floodgate_dead_letter_total",
            "floodgate_events_duplicate_total",
            "floodgate_events_late_total",
            "floodgate_unkeyed_events_total",
            "floodgate_campaigns_tracked",
            "floodgate_campaigns_viral",
            "floodgate_events_total{type=\"send\"}",
            "floodgate_events_total{type=\"click\"}",
            "floodgate_events_total{type=\"forward\"}",
            "floodgate_signals_total{type=\"floodgate.viral_onset\"}",
            "floodgate_signals_total{type=\"floodgate.viral_subsided\"}",
            "floodgate_signals_total{type=\"floodgate.scale_ahead\"}",
            "floodgate_signals_total{type=\"floodgate.estimate\"}",
            "floodgate_processing_latency_seconds_count",
        ] {
            assert_eq!(sample(&text, series), Some(0.0), "{series} missing or not 0 in\n{text}");
        }
        for reason in RejectReason::ALL {
            let series = format!("floodgate_events_rejected_total{{reason=\"{}\"}}", reason.as_str());
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        for what in SHED_WHAT {
            let series = format!("floodgate_campaigns_shed_total{{what=\"{what}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        assert_eq!(sample(&text, &format!("floodgate_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), Some(1.0));
    }

    #[test]
    fn shed_counters_follow_the_engine_stats_including_clickers() {
        let m = Metrics::new();
        assert_eq!(shed_counts(&Stats::default()).map(|(w, _)| w), SHED_WHAT);
        let before = Stats { shed_clickers: 5, shed_campaigns: 1, ..Stats::default() };
        let now = Stats {
            shed_clickers: 12,
            shed_campaigns: 1,
            shed_dedup_ids: 3,
            evicted_campaigns: 2,
            returned_campaigns: 4,
            ..Stats::default()
        };
        m.add_shed(&before, &now);
        m.add_shed(&now, &now);
        let text = m.render();
        assert_eq!(sample(&text, "floodgate_campaigns_shed_total{what=\"clickers\"}"), Some(7.0));
        assert_eq!(sample(&text, "floodgate_campaigns_shed_total{what=\"campaigns\"}"), Some(0.0));
        assert_eq!(sample(&text, "floodgate_campaigns_shed_total{what=\"dedup_ids\"}"), Some(3.0));
        assert_eq!(sample(&text, "floodgate_campaigns_shed_total{what=\"idle\"}"), Some(2.0));
        assert_eq!(sample(&text, "floodgate_campaigns_returned_total"), Some(4.0));
    }

    #[test]
    fn configured_targets_are_exported_with_their_ceiling() {
        let cfg = Config::from_toml("[targets.shop-web]\nmin_replicas = 3\nmax_replicas = 120\n").unwrap();
        let m = Metrics::new();
        // No partition plans anything yet: the configured target is at its baseline.
        let summed = sum_targets(&cfg, &[]);
        assert_eq!(summed.keys().collect::<Vec<_>>(), ["shop-web"]);
        m.set_targets(&cfg, &summed);
        let text = m.render();
        assert_eq!(sample(&text, "floodgate_target_desired_replicas{target=\"shop-web\"}"), Some(3.0));
        assert_eq!(sample(&text, "floodgate_target_forecast_rps{target=\"shop-web\"}"), Some(0.0));
        assert_eq!(sample(&text, "floodgate_target_max_replicas{target=\"shop-web\"}"), Some(120.0));
        assert_eq!(sample(&text, "floodgate_target_clicks_total{target=\"shop-web\"}"), Some(0.0));
        // A target seen in events gets the [planner] defaults, and goes away with its partitions.
        let views = [TargetView {
            target: "blog-web".into(),
            desired_replicas: 2,
            forecast_rps: 400.0,
            headroom: 0.25,
            headroom_learned: None,
            clicks: 9,
            direct_wave: None,
            generation_interval: None,
            audiences: Vec::new(),
            forecast_error: None,
        }];
        let summed = sum_targets(&cfg, &[&views]);
        m.set_targets(&cfg, &summed);
        let text = m.render();
        assert_eq!(sample(&text, "floodgate_target_max_replicas{target=\"blog-web\"}"), Some(f64::from(cfg.planner.max_replicas)));
        assert_eq!(
            sample(&text, "floodgate_target_desired_replicas{target=\"blog-web\"}"),
            Some(f64::from(replicas_with(&cfg.planner_for("blog-web"), 400.0, 0.25)))
        );
        m.set_targets(&cfg, &sum_targets(&cfg, &[]));
        let text = m.render();
        assert_eq!(sample(&text, "floodgate_target_max_replicas{target=\"blog-web\"}"), None);
        assert_eq!(sample(&text, "floodgate_target_desired_replicas{target=\"blog-web\"}"), None);
        assert_eq!(sample(&text, "floodgate_target_max_replicas{target=\"shop-web\"}"), Some(120.0));
    }

    #[test]
    fn the_direct_wave_comes_from_the_partition_that_learned_most() {
        let m = Metrics::new();
        let wave = |median: f64, delays: f64| DirectWaveView {
            response_median_s: median,
            response_p90_s: 4.0 * median,
            delays,
            click_through: 0.01,
            click_through_weight: 500.0,
            campaigns: 3,
        };
        let interval = |median: f64, delays: f64| GenerationIntervalView { median_s: median, p90_s: 3.0 * median, delays };
        let view = |w: DirectWaveView, g: GenerationIntervalView| TargetView {
            target: "blog-web".into(),
            desired_replicas: 2,
            forecast_rps: 1.0,
            headroom: 0.25,
            headroom_learned: None,
            clicks: 1,
            direct_wave: Some(w),
            generation_interval: Some(g),
            audiences: Vec::new(),
            forecast_error: None,
        };
        // Partition a learned its interval from more delays, b its wave from more clicks.
        let (a, b) = ([view(wave(600.0, 10.0), interval(1500.0, 900.0))], [view(wave(1200.0, 5000.0), interval(300.0, 20.0))]);
        let waves = best_direct_waves(&[&a, &b]);
        m.set_direct_waves(&waves);
        m.set_generation_intervals(&best_generation_intervals(&[&a, &b]));
        let text = m.render();
        assert_eq!(sample(&text, "floodgate_target_generation_interval_seconds{quantile=\"0.5\",target=\"blog-web\"}"), Some(1500.0));
        assert_eq!(sample(&text, "floodgate_target_generation_interval_seconds{quantile=\"0.9\",target=\"blog-web\"}"), Some(4500.0));
        assert_eq!(sample(&text, "floodgate_target_response_delay_seconds{quantile=\"0.5\",target=\"blog-web\"}"), Some(1200.0));
        assert_eq!(sample(&text, "floodgate_target_response_delay_seconds{quantile=\"0.9\",target=\"blog-web\"}"), Some(4800.0));
        assert_eq!(sample(&text, "floodgate_target_click_through{target=\"blog-web\"}"), Some(0.01));
    }

    #[test]
    fn latency_above_a_minute_is_measurable() {
        let m = Metrics::new();
        m.latency.observe(100.0);
        let text = m.render();
        assert_eq!(sample(&text, "floodgate_processing_latency_seconds_bucket{le=\"60\"}"), Some(0.0));
        assert_eq!(sample(&text, "floodgate_processing_latency_seconds_bucket{le=\"120\"}"), Some(1.0));
    }
}

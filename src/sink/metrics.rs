//! Prometheus metrics of `floodgate run` (the names are a contract: the ops
//! kit's alerts, dashboards and KEDA queries use them).
//!
//! Counters are incremented by the partition tasks for events at or after the
//! committed offset only (the rebuild prefix was counted by whoever processed
//! it first). Gauges that describe engine state (`campaigns_*`, `target_*`,
//! `campaign_*`) are recomputed from the partition snapshots once a second:
//! `floodgate_target_forecast_rps{target}` is the sum over this instance's
//! partition engines and `floodgate_target_desired_replicas{target}` is
//! `planner::replicas_for(planner_for(target), that sum)`. Across instances,
//! `sum by (target)` in Prometheus is the authoritative number.

use std::collections::{BTreeMap, BTreeSet};

use prometheus::{Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::config::Config;
use crate::decode::RejectReason;
use crate::engine::planner::replicas_for;
use crate::engine::{CampaignView, TargetView};

/// Every metric of the service, registered in one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// `floodgate_events_total{type}`.
    pub events: IntCounterVec,
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
    /// `floodgate_target_clicks_total{target}`.
    pub target_clicks: IntCounterVec,
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
    top_campaigns: std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>,
    targets_seen: std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>,
}

/// The `what` label values of `floodgate_campaigns_shed_total`.
pub const SHED_WHAT: [&str; 5] = ["campaigns", "campaigns_evicted", "clickers", "dedup_ids", "idle"];

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
        Metrics {
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
                        "From receiving a message to its effects being committable (applied; its signals acknowledged).",
                    )
                    .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
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

    /// Sets the per-target gauges from the partition engines' target views:
    /// forecast requests/s summed over partitions, replicas from the summed
    /// forecast with the target's planner configuration.
    pub fn set_targets(&self, cfg: &Config, targets: &BTreeMap<String, f64>) {
        let mut seen = self.targets_seen.lock().unwrap_or_else(|e| e.into_inner());
        for (name, rps) in targets {
            self.forecast_rps.with_label_values(&[name]).set(*rps);
            let replicas = replicas_for(&cfg.planner_for(name), *rps);
            self.desired_replicas.with_label_values(&[name]).set(i64::from(replicas));
            seen.insert(name.clone());
        }
        // A target no longer planned by this instance (its partitions moved)
        // contributes nothing here.
        for name in seen.iter().filter(|n| !targets.contains_key(*n)) {
            let _ = self.forecast_rps.remove_label_values(&[name]);
            let _ = self.desired_replicas.remove_label_values(&[name]);
        }
        seen.retain(|n| targets.contains_key(n));
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

/// Sums target forecasts over partition engines (the baseline of a target is
/// counted once, not once per partition).
pub fn sum_targets(cfg: &Config, per_partition: &[&[TargetView]]) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for views in per_partition {
        for t in views.iter() {
            let baseline = cfg.planner_for(&t.target).baseline_rps;
            *out.entry(t.target.clone()).or_default() += (t.forecast_rps - baseline).max(0.0);
        }
    }
    for (name, rps) in out.iter_mut() {
        *rps += cfg.planner_for(name).baseline_rps;
    }
    out
}

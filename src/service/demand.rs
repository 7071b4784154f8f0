//! The demand topic (`kafka.demand_topic`): one plan per target, however
//! many partitions and instances hold its campaigns.
//!
//! ```text
//! partition engine ×N (every instance) ──DemandShare per target, each bin step and send──►
//!     demand topic (compacted; key = target + source partition)
//!         ──► every instance's planner task: latest share of every source (SharedPlans)
//!             └─ owner of the target (holds its home partition): plans it and
//!                exports floodgate_target_desired_replicas{target}
//! ```
//!
//! * **Sources.** A partition engine runs with
//!   [`Engine::with_shared_plans`](crate::engine::Engine::with_shared_plans):
//!   besides planning its own campaigns (its `scale_ahead` signals, tied to
//!   its input offsets and delivered at least once, are what they were), it
//!   exports a [`DemandShare`] per target at each bin step and send — the
//!   latest demand record of each of its campaigns of the target and the
//!   target's clicks in its last final bins. The partition
//!   task publishes it ([`publish_shares`]) keyed by target and source
//!   (`<input topic>/<partition>`), so compaction keeps each source's latest
//!   and a partition that moves to another instance keeps its key. Nothing
//!   is published while a partition rebuilds (its first live bin step
//!   publishes its whole state again).
//! * **The owner.** Each target has a *home partition*: partition
//!   `fnv1a(target) mod P` of the first input topic (P partitions). The
//!   consumer group assigns that partition to exactly one instance, which
//!   therefore owns the target: it alone plans it from every source and
//!   exports `floodgate_target_desired_replicas{target}` and
//!   `floodgate_target_forecast_rps{target}` (and `/api/targets`). The
//!   owner's decisions are not published as signals: unlike a partition's,
//!   they are not tied to input offsets, so they could not keep the signal
//!   topic's at-least-once, no-duplicate guarantee through a crash; the
//!   gauge is recomputed from the shares and is always current. With one instance it owns every
//!   target. When the home partition moves, the new owner plans from every
//!   source's latest share at once (it has read them all); the cooldown's
//!   history starts again.
//! * **Every instance reads every share** ([`run_planner`]): the whole
//!   topic from its start, without a consumer group, kept as
//!   [`SharedPlans`], which merges the sources' shares in event time (a
//!   target is planned at a time once every source holding its campaigns
//!   has shared up to it). A source quiet for 10 s more than
//!   `kafka.idle_partition_timeout` (wall clock) is released so that it does
//!   not hold its targets back. A share that cannot be decoded is logged with its partition and
//!   offset, counted in `floodgate_demand_records_rejected_total`, and
//!   skipped.
//!
//! Why a topic and not a Prometheus `sum()`: the plan is not a sum. It
//! takes a quantile of the summed forecast paths over a window that moves
//! with event time, a floor from the summed clicks, and the stabilisation of
//! the applied count; summing per-instance replica counts (or taking their
//! `max()`) gets all three wrong when two waves of one target sit on two
//! instances. A share is the planner's whole input
//! ([`crate::engine::planner`]), so the owner's decisions are those of one
//! engine holding every campaign (`tests/shared_plans.rs`,
//! `tests/kafka_shared_plan.rs`: within one replica; what remains is that
//! each engine learns its targets' model from its own campaigns),
//! and the KEDA query stays `max(floodgate_target_desired_replicas{…})` —
//! over the one instance that exports the target.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{lock, Ctx, TopicPartition};
use crate::config::Config;
use crate::engine::planner::DemandShare;
use crate::engine::shared_plan::SharedPlans;
use crate::engine::EngineConfig;
use crate::shutdown::Shutdown;
use crate::sink::kafka::{client_config, OutRecord, Outbox};
use crate::sink::metrics::{Metrics, TargetPlan};

/// Version of the demand record's format.
pub const DEMAND_FORMAT: u32 = 1;

/// One record of the demand topic.
#[derive(Debug, Serialize, Deserialize)]
pub struct DemandMessage {
    /// [`DEMAND_FORMAT`].
    pub format: u32,
    /// The engine it comes from: `<input topic>/<partition>`.
    pub source: String,
    /// Its demand on one target.
    pub share: DemandShare,
}

/// The key of `source`'s share of `target`: unique per (target, source), so
/// compaction keeps the latest of each.
pub fn demand_key(target: &str, source: &str) -> Vec<u8> {
    format!("{target}\u{1f}{source}").into_bytes()
}

/// The home partition of `target` among `partitions` partitions: FNV-1a
/// (64-bit) of its name, modulo. The same in every instance and release.
pub fn home_partition(target: &str, partitions: i32) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % partitions.max(1) as u64) as i32
}

/// Publishes a partition engine's shares to `topic` (fire and forget: a
/// lost share is replaced by the next bin step's; a failure is logged and
/// counted in `floodgate_demand_publish_errors_total`).
pub(super) fn publish_shares(outbox: &Outbox, topic: &Arc<str>, source: &str, shares: Vec<DemandShare>, metrics: &Metrics) {
    for share in shares {
        let key = demand_key(&share.target, source);
        let time_ms = share.time_ms;
        let msg = DemandMessage { format: DEMAND_FORMAT, source: source.to_string(), share };
        let payload = match serde_json::to_vec(&msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "demand share not serialisable");
                continue;
            }
        };
        let record =
            OutRecord { topic: topic.clone(), key: Some(key), payload: Some(payload), headers: Vec::new(), timestamp_ms: Some(time_ms) };
        if let Err(e) = outbox.try_send(&record) {
            metrics.demand_publish_errors.inc();
            if outbox.should_warn() {
                tracing::warn!(topic = %topic, error = %e, "demand share not published (the next bin step's replaces it)");
            }
        }
    }
}

/// What the planner task publishes for the aggregator: the plans of the
/// targets this instance owns, by name.
pub(super) type PlanBoard = Mutex<BTreeMap<String, TargetPlan>>;

/// How often ownership is checked (and the input topic's partition count
/// re-read).
const OWNERSHIP_EVERY: Duration = Duration::from_secs(1);

/// The planner task: reads every share from the demand topic, plans the
/// targets this instance owns and leaves their plans on `board`, until
/// `shutdown`.
pub(super) async fn run_planner(ctx: Arc<Ctx>, board: Arc<PlanBoard>, mut shutdown: Shutdown) {
    let k = &ctx.cfg.kafka;
    let topic = k.demand_topic.clone();
    let consumer = loop {
        match demand_reader(&ctx.cfg, &topic).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "cannot read the demand topic yet (retrying in 2 s)");
                tokio::select! {
                    _ = shutdown.recv() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let engine_cfg: EngineConfig = (&*ctx.cfg).into();
    let mut plans = SharedPlans::new(Arc::new(engine_cfg));
    let mut owner = Ownership::default();
    owner.refresh(&ctx).await;
    let mut tick = tokio::time::interval(OWNERSHIP_EVERY);
    let mut out = Vec::new();
    // When each source last shared (wall clock): a source quiet for longer
    // than an idle partition takes to advance is released from the frontier.
    let mut heard: BTreeMap<String, Instant> = BTreeMap::new();
    let quiet = Duration::from_millis(k.idle_partition_timeout.ms().max(0) as u64) + Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {
                owner.refresh(&ctx).await;
                let targets: Vec<Arc<str>> = plans.targets().cloned().collect();
                for t in targets {
                    if !owner.owns(&ctx, &t) {
                        plans.disown(&t);
                    }
                }
                heard.retain(|source, at| {
                    let gone = at.elapsed() > quiet;
                    if gone {
                        plans.release(source, &mut out);
                    }
                    !gone
                });
                out.clear();
                publish_board(&ctx, &owner, &plans, &board);
            }
            m = consumer.recv() => {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(topic = %topic, error = %e, "demand topic read error (retried by librdkafka)");
                        continue;
                    }
                };
                let Some(payload) = m.payload() else { continue };
                let msg: DemandMessage = match serde_json::from_slice(payload) {
                    Ok(msg) => msg,
                    Err(e) => {
                        ctx.metrics.demand_rejected.inc();
                        tracing::warn!(topic = %topic, partition = m.partition(), offset = m.offset(), error = %e, "demand record skipped: not a demand share");
                        continue;
                    }
                };
                if msg.format != DEMAND_FORMAT {
                    ctx.metrics.demand_rejected.inc();
                    tracing::warn!(topic = %topic, partition = m.partition(), offset = m.offset(), format = msg.format, "demand record skipped: unknown format");
                    continue;
                }
                if owner.partitions.is_none() {
                    owner.refresh(&ctx).await;
                }
                let owned = owner.owns(&ctx, &msg.share.target);
                out.clear();
                heard.insert(msg.source.clone(), Instant::now());
                plans.apply(&msg.source, msg.share, owned, &mut out);
                if !out.is_empty() {
                    // The applied count moved (the signals themselves stay here).
                    out.clear();
                    publish_board(&ctx, &owner, &plans, &board);
                }
            }
        }
    }
}

/// Leaves the plans of the owned targets on `board`: every target this
/// instance plans, and every configured target it owns (at its
/// `min_replicas` while no engine has shared demand on it).
fn publish_board(ctx: &Ctx, owner: &Ownership, plans: &SharedPlans, board: &PlanBoard) {
    let mut owned = BTreeMap::new();
    for name in ctx.cfg.targets.keys() {
        if owner.owns(ctx, name) {
            let p = ctx.cfg.planner_for(name);
            owned.insert(name.clone(), TargetPlan { desired_replicas: p.min_replicas, forecast_rps: p.baseline_rps, headroom: p.headroom });
        }
    }
    for name in plans.targets() {
        if let Some(p) = plans.planner(name) {
            owned.insert(
                name.to_string(),
                TargetPlan { desired_replicas: p.current(), forecast_rps: p.forecast_rps(), headroom: p.headroom() },
            );
        }
    }
    *lock(board) = owned;
}

/// Which targets this instance owns: the partition count of the first input
/// topic (re-read every [`OWNERSHIP_EVERY`]), and the assignment.
#[derive(Default)]
struct Ownership {
    /// Partitions of the first input topic, once known.
    partitions: Option<i32>,
    /// When the count was last read.
    read_at: Option<Instant>,
}

impl Ownership {
    /// Re-reads the first input topic's partition count (off the runtime).
    async fn refresh(&mut self, ctx: &Arc<Ctx>) {
        if self.read_at.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) && self.partitions.is_some() {
            return;
        }
        let Some(topic) = ctx.cfg.kafka.input_topics.first().cloned() else { return };
        let c = ctx.clone();
        let n = tokio::task::spawn_blocking(move || {
            let md = c.reader.fetch_metadata(Some(&topic), Duration::from_secs(5)).ok()?;
            md.topics().iter().find(|t| t.name() == topic).map(|t| t.partitions().len() as i32).filter(|&n| n > 0)
        })
        .await
        .ok()
        .flatten();
        if n.is_some() {
            self.partitions = n;
            self.read_at = Some(Instant::now());
        }
    }

    /// Whether this instance holds `target`'s home partition now.
    fn owns(&self, ctx: &Ctx, target: &str) -> bool {
        let (Some(n), Some(topic)) = (self.partitions, ctx.cfg.kafka.input_topics.first()) else { return false };
        let home = TopicPartition { topic: Arc::from(topic.as_str()), partition: home_partition(target, n) };
        lock(&ctx.handles).contains_key(&home)
    }
}

/// A consumer of the whole demand topic from its start (no group: every
/// instance reads every share).
async fn demand_reader(cfg: &Config, topic: &str) -> Result<StreamConsumer, KafkaError> {
    let k = &cfg.kafka;
    let mut c = client_config(k);
    c.set("group.id", format!("{}.demand-reader", k.group));
    c.set("enable.auto.commit", "false");
    c.set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = c.create()?;
    let timeout = Duration::from_secs(5);
    let t = topic.to_string();
    let md = consumer.fetch_metadata(Some(&t), timeout)?;
    let Some(meta) = md.topics().iter().find(|m| m.name() == topic) else {
        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
    };
    if let Some(e) = meta.error() {
        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::from(e)));
    }
    let mut tpl = TopicPartitionList::new();
    for p in meta.partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_partitions_are_stable_and_spread() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(home_partition("a", 1_000_000_007), (0xaf63_dc4c_8601_ec8c_u64 % 1_000_000_007) as i32);
        assert_eq!(home_partition("shop-web", 1), 0);
        let hits = (0..100).map(|i| home_partition(&format!("target-{i}"), 4)).fold([0; 4], |mut a, p| {
            a[p as usize] += 1;
            a
        });
        assert!(hits.iter().all(|&n| n > 10), "{hits:?}");
    }

    #[test]
    fn a_demand_message_round_trips_and_keys_differ_per_source() {
        let share = DemandShare {
            target: Arc::from("web"),
            time_ms: 60_000,
            reason: crate::signal::ScaleReason::Forecast,
            final_bin: Some(crate::engine::planner::ObservedBin { bin_start_ms: 0, clicks: 2 }),
            observed: vec![crate::engine::planner::ObservedBin { bin_start_ms: 0, clicks: 3 }],
            campaigns: Vec::new(),
        };
        let msg = DemandMessage { format: DEMAND_FORMAT, source: "events/0".into(), share };
        let back: DemandMessage = serde_json::from_slice(&serde_json::to_vec(&msg).expect("json")).expect("parse");
        assert_eq!(back.share, msg.share);
        assert_ne!(demand_key("web", "events/0"), demand_key("web", "events/1"));
        assert_ne!(demand_key("web", "events/0"), demand_key("web2", "events/0"));
    }
}

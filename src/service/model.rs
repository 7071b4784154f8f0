//! The model topic (`kafka.model_topic`): what the partition engines learned
//! (each target's direct wave, audiences, generation interval and prior of
//! R, [`TargetModel`]) kept in a compacted topic keyed by target name, the
//! way Kafka Streams keeps its state stores in changelog topics, so that a
//! restarted or added instance starts from what the others learned.
//!
//! * **Read at start** ([`read_model_topic`]), before any input is consumed:
//!   every partition from its log start to the end offset it had when the
//!   read began, keeping the last good record per key ([`ModelReader`]), so
//!   the result is the same whether or not the broker has compacted yet. A
//!   null value (tombstone) deletes the key; a record that cannot be used is
//!   logged with its topic, partition, offset and reason, counted in
//!   `floodgate_model_records_rejected_total{reason}` and skipped (an
//!   earlier good record of its key stays). The result is loaded into every
//!   partition engine when it is created ([`Engine::load_model`](crate::engine::Engine::load_model));
//!   an engine created later (a partition assigned by a rebalance) starts
//!   from it with what this instance's engines have learned since
//!   ([`ModelBoard::model_for_new_engine`]).
//! * **Published** ([`ModelPublisher`]) every `kafka.model_publish_interval`
//!   and once more at graceful shutdown: per target, the [`TargetModel`] of
//!   the partition engine that learned its direct wave from the most
//!   delays (as `best_direct_waves` picks the one the metrics show), only
//!   when it differs from what this instance last published (or read at
//!   start). Partition tasks leave their engine's
//!   [`learned_model`](crate::engine::Engine::learned_model) on a
//!   [`ModelBoard`] every half interval and when they stop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};

use super::lock;
use crate::config::KafkaConfig;
use crate::engine::model_file::{LearnedModel, ModelError, TargetModel, TargetRecord};
use crate::shutdown::Shutdown;
use crate::sink::kafka::{client_config, OutRecord, Outbox, QuietContext};
use crate::sink::metrics::Metrics;

/// Longest time reading the model topic may go without a record or an
/// end-of-partition before the read is given up (and retried).
const READ_STALL: Duration = Duration::from_secs(30);

/// Why the model topic could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ModelTopicError {
    /// The broker refused or could not be reached.
    #[error("model topic {topic}: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// The client's error.
        source: KafkaError,
    },
    /// No record and no end of partition arrived for [`READ_STALL`].
    #[error("model topic {topic}: partition {partition} stalled at offset {position} before its end offset {end}")]
    Stalled {
        /// The topic.
        topic: String,
        /// The first partition not read to its end.
        partition: i32,
        /// The offset after the last record read from it (its log start if none).
        position: i64,
        /// Its end offset when the read began.
        end: i64,
    },
}

/// Why a model-topic record was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The `reason` label of `floodgate_model_records_rejected_total`
    /// (one of [`MODEL_REJECT_REASONS`](crate::sink::metrics::MODEL_REJECT_REASONS)).
    pub reason: &'static str,
    /// What was wrong, naming the field.
    pub detail: String,
}

/// What a model-topic record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A good record: its target's model is now this one.
    Model,
    /// A tombstone: its target was deleted.
    Deleted,
}

/// The model topic as read so far: the last good record per key.
#[derive(Debug)]
pub struct ModelReader {
    /// `estimator.bin` of this configuration, ms: records of another bin are skipped.
    bin_ms: i64,
    /// `limits.max_audiences_per_target`: records with more are skipped.
    max_audiences: u32,
    /// The model per target.
    targets: BTreeMap<String, TargetModel>,
}

impl ModelReader {
    /// An empty reader for an engine with `bin_ms` bins and at most
    /// `max_audiences` audiences per target.
    pub fn new(bin_ms: i64, max_audiences: u32) -> ModelReader {
        ModelReader { bin_ms, max_audiences, targets: BTreeMap::new() }
    }

    /// Takes one record (`key`, `value`; `value` `None` is a tombstone).
    pub fn take(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Taken, Rejected> {
        let reject = |reason, detail: String| Rejected { reason, detail };
        let Some(key) = key else { return Err(reject("key", "no key (a model record is keyed by its target)".into())) };
        let Ok(key) = std::str::from_utf8(key) else { return Err(reject("key", "the key is not UTF-8".into())) };
        let Some(value) = value else {
            self.targets.remove(key);
            return Ok(Taken::Deleted);
        };
        let record = TargetRecord::from_json(value).map_err(|e| {
            let reason = match &e {
                ModelError::Json(_) => "json",
                ModelError::Format { .. } => "format",
                ModelError::Version { .. } => "version",
                ModelError::Bin { .. } => "bin",
                _ => "invalid",
            };
            reject(reason, e.to_string())
        })?;
        if record.target != key {
            return Err(reject("key", format!("the key {key:?} is not the record's target {:?}", record.target)));
        }
        if record.bin_ms != self.bin_ms {
            return Err(reject("bin", ModelError::Bin { model: record.bin_ms, config: self.bin_ms }.to_string()));
        }
        let audiences = record.model.audiences.len();
        if audiences > self.max_audiences as usize {
            let e = ModelError::TooManyAudiences { target: record.target, found: audiences, max: self.max_audiences };
            return Err(reject("invalid", e.to_string()));
        }
        self.targets.insert(record.target, record.model);
        Ok(Taken::Model)
    }

    /// What was read, as a model for [`Engine::load_model`](crate::engine::Engine::load_model).
    pub fn into_model(self) -> LearnedModel {
        let mut m = LearnedModel::empty(self.bin_ms);
        m.targets = self.targets;
        m
    }
}

/// Reads `topic` from the log start of each partition to its end offset
/// (taken when the read begins) into `reader`; returns the records read.
/// A missing topic is an empty one. Blocking (run it off the runtime).
pub fn read_model_topic(k: &KafkaConfig, topic: &str, reader: &mut ModelReader, metrics: &Metrics) -> Result<u64, ModelTopicError> {
    let kafka = |source| ModelTopicError::Kafka { topic: topic.to_string(), source };
    let mut c = client_config(k);
    c.set("group.id", format!("{}.model-reader", k.group));
    c.set("enable.auto.commit", "false");
    c.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<QuietContext> = c.create_with_context(QuietContext::new("model-reader")).map_err(kafka)?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(kafka)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(0) };
    if let Some(e) = t.error() {
        let code = RDKafkaErrorCode::from(e);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition {
            tracing::info!(topic, "the model topic does not exist (yet): starting from the configured priors");
            return Ok(0);
        }
        return Err(kafka(KafkaError::MetadataFetch(code)));
    }
    // Partition → (next offset, end offset) of the partitions with records.
    let mut open: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).map_err(kafka)?;
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low)).map_err(kafka)?;
            open.insert(p.id(), (low, high));
        }
    }
    if open.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl).map_err(kafka)?;
    let mut records = 0u64;
    let mut last_progress = Instant::now();
    while let Some((&partition, &(position, end))) = open.iter().next() {
        if last_progress.elapsed() > READ_STALL {
            return Err(ModelTopicError::Stalled { topic: topic.to_string(), partition, position, end });
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let (p, offset) = (m.partition(), m.offset());
                let Some(&(_, end)) = open.get(&p) else { continue };
                records += 1;
                match reader.take(m.key(), m.payload()) {
                    Ok(Taken::Model) => tracing::debug!(topic, partition = p, offset, "model record read"),
                    Ok(Taken::Deleted) => tracing::debug!(topic, partition = p, offset, "model tombstone read"),
                    Err(r) => {
                        metrics.model_rejected.with_label_values(&[r.reason]).inc();
                        tracing::warn!(topic, partition = p, offset, reason = r.reason, detail = %r.detail, "model record skipped");
                    }
                }
                if offset + 1 >= end {
                    open.remove(&p);
                } else {
                    open.insert(p, (offset + 1, end));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                last_progress = Instant::now();
                open.remove(&p);
            }
            Some(Err(e)) => tracing::debug!(topic, error = %e, "model topic read error (retried by librdkafka)"),
            None => {}
        }
    }
    Ok(records)
}

/// Reads the model topic at start, retrying (every 5 s) until it has been
/// read to its end or `shutdown` fires (then `None`).
pub(super) async fn load_at_start(
    k: &KafkaConfig,
    topic: &str,
    bin_ms: i64,
    max_audiences: u32,
    metrics: &Metrics,
    shutdown: &mut Shutdown,
) -> Option<LearnedModel> {
    loop {
        let (k2, t2, m2) = (k.clone(), topic.to_string(), metrics.clone());
        let read = tokio::task::spawn_blocking(move || {
            let mut reader = ModelReader::new(bin_ms, max_audiences);
            read_model_topic(&k2, &t2, &mut reader, &m2).map(|n| (n, reader.into_model()))
        });
        let outcome = tokio::select! {
            r = read => r,
            _ = shutdown.recv() => return None,
        };
        match outcome {
            Ok(Ok((records, model))) => {
                metrics.model_targets_loaded.set(model.targets.len() as i64);
                tracing::info!(topic, records, targets = model.targets.len(), "model topic read: partition engines start from it");
                return Some(model);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not read the model topic; retrying in 5 s (input waits)"),
            Err(e) => tracing::warn!(error = %e, "the model topic reader stopped; retrying in 5 s (input waits)"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.recv() => return None,
        }
    }
}

/// The latest learned model of each partition engine, left by the
/// partition tasks (kept after a partition is revoked: it is still what
/// was learned).
#[derive(Debug, Default)]
pub(super) struct ModelBoard {
    /// By (topic, partition), in that order (ties between partitions go to
    /// the first, so the choice does not flip between publications).
    by_partition: Mutex<BTreeMap<(String, i32), LearnedModel>>,
}

impl ModelBoard {
    /// Leaves the model of the engine of `topic`/`partition`.
    pub(super) fn store(&self, topic: &str, partition: i32, model: LearnedModel) {
        lock(&self.by_partition).insert((topic.to_string(), partition), model);
    }

    /// Per target, the model of the partition engine that learned its
    /// direct wave from the most delays.
    fn best(&self) -> BTreeMap<String, TargetModel> {
        let board = lock(&self.by_partition);
        best_models(board.values())
    }

    /// What a partition engine created now starts from: `at_start` (the
    /// model topic as read at start) with each target the partition
    /// engines have learned more of since replaced by their best model.
    pub(super) fn model_for_new_engine(&self, at_start: &LearnedModel) -> LearnedModel {
        let mut m = at_start.clone();
        for (name, t) in self.best() {
            let more = m.targets.get(&name).is_none_or(|s| t.direct.delays.observed > s.direct.delays.observed);
            if more {
                m.targets.insert(name, t);
            }
        }
        m
    }
}

/// Per target, the [`TargetModel`] of the model whose direct wave learned
/// from the most delays (`direct.delays.observed`; the first on ties).
pub fn best_models<'a>(models: impl IntoIterator<Item = &'a LearnedModel>) -> BTreeMap<String, TargetModel> {
    let mut out: BTreeMap<String, TargetModel> = BTreeMap::new();
    for m in models {
        for (name, t) in &m.targets {
            match out.get(name) {
                Some(best) if best.direct.delays.observed >= t.direct.delays.observed => {}
                _ => {
                    out.insert(name.clone(), t.clone());
                }
            }
        }
    }
    out
}

/// Publishes the targets whose best model changed (see the module docs).
pub(super) struct ModelPublisher {
    /// `kafka.model_topic`.
    topic: Arc<str>,
    /// `estimator.bin`, ms.
    bin_ms: i64,
    /// Where partition tasks leave their models.
    board: Arc<ModelBoard>,
    /// The instance's producer.
    outbox: Outbox,
    /// `floodgate_model_records_published_total`.
    metrics: Metrics,
    /// What was published; one publication at a time.
    state: tokio::sync::Mutex<Published>,
}

/// What a [`ModelPublisher`] knows of the topic.
struct Published {
    /// What the topic holds as far as this instance knows: read at start,
    /// then what it published (acknowledged).
    last: BTreeMap<String, TargetModel>,
    /// Records handed to the producer and not acknowledged yet (e.g. the
    /// topic does not exist and may not be created): their targets are not
    /// sent again until they are, so the producer's queue does not grow.
    unacked: Vec<(TargetRecord, DeliveryFuture)>,
}

impl ModelPublisher {
    /// A publisher to `topic` that knows the topic holds `loaded`.
    pub(super) fn new(topic: &str, loaded: &LearnedModel, board: Arc<ModelBoard>, outbox: Outbox, metrics: Metrics) -> ModelPublisher {
        ModelPublisher {
            topic: Arc::from(topic),
            bin_ms: loaded.bin_ms,
            board,
            outbox,
            metrics,
            state: tokio::sync::Mutex::new(Published { last: loaded.targets.clone(), unacked: Vec::new() }),
        }
    }

    /// Publishes every target whose best model differs from what the topic
    /// holds (and that has no record still waiting for its
    /// acknowledgement), waiting at most `limit` for the acknowledgements;
    /// returns the records acknowledged. A record not acknowledged in time
    /// stays with the producer and is waited for next time.
    pub(super) async fn publish(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        let mut state = self.state.lock().await;
        let Published { last, unacked } = &mut *state;
        // (record, delivery, sent in this round)
        let mut pending: Vec<(TargetRecord, DeliveryFuture, bool)> =
            std::mem::take(unacked).into_iter().map(|(r, f)| (r, f, false)).collect();
        let changed: Vec<(String, TargetModel)> = self
            .board
            .best()
            .into_iter()
            .filter(|(t, m)| last.get(t) != Some(m) && !pending.iter().any(|(r, _, _)| &r.target == t))
            .collect();
        for (target, model) in changed {
            let rec = TargetRecord::new(self.bin_ms, &target, model);
            let record = OutRecord {
                topic: self.topic.clone(),
                key: Some(target.as_bytes().to_vec()),
                payload: Some(rec.to_json().into_bytes()),
                headers: Vec::new(),
                timestamp_ms: None,
            };
            loop {
                match self.outbox.try_send(&record) {
                    Ok(f) => {
                        pending.push((rec, f, true));
                        break;
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, target = %target, error = %e, "could not publish a target's model (again next time)");
                        break;
                    }
                }
            }
        }
        let mut acknowledged = 0;
        for (rec, mut f, fresh) in pending {
            match tokio::time::timeout_at(deadline, &mut f).await {
                Ok(Ok(Ok(_))) => {
                    self.metrics.model_published.inc();
                    acknowledged += 1;
                    last.insert(rec.target, rec.model);
                }
                Ok(Ok(Err((e, _)))) => {
                    tracing::warn!(topic = %self.topic, target = %rec.target, error = %e, "a target's model was not delivered (again next time)")
                }
                Ok(Err(_)) => tracing::warn!(topic = %self.topic, target = %rec.target, "a target's model delivery was cancelled"),
                Err(_) => {
                    if fresh {
                        tracing::warn!(topic = %self.topic, target = %rec.target, "a target's model is not acknowledged yet (does the model topic exist?); it is not sent again until it is");
                    }
                    unacked.push((rec, f));
                }
            }
        }
        if acknowledged > 0 {
            tracing::info!(topic = %self.topic, targets = acknowledged, "learned model published");
        }
        acknowledged
    }

    /// Publishes every `every` until `shutdown` (the final publication is
    /// the caller's, once the partition tasks have stopped).
    pub(super) async fn run_periodic(self: Arc<Self>, every: Duration, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.recv() => return,
                _ = tick.tick() => {}
            }
            self.publish(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delay_learner::BINS;
    use crate::engine::model_file::{DelaySums, DirectWaveModel};

    fn target(observed: f64) -> TargetModel {
        TargetModel {
            direct: DirectWaveModel {
                delays: DelaySums { in_bin: vec![1.0; BINS], up_to_bin: vec![2.0; BINS], observed },
                click_through_pool: Vec::new(),
            },
            audiences: BTreeMap::new(),
            generation_interval: None,
            r_prior: None,
            headroom: None,
        }
    }

    fn record(bin_ms: i64, name: &str, observed: f64) -> Vec<u8> {
        TargetRecord::new(bin_ms, name, target(observed)).to_json().into_bytes()
    }

    #[test]
    fn the_last_good_record_per_key_wins_and_a_tombstone_deletes() {
        let mut r = ModelReader::new(60_000, 2);
        assert_eq!(r.take(Some(b"web"), Some(&record(60_000, "web", 5.0))), Ok(Taken::Model));
        assert_eq!(r.take(Some(b"web"), Some(&record(60_000, "web", 7.0))), Ok(Taken::Model));
        assert_eq!(r.take(Some(b"api"), Some(&record(60_000, "api", 1.0))), Ok(Taken::Model));
        assert_eq!(r.take(Some(b"api"), None), Ok(Taken::Deleted));
        // Bad records after a good one leave it in place.
        assert_eq!(r.take(Some(b"web"), Some(b"garbage")).map_err(|e| e.reason), Err("json"));
        let v2 = String::from_utf8_lossy(&record(60_000, "web", 9.0)).replacen("\"version\":1", "\"version\":2", 1);
        assert_eq!(r.take(Some(b"web"), Some(v2.as_bytes())).map_err(|e| e.reason), Err("version"));
        let e = r.take(Some(b"web"), Some(&record(300_000, "web", 9.0))).expect_err("bin");
        assert_eq!(e.reason, "bin");
        assert!(e.detail.contains("300000") && e.detail.contains("60000"), "{}", e.detail);
        assert_eq!(r.take(Some(b"blog"), Some(&record(60_000, "web", 9.0))).map_err(|e| e.reason), Err("key"));
        assert_eq!(r.take(None, Some(&record(60_000, "web", 9.0))).map_err(|e| e.reason), Err("key"));
        let mut many = target(9.0);
        for a in ["a", "b", "c"] {
            many.audiences.insert(a.into(), target(1.0).direct);
        }
        let too_many = TargetRecord::new(60_000, "web", many).to_json();
        assert_eq!(r.take(Some(b"web"), Some(too_many.as_bytes())).map_err(|e| e.reason), Err("invalid"));
        let m = r.into_model();
        assert_eq!(m.targets.keys().collect::<Vec<_>>(), ["web"]);
        assert_eq!(m.targets["web"].direct.delays.observed, 7.0);
        assert_eq!(m.bin_ms, 60_000);
    }

    #[test]
    fn a_later_engine_starts_from_what_the_instance_learned_since() {
        let mut at_start = LearnedModel::empty(60_000);
        at_start.targets.insert("web".into(), target(10.0));
        at_start.targets.insert("api".into(), target(40.0));
        let board = ModelBoard::default();
        let mut p0 = at_start.clone();
        p0.targets.insert("web".into(), target(25.0));
        p0.targets.insert("blog".into(), target(3.0));
        board.store("in", 0, p0);
        let m = board.model_for_new_engine(&at_start);
        let observed: Vec<(&str, f64)> = m.targets.iter().map(|(k, t)| (k.as_str(), t.direct.delays.observed)).collect();
        assert_eq!(observed, [("api", 40.0), ("blog", 3.0), ("web", 25.0)]);
        assert_eq!(ModelBoard::default().model_for_new_engine(&at_start), at_start);
    }

    #[test]
    fn the_model_that_learned_from_the_most_delays_is_published() {
        let mut a = LearnedModel::empty(60_000);
        a.targets.insert("web".into(), target(10.0));
        a.targets.insert("api".into(), target(50.0));
        let mut b = LearnedModel::empty(60_000);
        b.targets.insert("web".into(), target(30.0));
        b.targets.insert("api".into(), target(50.0));
        let best = best_models([&a, &b]);
        assert_eq!(best["web"].direct.delays.observed, 30.0);
        assert_eq!(best["api"], a.targets["api"]);
    }
}

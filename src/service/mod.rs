//! `floodgate run`: the Kafka consumer-group service.
//!
//! ```text
//! consumer thread (BaseConsumer::poll, rebalance callback, commits)
//!    │  per-partition bounded channel of batches (full ⇒ that partition is paused)
//!    ▼
//! partition task ×N (tokio): decode → Engine (one per partition) → signals
//!    │  idempotent producer; delivery futures tracked in order
//!    ▼
//! signal topic / estimate topic / dead-letter topic
//! aggregator (1 s): metrics, /readyz, /api/campaigns from partition snapshots
//! ```
//!
//! **One engine per assigned partition.** Each partition task owns its
//! campaign table; nothing is shared on the hot path. Events are keyed by
//! campaign, so a campaign lives in one partition (an event whose key is not
//! its campaign is counted in `floodgate_unkeyed_events_total` and warned
//! about once a minute per partition: its campaign's estimate would be split
//! across partitions and instances).
//!
//! **Watermarks.** A partition engine's watermark is its own natural
//! watermark (latest event time − `estimator.allowed_lateness`), so an idle
//! partition never holds others back. A partition with no message for
//! `kafka.idle_partition_timeout` (wall clock) is advanced to its latest
//! event time plus the idle gap, so its last windows close (signals of such
//! idle closes are not reproduced by a rebuild, see below).
//!
//! **Signals per partition.** `scale_ahead` signals of a partition engine
//! describe that partition's campaigns; the metrics
//! `floodgate_target_forecast_rps{target}` sum over this instance's partition
//! engines and `floodgate_target_desired_replicas{target}` applies the
//! target's planner to that sum; across instances, `sum by (target)` in
//! Prometheus is authoritative. With a single-partition topic, `run` emits
//! exactly the signals (and CloudEvents ids) of `replay` on the same log,
//! except for windows still open when input pauses (replay flushes them at
//! end of input; `run` never flushes).
//!
//! **At-least-once, no double signals.** A message's offset becomes
//! committable only once it is applied and every record it caused (signals,
//! estimates, its dead letter) is acknowledged by the broker; the committable
//! offset is the lowest offset with unacknowledged effects (or a far-future
//! event held for confirmation, as in `replay`). Offsets are committed every
//! `kafka.commit_interval`, and synchronously on revoke and at shutdown.
//!
//! **Rebuild on assignment.** A newly assigned partition is rewound from its
//! committed offset C by `kafka.rebuild_max_messages` (Tansu 0.6 answers
//! `offsets_for_times` with the log start for every timestamp, so a
//! timestamp rewind is not possible against it) and replayed up to C with
//! signals, dead letters and counters suppressed (they were produced before
//! the commit). The rewind should cover [`rebuild_span_ms`]: max(estimator
//! window, lineage window) + 5 mean generation intervals + allowed lateness;
//! the log says when it did not. The partition is not ready until rebuilt.
//! Deterministic ids plus rebuilt detector state mean a restart does not
//! emit a second `viral_onset` for an episode. Limits: a campaign whose
//! earlier episodes lie before the rewind restarts its episode count;
//! signals of idle-partition closes are not re-derived.
//!
//! **Offset gaps (Tansu fetch quirk).** Tansu 0.6 answers a fetch at an
//! offset inside a record batch with the *next* batch (seen after a seek to
//! the committed offset, the rebuild rewind, or a pause/resume). A partition
//! task therefore checks that offsets arrive without a gap past what it must
//! see; on a gap it asks the consumer thread to seek further back (1000
//! messages, doubling) and ignores re-delivered offsets it already
//! processed. A gap that remains after reading sequentially from an earlier
//! batch boundary is real (compaction, transaction markers) and accepted.
//!
//! **Batches.** The consumer thread hands messages to partition tasks in
//! [`Batch`]es: after `poll` returns a message it keeps polling with a zero
//! timeout while librdkafka has fetched messages ready (at most
//! [`MAX_BATCH`] messages or [`MAX_BATCH_BYTES`] bytes), and sends each
//! partition's share as one channel item. Per message, the hand-over used to
//! cost more CPU than decoding and applying the event; now the handles lock,
//! the lookup, the channel send and the task wakeup happen once per batch,
//! and so do the task's clock read, position store, commit-offset update and
//! metric flushes. A burst never waits for input (it ends when librdkafka's
//! queue is empty), so batching adds no latency to a slow input; batches grow
//! when messages are waiting, which is when the savings matter.
//!
//! **Shutdown.** SIGTERM/SIGINT: stop consuming, wait for acknowledgements
//! (at most `kafka.shutdown_timeout`), commit, leave the group, publish the
//! learned model. Open windows are *not* flushed: a restart continues them.
//!
//! **The learned model** ([`model`](self::model)): read from
//! `kafka.model_topic` at start, before the group is joined, and loaded into
//! every partition engine when it is created; the partition tasks leave
//! their engines' learned models on a board, from which the targets that
//! changed are published every `kafka.model_publish_interval` and at
//! shutdown.
//!
//! **Parts**, one job each:
//!
//! * this module — wiring ([`run`]) and errors ([`ServiceError`]);
//! * [`consumer`](self::consumer) — the consumer thread: poll bursts,
//!   dispatch, pause/resume, seeks, commits, rebalances;
//! * [`batch`](self::batch) — [`Batch`]: one partition's messages of a poll burst;
//! * [`partition`](self::partition) — the partition task and its states
//!   (rebuilding/live, offset-gap recovery), with the per-message ingest step;
//! * [`outbox`](self::outbox) — ordered acknowledgement → committable offset;
//! * [`dead_letter`](self::dead_letter) — dead-letter records and the
//!   scrubbing of their details;
//! * [`model`](self::model) — the model topic: read at start, publication;
//! * [`status`](self::status) — aggregation for `/metrics`, `/readyz` and
//!   `/api/campaigns` into [`crate::status::Status`].

mod batch;
mod consumer;
mod dead_letter;
pub mod demand;
pub mod model;
mod outbox;
mod partition;
mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::broadcast;

use self::batch::BATCH_POOL;
pub use self::batch::{Batch, MAX_BATCH, MAX_BATCH_BYTES};
use self::consumer::{consumer_loop, Handle};
pub use self::dead_letter::scrub_detail;
use self::demand::PlanBoard;
use self::model::{ModelBoard, ModelPublisher};
use crate::config::Config;
use crate::engine::model_file::LearnedModel;
use crate::engine::{Engine, EngineConfigError};
use crate::shutdown::Shutdown;
use crate::sink::kafka::{Fatal, Outbox, QuietContext};
use crate::sink::metrics::Metrics;
use crate::source::kafka::{ensure_topic, ensure_topic_with, group_consumer, offsets_reader};
pub use crate::status::{ApiView, PartitionView, Status};

/// Records in flight per partition before it stops taking messages.
const MAX_INFLIGHT: usize = 50_000;
/// Messages buffered per partition between the consumer thread and its task
/// (counted in messages, not batches; see `PartitionShared::queued`).
const CHANNEL: usize = 16_384;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is not usable by the engine.
    #[error(transparent)]
    Engine(#[from] EngineConfigError),
    /// A Kafka client could not be created or subscribe.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The producer hit a fatal error (see [`crate::sink::kafka`]); offsets
    /// of what was acknowledged were committed before stopping.
    #[error("fatal Kafka producer error: {0}")]
    Fatal(String),
    /// The HTTP listener could not bind.
    #[error("http listen {addr}: {source}")]
    Http {
        /// `http.listen`.
        addr: String,
        /// The bind error.
        source: std::io::Error,
    },
    /// The consumer thread could not be started (the OS refused a thread).
    #[error("could not start the consumer thread: {0}")]
    ConsumerThread(#[source] std::io::Error),
}

/// The event-time span a rebuild should replay before the committed offset:
/// max(estimator window, lineage window) + 5 × mean generation interval (the
/// tail of the generation interval feeding the window's first bins) +
/// allowed lateness.
pub fn rebuild_span_ms(cfg: &Config) -> i64 {
    let bin = cfg.estimator.bin.ms();
    let window = i64::from(cfg.window_in_bins()) * bin;
    let lineage = i64::from(cfg.lineage_window_in_bins()) * bin;
    window.max(lineage) + 5 * cfg.estimator.generation_interval.mean.ms() + cfg.estimator.allowed_lateness.ms()
}

/// A partition of an input topic (the key of the consumer thread's handles).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TopicPartition {
    /// The topic.
    topic: Arc<str>,
    /// The partition.
    partition: i32,
}

/// An offset in a partition: one to commit, or one to seek to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PartitionOffset {
    /// The topic.
    topic: Arc<str>,
    /// The partition.
    partition: i32,
    /// The offset.
    offset: i64,
}

/// What the consumer thread, the rebalance callbacks, the partition tasks'
/// start and the aggregator share.
struct Ctx {
    /// The configuration.
    cfg: Arc<Config>,
    /// Metrics.
    metrics: Metrics,
    /// The producer every partition task sends through.
    outbox: Outbox,
    /// `kafka.signal_topic`.
    signal_topic: Arc<str>,
    /// `kafka.estimate_topic`, if set.
    estimate_topic: Option<Arc<str>>,
    /// `kafka.dead_letter_topic`.
    dead_letter_topic: Arc<str>,
    /// The assigned partitions' tasks.
    handles: Mutex<HashMap<TopicPartition, Handle>>,
    /// Where partition tasks ask the consumer thread to seek back (cloned
    /// into each task).
    reseek_tx: Mutex<std::sync::mpsc::Sender<PartitionOffset>>,
    /// Where partition tasks return emptied batches for reuse.
    recycle_tx: std::sync::mpsc::SyncSender<Batch>,
    /// Bumped by every rebalance callback (they run inside `poll`): messages
    /// polled before an assignment must not reach a task started by it.
    epoch: AtomicU64,
    /// The runtime partition tasks are spawned on (from the consumer thread).
    runtime: tokio::runtime::Handle,
    /// Reads committed offsets and watermarks (never subscribes).
    reader: BaseConsumer<QuietContext>,
    /// The consumer loop has stopped its partitions: revokes from leaving
    /// the group need no drain or commit.
    shutting_down: AtomicBool,
    /// What the model topic held at start (empty when `kafka.model_topic`
    /// is off or empty): loaded into every partition engine.
    model: Arc<LearnedModel>,
    /// Where partition tasks leave their learned models for publication
    /// (`None`: `kafka.model_topic` is off).
    model_board: Option<Arc<ModelBoard>>,
    /// `kafka.demand_topic`, if set: partition engines publish their demand
    /// there instead of planning ([`demand`]).
    demand_topic: Option<Arc<str>>,
    /// The plans of the targets this instance owns, from the planner task
    /// (`None`: demand sharing is off).
    plan_board: Option<Arc<PlanBoard>>,
}

/// Locks `m`, recovering the data of a poisoned lock (every writer leaves
/// it consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the service until `shutdown` fires (or a fatal error).
pub async fn run(cfg: Arc<Config>, shutdown: Shutdown) -> Result<(), ServiceError> {
    Engine::new(&*cfg)?;
    let k = &cfg.kafka;
    let metrics = Metrics::new();
    // One internal stop channel: the caller's shutdown, or a fatal producer error.
    let (stop_tx, stop_rx) = broadcast::channel::<()>(4);
    let shutdown = {
        let mut external = shutdown;
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            external.recv().await;
            let _ = tx.send(());
        });
        Shutdown::new(stop_rx)
    };
    let fatal = Arc::new(Fatal::new(stop_tx.clone()));
    let producer = crate::sink::kafka::producer(k)?;
    let outbox = Outbox::new(producer, fatal.clone());
    let status = Status::new(metrics.clone(), "starting: creating output topics");
    let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .map_err(|source| ServiceError::Http { addr: cfg.http.listen.clone(), source })?;
    tracing::info!(listen = %cfg.http.listen, "http: /metrics /healthz /readyz /api/campaigns");
    let http = tokio::spawn(crate::http::serve(listener, status.clone(), shutdown.resubscribe()));
    let mut shutdown = shutdown;

    // After the HTTP server, so that probes answer (503) while a slow or
    // refusing broker (wrong credentials) holds up topic creation.
    for topic in [&k.signal_topic, &k.dead_letter_topic, &k.estimate_topic] {
        if topic.is_empty() {
            continue;
        }
        if !k.create_topics {
            tracing::info!(topic = %topic, "kafka.create_topics = false: the output topic must exist (records for it are retried until it does)");
        } else if let Err(e) = ensure_topic(k, topic, 1).await {
            tracing::warn!(topic = %topic, error = %e, "could not create the output topic (create it yourself)");
        }
    }
    let bin_ms = cfg.estimator.bin.ms();
    let mut model = LearnedModel::empty(bin_ms);
    if !k.model_topic.is_empty() {
        let topic = k.model_topic.as_str();
        if !k.create_topics {
            tracing::info!(topic, "kafka.create_topics = false: the model topic must exist, compacted (cleanup.policy=compact)");
        } else if let Err(e) = ensure_topic_with(k, topic, 1, &[("cleanup.policy", "compact")]).await {
            tracing::warn!(topic, error = %e, "could not create the model topic (create it yourself, with cleanup.policy=compact)");
        }
        *lock(&status.not_ready_reason) = format!("starting: reading the model topic {topic}");
        let max_audiences = cfg.limits.max_audiences_per_target;
        match model::load_at_start(k, topic, bin_ms, max_audiences, &metrics, &mut shutdown).await {
            Some(m) => model = m,
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
                tracing::info!("stopped before the model topic was read");
                return Ok(());
            }
        }
    }
    if !k.demand_topic.is_empty() {
        let topic = k.demand_topic.as_str();
        if !k.create_topics {
            tracing::info!(topic, "kafka.create_topics = false: the demand topic must exist, compacted (cleanup.policy=compact)");
        } else if let Err(e) = ensure_topic_with(k, topic, 1, &[("cleanup.policy", "compact")]).await {
            tracing::warn!(topic, error = %e, "could not create the demand topic (create it yourself, with cleanup.policy=compact)");
        }
    }
    let model = Arc::new(model);
    let model_board = (!k.model_topic.is_empty()).then(|| Arc::new(ModelBoard::default()));
    let publisher = model_board
        .as_ref()
        .map(|board| Arc::new(ModelPublisher::new(&k.model_topic, &model, board.clone(), outbox.clone(), metrics.clone())));
    *lock(&status.not_ready_reason) = "starting: joining the consumer group".to_string();
    let (reseek_tx, reseek_rx) = std::sync::mpsc::channel();
    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel(BATCH_POOL);
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        metrics: metrics.clone(),
        outbox: outbox.clone(),
        signal_topic: Arc::from(k.signal_topic.as_str()),
        estimate_topic: (!k.estimate_topic.is_empty()).then(|| Arc::from(k.estimate_topic.as_str())),
        dead_letter_topic: Arc::from(k.dead_letter_topic.as_str()),
        handles: Mutex::new(HashMap::new()),
        reseek_tx: Mutex::new(reseek_tx),
        recycle_tx,
        epoch: AtomicU64::new(0),
        runtime: tokio::runtime::Handle::current(),
        reader: offsets_reader(k)?,
        shutting_down: AtomicBool::new(false),
        model,
        model_board,
        demand_topic: (!k.demand_topic.is_empty()).then(|| Arc::from(k.demand_topic.as_str())),
        plan_board: (!k.demand_topic.is_empty()).then(|| Arc::new(PlanBoard::default())),
    });
    let consumer = group_consumer(k, ctx.clone())?;
    let topics: Vec<&str> = k.input_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(brokers = %k.brokers, group = %k.group, topics = ?k.input_topics, signal_topic = %k.signal_topic,
        rebuild_span = %crate::time::format_duration_ms(rebuild_span_ms(&cfg)), "floodgate run: consuming");

    let thread_ctx = ctx.clone();
    let thread_shutdown = shutdown.resubscribe();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("floodgate-consumer".into())
        .spawn(move || {
            consumer_loop(&thread_ctx, consumer, reseek_rx, recycle_rx, thread_shutdown);
            let _ = done_tx.send(());
        })
        .map_err(ServiceError::ConsumerThread)?;

    let agg = tokio::spawn(status::aggregate(ctx.clone(), status.clone(), shutdown.resubscribe()));
    let planner = ctx.plan_board.clone().map(|board| tokio::spawn(demand::run_planner(ctx.clone(), board, shutdown.resubscribe())));
    let periodic = publisher.as_ref().map(|p| {
        let every = Duration::from_millis(k.model_publish_interval.ms().max(1) as u64);
        tokio::spawn(p.clone().run_periodic(every, shutdown.resubscribe()))
    });
    shutdown.recv().await;
    tracing::info!("shutting down: draining acknowledgements, committing, leaving the group");
    let limit = Duration::from_millis(cfg.kafka.shutdown_timeout.ms().max(0) as u64) + Duration::from_secs(5);
    if tokio::time::timeout(limit, done_rx).await.is_err() {
        tracing::warn!("the consumer did not stop within kafka.shutdown_timeout");
    }
    if let Some(p) = periodic {
        p.abort();
    }
    if let Some(p) = &publisher {
        // The partition tasks left their final models when they stopped.
        // A few records, acknowledged in milliseconds: at most 5 s more, so
        // the whole shutdown stays within kafka.shutdown_timeout + ~15 s.
        if fatal.reason().is_none() {
            let limit = Duration::from_millis(cfg.kafka.shutdown_timeout.ms().clamp(0, 5_000) as u64);
            p.publish(limit).await;
        }
    }
    outbox.flush(Duration::from_secs(2));
    agg.abort();
    if let Some(p) = planner {
        p.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    if let Some(reason) = fatal.reason() {
        return Err(ServiceError::Fatal(reason));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Sends `()` on `tx` at SIGTERM/SIGINT.
pub async fn shutdown_on_signal(tx: broadcast::Sender<()>) {
    let which = crate::shutdown::signal().await;
    tracing::info!(signal = which, "received signal");
    let _ = tx.send(());
}

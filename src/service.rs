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
//! (at most `kafka.shutdown_timeout`), commit, leave the group. Open windows
//! are *not* flushed: a restart continues them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{broadcast, mpsc};

use crate::config::Config;
use crate::decode::{decode, RejectReason, Rejection};
use crate::engine::{Applied, CampaignView, Engine, EngineConfigError, Stats, TargetView};
use crate::event::EventKind;
use crate::shutdown::Shutdown;
use crate::signal::Signal;
use crate::sink::kafka::{Fatal, OutRecord, Outbox, Pending, QuietContext};
use crate::sink::metrics::{rank_campaigns, sum_targets, Metrics};
use crate::source::kafka::{ensure_topic, group_consumer, offsets_reader, GroupContext, RebalanceHandler};
pub use crate::status::{ApiView, PartitionView, Status};

/// Records in flight per partition before it stops taking messages.
const MAX_INFLIGHT: usize = 50_000;
/// Messages buffered per partition between the consumer thread and its task
/// (counted in messages, not batches; see [`PartitionShared::queued`]).
const CHANNEL: usize = 16_384;
/// At most this many messages are taken per poll burst (see [`Batch`]).
pub const MAX_BATCH: usize = 512;
/// A poll burst also ends once its keys and payloads reach this many bytes.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Emptied batches waiting to be refilled by the consumer thread.
const BATCH_POOL: usize = 32;

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

/// Messages of one partition from one poll burst, handed to its task as one
/// channel item (see the module docs on why batches exist).
///
/// Keys and payloads are copied back to back into one arena instead of two
/// allocations per message; emptied batches go back to the consumer thread
/// (a bounded pool) and are refilled, so in steady state a batch costs no
/// allocation at all.
#[derive(Debug)]
pub struct Batch {
    /// Every entry's key then payload, back to back.
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// When the burst's first message was returned by `poll` (latency metric).
    received: Instant,
}

/// Where one message of a [`Batch`] lives in its arena.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: i64,
    /// The key is `arena[start..key_end]`, the payload `arena[key_end..end]`.
    start: usize,
    key_end: usize,
    end: usize,
    /// Kafka tells an absent key or payload from an empty one.
    has_key: bool,
    has_payload: bool,
}

/// One message of a batch, borrowed from its arena.
#[derive(Clone, Copy, Debug)]
struct InMsg<'a> {
    offset: i64,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
}

impl Batch {
    /// An empty batch received at `received`, reusing `recycled`'s buffers if given.
    fn new(recycled: Option<Batch>, received: Instant) -> Batch {
        match recycled {
            Some(mut b) => {
                b.arena.clear();
                b.entries.clear();
                b.received = received;
                b
            }
            None => Batch { arena: Vec::new(), entries: Vec::new(), received },
        }
    }

    fn push(&mut self, offset: i64, key: Option<&[u8]>, payload: Option<&[u8]>) {
        let start = self.arena.len();
        self.arena.extend_from_slice(key.unwrap_or_default());
        let key_end = self.arena.len();
        self.arena.extend_from_slice(payload.unwrap_or_default());
        let end = self.arena.len();
        self.entries.push(Entry { offset, start, key_end, end, has_key: key.is_some(), has_payload: payload.is_some() });
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`-th message.
    fn get(&self, i: usize) -> Option<InMsg<'_>> {
        let e = self.entries.get(i)?;
        Some(InMsg {
            offset: e.offset,
            key: if e.has_key { self.arena.get(e.start..e.key_end) } else { None },
            payload: if e.has_payload { self.arena.get(e.key_end..e.end) } else { None },
        })
    }
}

enum Cmd {
    /// Messages of the partition, in offset order.
    Batch(Batch),
    /// The consumer thread sought back; messages from here on are from the new position.
    Reseeked,
    /// Drain, reply with the committable offset, end.
    Stop(std::sync::mpsc::SyncSender<i64>),
}

/// State of a partition engine, for metrics and the API.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    tracked: usize,
    viral: usize,
    watermark_ms: Option<i64>,
    targets: Vec<TargetView>,
    top: Vec<CampaignView>,
}

/// What the consumer thread, the task and the aggregator share about a partition.
#[derive(Debug)]
struct PartitionShared {
    topic: Arc<str>,
    partition: i32,
    commit: AtomicI64,
    position: AtomicI64,
    /// Messages sent to the task's channel and not yet taken by it: the
    /// channel's bound is counted in messages, whatever the batch sizes.
    queued: AtomicUsize,
    high: AtomicI64,
    /// The last high-watermark fetch succeeded (the broker answers).
    high_ok: AtomicBool,
    rebuilt: AtomicBool,
    /// Why output records of this partition are not being delivered, if so.
    blocked: Mutex<Option<String>>,
    /// Revoked or shutting down: the task must not start new work.
    stopped: AtomicBool,
    snapshot: Mutex<Snapshot>,
}

struct Handle {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<PartitionShared>,
    /// Batches the task had no room for (the partition is paused meanwhile).
    stash: VecDeque<Batch>,
    paused: bool,
    last_committed: i64,
    /// [`Ctx::epoch`] when the partition was assigned.
    epoch: u64,
}

impl Handle {
    /// Hands `batch` to the task. `Err(Some(batch))` when the task's buffer
    /// is full; `Err(None)` when the task is gone (the batch is dropped).
    fn try_send(&self, batch: Batch) -> Result<(), Option<Batch>> {
        let n = batch.len();
        let queued = self.shared.queued.load(Ordering::Relaxed);
        if queued > 0 && queued + n > CHANNEL {
            return Err(Some(batch));
        }
        // Counted before the send, so that the task's decrement never comes first.
        self.shared.queued.fetch_add(n, Ordering::Relaxed);
        match self.tx.try_send(Cmd::Batch(batch)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.queued.fetch_sub(n, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(Cmd::Batch(b)) => Err(Some(b)),
                    _ => Err(None),
                }
            }
        }
    }
}

struct Ctx {
    cfg: Arc<Config>,
    metrics: Metrics,
    outbox: Outbox,
    signal_topic: Arc<str>,
    estimate_topic: Option<Arc<str>>,
    dead_letter_topic: Arc<str>,
    handles: Mutex<HashMap<(Arc<str>, i32), Handle>>,
    reseek_tx: Mutex<std::sync::mpsc::Sender<(Arc<str>, i32, i64)>>,
    /// Where partition tasks return emptied batches for reuse.
    recycle_tx: std::sync::mpsc::SyncSender<Batch>,
    /// Bumped by every rebalance callback (they run inside `poll`): messages
    /// polled before an assignment must not reach a task started by it.
    epoch: AtomicU64,
    runtime: tokio::runtime::Handle,
    reader: BaseConsumer<QuietContext>,
    shutting_down: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RebalanceHandler for Ctx {
    fn on_assign(&self, _consumer: &BaseConsumer<GroupContext>, tpl: &mut TopicPartitionList) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.metrics.rebalances.inc();
        let timeout = Duration::from_secs(10);
        // Right after a broker restart the coordinator may not answer yet:
        // retry before falling back to the log start (which would re-emit
        // every signal of the partition, with the same ids).
        let mut committed = None;
        for attempt in 1..=3 {
            match self.reader.committed_offsets(tpl.clone(), timeout) {
                Ok(c) => {
                    committed = Some(c);
                    break;
                }
                Err(e) => tracing::warn!(error = %e, attempt, "could not read committed offsets"),
            }
        }
        let committed = committed.unwrap_or_else(|| {
            tracing::warn!("no committed offsets; starting from the log start (signals of the whole partition are re-emitted, same ids)");
            TopicPartitionList::new()
        });
        let n = self.cfg.kafka.rebuild_max_messages as i64;
        let mut assigned = Vec::new();
        for el in tpl.elements() {
            let (topic, partition) = (el.topic().to_string(), el.partition());
            let (low, high) = self.reader.fetch_watermarks(&topic, partition, timeout).unwrap_or((0, 0));
            let c = match committed.find_partition(&topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= low => o,
                _ => low,
            };
            let start = (c - n).max(low);
            assigned.push((topic, partition, start, c, low, high));
        }
        for (topic, partition, start, c, low, high) in assigned {
            let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(start));
            tracing::info!(topic = %topic, partition, committed = c, rewind_to = start, low, high, "rebalance: partition assigned; rebuilding");
            self.start_partition(Arc::from(topic.as_str()), partition, start, c, low, high);
        }
        self.metrics.partitions_assigned.set(lock(&self.handles).len() as i64);
    }

    fn on_revoke(&self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.metrics.rebalances.inc();
        let mut stopping = Vec::new();
        {
            let mut handles = lock(&self.handles);
            for el in tpl.elements() {
                if let Some(h) = handles.remove(&(Arc::from(el.topic()), el.partition())) {
                    stopping.push(h);
                }
            }
            self.metrics.partitions_assigned.set(handles.len() as i64);
        }
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let offsets = self.stop_partitions(stopping);
        let ok = commit_sync(consumer, &offsets);
        for (topic, partition, offset) in &offsets {
            let _ = self.metrics.consumer_lag.remove_label_values(&[&**topic, &partition.to_string()]);
            if ok {
                tracing::info!(topic = %topic, partition, committed = offset, "rebalance: partition revoked");
            } else {
                tracing::warn!(topic = %topic, partition, committable = offset,
                    "rebalance: partition revoked without a commit; the next owner re-processes from the last committed offset");
            }
        }
    }

    fn on_commit_failed(&self, offsets: &TopicPartitionList) {
        // Commit these again at the next interval even if nothing new is applied.
        let mut handles = lock(&self.handles);
        for el in offsets.elements() {
            if let Some(h) = handles.get_mut(&(Arc::from(el.topic()), el.partition())) {
                h.last_committed = -1;
            }
        }
    }
}

/// Commits synchronously; whether it succeeded.
fn commit_sync(consumer: &BaseConsumer<GroupContext>, offsets: &[(Arc<str>, i32, i64)]) -> bool {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "synchronous offset commit failed");
            return false;
        }
    }
    true
}

impl Ctx {
    fn start_partition(&self, topic: Arc<str>, partition: i32, start: i64, committed: i64, low: i64, high: i64) {
        let shared = Arc::new(PartitionShared {
            topic: topic.clone(),
            partition,
            commit: AtomicI64::new(committed),
            position: AtomicI64::new(start),
            queued: AtomicUsize::new(0),
            high: AtomicI64::new(high),
            high_ok: AtomicBool::new(true),
            rebuilt: AtomicBool::new(false),
            blocked: Mutex::new(None),
            stopped: AtomicBool::new(false),
            snapshot: Mutex::new(Snapshot::default()),
        });
        let (tx, rx) = mpsc::channel(CHANNEL);
        let engine = match Engine::new(self.cfg.clone()) {
            Ok(e) => e.with_estimates(self.estimate_topic.is_some()),
            Err(e) => {
                tracing::error!(error = %e, "engine configuration");
                return;
            }
        };
        let task = PartitionTask {
            cfg: self.cfg.clone(),
            metrics: self.metrics.clone(),
            outbox: self.outbox.clone(),
            signal_topic: self.signal_topic.clone(),
            estimate_topic: self.estimate_topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            reseek_tx: lock(&self.reseek_tx).clone(),
            recycle_tx: self.recycle_tx.clone(),
            shared: shared.clone(),
            engine,
            batch: None,
            latency: self.metrics.latency.local(),
            counted: [0; 5],
            out: Vec::new(),
            held: None,
            inflight: VecDeque::new(),
            seek_pos: start,
            step: 1000,
            committed,
            low,
            applied_next: start,
            reseek_for: None,
            anchored: false,
            awaiting_reseek: false,
            rebuilt: false,
            replayed: 0,
            first_ts: None,
            last_ts: None,
            last_msg: Instant::now(),
            last_unkeyed_warning: None,
            base_stats: Stats::default(),
            base_clicks: HashMap::new(),
            buf: String::new(),
            blocked_since: None,
            resent: 0,
        };
        self.runtime.spawn(task.run(rx));
        let epoch = self.epoch.load(Ordering::SeqCst);
        lock(&self.handles)
            .insert((topic, partition), Handle { tx, shared, stash: VecDeque::new(), paused: false, last_committed: committed, epoch });
    }

    /// Asks each task to drain and stop; returns their committable offsets.
    fn stop_partitions(&self, handles: Vec<Handle>) -> Vec<(Arc<str>, i32, i64)> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.kafka.shutdown_timeout.ms().max(0) as u64);
        let mut waits = Vec::new();
        for h in handles {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let mut cmd = Cmd::Stop(tx);
            loop {
                match h.tx.try_send(cmd) {
                    Ok(()) => break,
                    Err(mpsc::error::TrySendError::Full(c)) if Instant::now() < deadline => {
                        cmd = c;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
            waits.push((h, rx));
        }
        let mut offsets = Vec::new();
        for (h, rx) in waits {
            let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(500);
            let offset = rx.recv_timeout(left).unwrap_or_else(|_| h.shared.commit.load(Ordering::SeqCst));
            // A task that did not answer (its output is blocked) stops at its next step.
            h.shared.stopped.store(true, Ordering::SeqCst);
            if offset > h.last_committed || offset == h.shared.commit.load(Ordering::SeqCst) {
                offsets.push((h.shared.topic.clone(), h.shared.partition, offset));
            }
        }
        offsets
    }
}

/// Runs the service until `shutdown` fires (or a fatal error).
pub async fn run(cfg: Arc<Config>, shutdown: Shutdown) -> Result<(), ServiceError> {
    Engine::new(cfg.clone())?;
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
        .map_err(|e| ServiceError::Http { addr: "consumer thread".into(), source: e })?;

    let agg = tokio::spawn(aggregate(ctx.clone(), status.clone(), shutdown.resubscribe()));
    let mut shutdown = shutdown;
    shutdown.recv().await;
    tracing::info!("shutting down: draining acknowledgements, committing, leaving the group");
    let limit = Duration::from_millis(cfg.kafka.shutdown_timeout.ms().max(0) as u64) + Duration::from_secs(5);
    if tokio::time::timeout(limit, done_rx).await.is_err() {
        tracing::warn!("the consumer did not stop within kafka.shutdown_timeout");
    }
    outbox.flush(Duration::from_secs(2));
    agg.abort();
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    if let Some(reason) = fatal.reason() {
        return Err(ServiceError::Fatal(reason));
    }
    tracing::info!("stopped");
    Ok(())
}

/// The messages of one poll burst, grouped by partition (an instance holds
/// few partitions, so a scan finds a message's group).
struct Burst {
    groups: Vec<(String, i32, Batch)>,
    /// The one topic this instance reads, when it reads exactly one by name
    /// (not a `^regex`): then a message's topic need not be asked for. Each
    /// `topic()` call is a `strlen` and a UTF-8 check of the name, about 200
    /// instructions per message (callgrind).
    only_topic: Option<String>,
    messages: usize,
    bytes: usize,
    /// [`Ctx::epoch`] when its messages were polled.
    epoch: u64,
    received: Instant,
}

impl Burst {
    fn add(&mut self, m: &BorrowedMessage<'_>, pool: &std::sync::mpsc::Receiver<Batch>) {
        let partition = m.partition();
        let topic = match &self.only_topic {
            Some(t) => t.as_str(),
            None => m.topic(),
        };
        let i = match self.groups.iter().position(|(t, p, _)| *p == partition && t == topic) {
            Some(i) => i,
            None => {
                self.groups.push((topic.to_string(), partition, Batch::new(pool.try_recv().ok(), self.received)));
                self.groups.len() - 1
            }
        };
        let (key, payload) = (m.key(), m.payload());
        self.messages += 1;
        self.bytes += key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
        if let Some((_, _, batch)) = self.groups.get_mut(i) {
            batch.push(m.offset(), key, payload);
        }
    }
}

/// Sends a burst's batches to their tasks: one lock for the burst, one
/// lookup and one send per partition. A task without room gets a little
/// time before its batch is stashed and its partition paused. Batches of a
/// partition revoked, or assigned anew, since they were polled are dropped
/// (the partition's next task reads from its own starting offset).
fn dispatch(ctx: &Ctx, consumer: &BaseConsumer<GroupContext>, burst: &mut Burst) {
    let mut handles = lock(&ctx.handles);
    for (topic, partition, batch) in burst.groups.drain(..) {
        let Some(h) = handles.iter_mut().find(|((t, p), _)| *p == partition && **t == *topic).map(|(_, h)| h) else {
            continue;
        };
        if h.epoch > burst.epoch {
            continue;
        }
        if !h.stash.is_empty() {
            h.stash.push_back(batch);
            continue;
        }
        if let Err(Some(mut batch)) = h.try_send(batch) {
            // Wait a little before pausing: a resumed fetch starts inside a
            // record batch, which Tansu answers with the next batch (the task
            // then seeks back).
            let until = Instant::now() + Duration::from_millis(250);
            loop {
                std::thread::sleep(Duration::from_millis(1));
                match h.try_send(batch) {
                    Err(Some(back)) if Instant::now() < until => batch = back,
                    Err(Some(back)) => {
                        h.stash.push_back(back);
                        break;
                    }
                    _ => break,
                }
            }
            if !h.stash.is_empty() && !h.paused {
                let mut tpl = TopicPartitionList::new();
                let _ = tpl.add_partition(&topic, partition);
                let _ = consumer.pause(&tpl);
                h.paused = true;
            }
        }
    }
    burst.messages = 0;
    burst.bytes = 0;
}

/// Logs a consumer error at most every 10 s (librdkafka retries by itself).
fn consumer_error(e: &KafkaError, last_error: &mut Option<Instant>) {
    if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        tracing::warn!(error = %e, "consumer error (librdkafka retries)");
        *last_error = Some(Instant::now());
    }
}

fn consumer_loop(
    ctx: &Arc<Ctx>,
    consumer: BaseConsumer<GroupContext>,
    reseek_rx: std::sync::mpsc::Receiver<(Arc<str>, i32, i64)>,
    recycle_rx: std::sync::mpsc::Receiver<Batch>,
    mut shutdown: Shutdown,
) {
    let commit_every = Duration::from_millis(ctx.cfg.kafka.commit_interval.ms().max(10) as u64);
    let mut last_commit = Instant::now();
    let mut last_error: Option<Instant> = None;
    let only_topic = match ctx.cfg.kafka.input_topics.as_slice() {
        [t] if !t.starts_with('^') => Some(t.clone()),
        _ => None,
    };
    let mut burst = Burst { groups: Vec::new(), only_topic, messages: 0, bytes: 0, epoch: 0, received: Instant::now() };
    while !shutdown.poll_now() {
        while let Ok((topic, partition, offset)) = reseek_rx.try_recv() {
            let mut handles = lock(&ctx.handles);
            if let Some(h) = handles.get_mut(&(topic.clone(), partition)) {
                h.stash.clear();
                let mut ok = false;
                for _ in 0..20 {
                    match consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
                        Ok(()) => {
                            ok = true;
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "seek failed; retrying");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                if !ok {
                    tracing::error!(topic = %topic, partition, offset, "could not seek back; events between the committed offset and the first fetched one may be skipped");
                }
                if h.paused {
                    let mut tpl = TopicPartitionList::new();
                    let _ = tpl.add_partition(&topic, partition);
                    let _ = consumer.resume(&tpl);
                    h.paused = false;
                }
                let _ = h.tx.blocking_send(Cmd::Reseeked);
            }
        }
        {
            let mut handles = lock(&ctx.handles);
            for ((topic, partition), h) in handles.iter_mut() {
                while let Some(batch) = h.stash.pop_front() {
                    match h.try_send(batch) {
                        Ok(()) => {}
                        Err(Some(batch)) => {
                            h.stash.push_front(batch);
                            break;
                        }
                        Err(None) => break,
                    }
                }
                if h.paused && h.stash.is_empty() {
                    let mut tpl = TopicPartitionList::new();
                    let _ = tpl.add_partition(topic, *partition);
                    let _ = consumer.resume(&tpl);
                    h.paused = false;
                }
            }
        }
        if last_commit.elapsed() >= commit_every {
            last_commit = Instant::now();
            let mut tpl = TopicPartitionList::new();
            let mut handles = lock(&ctx.handles);
            for ((topic, partition), h) in handles.iter_mut() {
                let c = h.shared.commit.load(Ordering::SeqCst);
                if c > h.last_committed {
                    let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(c));
                    h.last_committed = c;
                }
            }
            drop(handles);
            if tpl.count() > 0 {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                    tracing::debug!(error = %e, "offset commit failed");
                }
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                // Rebalance callbacks run inside `poll`, before the message it returns.
                burst.epoch = ctx.epoch.load(Ordering::SeqCst);
                burst.received = Instant::now();
                burst.add(&m, &recycle_rx);
                drop(m);
                // Take what librdkafka has already fetched, without waiting.
                while burst.messages < MAX_BATCH && burst.bytes < MAX_BATCH_BYTES {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
                            let epoch = ctx.epoch.load(Ordering::SeqCst);
                            if epoch != burst.epoch {
                                // A rebalance ran inside this poll: hand over
                                // what was polled before it first.
                                dispatch(ctx, &consumer, &mut burst);
                                burst.epoch = epoch;
                                burst.received = Instant::now();
                            }
                            burst.add(&m, &recycle_rx);
                        }
                        Some(Err(e)) => {
                            consumer_error(&e, &mut last_error);
                            break;
                        }
                        None => break,
                    }
                }
                dispatch(ctx, &consumer, &mut burst);
            }
            Some(Err(e)) => consumer_error(&e, &mut last_error),
            None => {}
        }
    }
    // Shutdown: drain every partition, commit, leave the group.
    let handles: Vec<Handle> = lock(&ctx.handles).drain().map(|(_, h)| h).collect();
    let offsets = ctx.stop_partitions(handles);
    commit_sync(&consumer, &offsets);
    for (topic, partition, offset) in &offsets {
        tracing::info!(topic = %topic, partition, committed = offset, "shutdown: offsets committed");
    }
    ctx.shutting_down.store(true, Ordering::SeqCst);
    ctx.metrics.partitions_assigned.set(0);
    ctx.metrics.ready.set(0);
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(100));
    drop(consumer);
}

/// Once a second: metrics from partition snapshots, lag, readiness, the API view.
async fn aggregate(ctx: Arc<Ctx>, status: Status, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        let shared: Vec<Arc<PartitionShared>> = lock(&ctx.handles).values().map(|h| h.shared.clone()).collect();
        if n % 2 == 1 && !shared.is_empty() {
            let c = ctx.clone();
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for p in s {
                    match c.reader.fetch_watermarks(&p.topic, p.partition, Duration::from_secs(2)) {
                        Ok((_, high)) => {
                            p.high.store(high, Ordering::SeqCst);
                            p.high_ok.store(true, Ordering::SeqCst);
                        }
                        Err(_) => p.high_ok.store(false, Ordering::SeqCst),
                    }
                }
            })
            .await;
        }
        let cfg = &ctx.cfg;
        let mut tracked = 0;
        let mut viral = 0;
        let mut wm: Option<i64> = None;
        let mut all_top = Vec::new();
        let mut targets: Vec<Vec<TargetView>> = Vec::new();
        let mut parts = Vec::new();
        let mut ready = !shared.is_empty();
        let mut reason = if shared.is_empty() { "no partition assigned".to_string() } else { String::new() };
        for p in &shared {
            let s = lock(&p.snapshot).clone();
            tracked += s.tracked;
            viral += s.viral;
            if let Some(w) = s.watermark_ms {
                wm = Some(wm.map_or(w, |x: i64| x.min(w)));
            }
            all_top.extend(s.top);
            targets.push(s.targets);
            let position = p.position.load(Ordering::SeqCst);
            let lag = (p.high.load(Ordering::SeqCst) - position).max(0);
            ctx.metrics.consumer_lag.with_label_values(&[&*p.topic, &p.partition.to_string()]).set(lag);
            let rebuilt = p.rebuilt.load(Ordering::SeqCst);
            let blocked = lock(&p.blocked).clone();
            if let Some(why) = blocked {
                ready = false;
                reason = format!("{}/{} output blocked: {why}", p.topic, p.partition);
            } else if !rebuilt {
                ready = false;
                reason = format!("{}/{} rebuilding", p.topic, p.partition);
            } else if lag as u64 > cfg.kafka.ready_max_lag {
                ready = false;
                reason = format!("{}/{} lags by {lag} messages", p.topic, p.partition);
            }
            parts.push(PartitionView {
                topic: p.topic.to_string(),
                partition: p.partition,
                rebuilt,
                position,
                lag,
                watermark: s.watermark_ms.map(crate::time::rfc3339),
            });
        }
        ctx.metrics.campaigns_tracked.set(tracked as i64);
        ctx.metrics.campaigns_viral.set(viral as i64);
        if let Some(w) = wm {
            ctx.metrics.watermark.set(w as f64 / 1000.0);
        }
        let refs: Vec<&[TargetView]> = targets.iter().map(Vec::as_slice).collect();
        let summed = sum_targets(cfg, &refs);
        ctx.metrics.set_targets(cfg, &summed);
        rank_campaigns(&mut all_top);
        all_top.truncate(cfg.output.top_k as usize);
        ctx.metrics.set_top_campaigns(&all_top);
        ctx.metrics.ready.set(i64::from(ready));
        status.ready.store(ready, Ordering::SeqCst);
        *lock(&status.not_ready_reason) = reason;
        let mut clicks: BTreeMap<&str, u64> = BTreeMap::new();
        for t in targets.iter().flatten() {
            *clicks.entry(&t.target).or_default() += t.clicks;
        }
        let target_views = summed
            .iter()
            .map(|(name, rps)| TargetView {
                target: name.clone(),
                desired_replicas: crate::engine::planner::replicas_for(&cfg.planner_for(name), *rps),
                forecast_rps: *rps,
                clicks: clicks.get(name.as_str()).copied().unwrap_or(0),
            })
            .collect();
        *lock(&status.api) = ApiView { ready, campaigns: all_top, targets: target_views, partitions: parts };
    }
}

/// A rejected record: offset, key, original bytes, why.
type DeadLetter = (i64, Option<Vec<u8>>, Vec<u8>, Rejection);

/// A far-future event held until the next one confirms or refutes the jump
/// (as `replay` does).
struct Held {
    offset: i64,
    key: Option<Vec<u8>>,
    bytes: Vec<u8>,
    ts_ms: i64,
    rejection: Option<Rejection>,
}

struct PartitionTask {
    cfg: Arc<Config>,
    metrics: Metrics,
    outbox: Outbox,
    signal_topic: Arc<str>,
    estimate_topic: Option<Arc<str>>,
    dead_letter_topic: Arc<str>,
    reseek_tx: std::sync::mpsc::Sender<(Arc<str>, i32, i64)>,
    recycle_tx: std::sync::mpsc::SyncSender<Batch>,
    shared: Arc<PartitionShared>,
    engine: Engine,
    /// The batch being processed and the index of its next message; kept
    /// across loop turns when the task stopped taking input in the middle
    /// of it (output blocked, too many records in flight).
    batch: Option<(Batch, usize)>,
    /// `floodgate_processing_latency_seconds`, flushed once per batch.
    latency: prometheus::local::LocalHistogram,
    /// Events counted (by kind: send, click, forward; then duplicates and
    /// late events) and not yet added to the metrics: flushed once per batch.
    counted: [u64; 5],
    out: Vec<Signal>,
    held: Option<Held>,
    inflight: VecDeque<Pending>,
    seek_pos: i64,
    step: i64,
    committed: i64,
    low: i64,
    applied_next: i64,
    reseek_for: Option<i64>,
    anchored: bool,
    awaiting_reseek: bool,
    rebuilt: bool,
    replayed: u64,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    last_msg: Instant,
    last_unkeyed_warning: Option<Instant>,
    base_stats: Stats,
    base_clicks: HashMap<String, u64>,
    buf: String,
    /// Since when a record could not be delivered (input paused).
    blocked_since: Option<Instant>,
    /// Records re-sent in the current blocked episode.
    resent: u64,
}

type DeliveryResult = Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>;

/// Waits for the delivery report of the first record in `q` that is with
/// the producer (records waiting to be re-sent are skipped); its index and
/// the report.
async fn next_delivery(q: &mut VecDeque<Pending>) -> (usize, DeliveryResult) {
    match q.iter_mut().enumerate().find_map(|(i, p)| p.delivery.as_mut().map(|d| (i, d))) {
        Some((i, d)) => (i, d.await),
        None => std::future::pending().await,
    }
}

impl PartitionTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        if self.seek_pos >= self.committed {
            self.finish_rebuild();
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resend = tokio::time::interval(Duration::from_millis(500));
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.shared.stopped.load(Ordering::SeqCst) {
                // Revoked while the output was blocked: the next owner
                // re-processes from the committed offset.
                return;
            }
            let taking = self.taking();
            if taking && self.batch.is_some() {
                self.process_batch().await;
                continue;
            }
            tokio::select! {
                (i, r) = next_delivery(&mut self.inflight), if !self.inflight.is_empty() => self.on_delivery(i, r),
                _ = resend.tick(), if self.blocked_since.is_some() => self.resend(),
                cmd = rx.recv(), if taking => match cmd {
                    Some(Cmd::Batch(b)) => {
                        self.shared.queued.fetch_sub(b.len(), Ordering::Relaxed);
                        self.batch = Some((b, 0));
                        self.process_batch().await;
                    }
                    Some(Cmd::Reseeked) => self.awaiting_reseek = false,
                    Some(Cmd::Stop(reply)) => {
                        self.drain().await;
                        self.publish_snapshot();
                        let _ = reply.send(self.committable());
                        return;
                    }
                    None => return,
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
    }

    /// Whether the task takes input. While a record could not be delivered
    /// it does not: input would only pile up behind the unsent records (and
    /// be reordered).
    fn taking(&self) -> bool {
        self.inflight.len() < MAX_INFLIGHT && self.blocked_since.is_none() && !self.shared.stopped.load(Ordering::Relaxed)
    }

    /// Processes the current batch's messages in order until it is done or
    /// the task stops taking input (then the rest waits in `self.batch`).
    /// What the per-message path used to do for every message is done here
    /// once: the clock read, the position and commit-offset updates, the
    /// event counters and the latency observations. Publishing the
    /// committable offset after the batch rather than after each message
    /// only delays it: the offset is always computed from the acknowledged
    /// state (see [`Self::committable`]).
    async fn process_batch(&mut self) {
        let Some((batch, mut next)) = self.batch.take() else { return };
        // Messages whose effects are committable once the batch is done (no
        // record of theirs is waiting for an acknowledgement).
        let mut done = 0u32;
        while let Some(m) = batch.get(next) {
            if next > 0 && !self.taking() {
                break;
            }
            next += 1;
            if self.on_message(m, batch.received).await {
                done += 1;
            }
        }
        self.shared.position.store(self.applied_next, Ordering::SeqCst);
        self.update_commit();
        self.flush_counts();
        let now = Instant::now();
        self.last_msg = now;
        if done > 0 {
            let latency = now.saturating_duration_since(batch.received).as_secs_f64();
            for _ in 0..done {
                self.latency.observe(latency);
            }
            self.latency.flush();
        }
        if next < batch.len() {
            self.batch = Some((batch, next));
        } else if batch.arena.capacity() <= 2 * MAX_BATCH_BYTES {
            // Back to the consumer thread for reuse (dropped if its pool is full).
            let _ = self.recycle_tx.try_send(batch);
        }
    }

    fn committable(&self) -> i64 {
        let mut c = self.applied_next;
        if let Some(h) = &self.held {
            c = c.min(h.offset);
        }
        // Guards do not decrease along the queue: the front's is the lowest.
        if let Some(p) = self.inflight.front() {
            c = c.min(p.guard);
        }
        c.max(self.committed)
    }

    fn update_commit(&self) {
        self.shared.commit.store(self.committable(), Ordering::SeqCst);
    }

    /// Hands `record` to the producer, or queues it unsent behind the
    /// records that could not be delivered. Waits while the producer's local
    /// queue is full (back-pressure, e.g. during a broker outage).
    async fn enqueue(&mut self, record: OutRecord, guard: i64, received: Option<Instant>) {
        let mut p = Pending { guard, received, record, delivery: None };
        while self.blocked_since.is_none() {
            match self.outbox.try_send(&p.record) {
                Ok(d) => {
                    p.delivery = Some(d);
                    break;
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    if self.shared.stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    let why = format!("{}: {e}", p.record.topic);
                    self.block(why);
                }
            }
        }
        self.inflight.push_back(p);
    }

    fn on_delivery(&mut self, i: usize, r: DeliveryResult) {
        let error = match r {
            Ok(Ok(_)) => {
                if let Some(p) = self.inflight.remove(i) {
                    if let Some(t) = p.received {
                        self.metrics.latency.observe(t.elapsed().as_secs_f64());
                    }
                }
                if self.blocked_since.is_some() && self.inflight.is_empty() {
                    self.unblock();
                }
                self.update_commit();
                return;
            }
            Ok(Err((e, _))) => e.to_string(),
            Err(_) => "delivery report cancelled".to_string(),
        };
        let Some(p) = self.inflight.get_mut(i) else { return };
        p.delivery = None;
        let why = format!("{}: {error}", p.record.topic);
        self.block(why);
    }

    /// A record could not be delivered: stop taking input; [`Self::resend`]
    /// re-sends the failed records in order.
    fn block(&mut self, why: String) {
        // A fatal producer error also stops the service (see `Fatal`).
        self.outbox.check_fatal();
        if self.blocked_since.is_none() {
            self.blocked_since = Some(Instant::now());
            self.resent = 0;
            tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, error = %why, unacknowledged = self.inflight.len(),
                "output unavailable: records are kept and re-sent in order, input of this partition is paused, offsets stay before the unsent records");
        }
        *lock(&self.shared.blocked) = Some(why);
    }

    fn unblock(&mut self) {
        if let Some(since) = self.blocked_since.take() {
            tracing::info!(topic = %self.shared.topic, partition = self.shared.partition, resent = self.resent,
                blocked = %crate::time::format_duration_ms(since.elapsed().as_millis() as i64), "output recovered; input resumes");
        }
        *lock(&self.shared.blocked) = None;
        // The pause was not idleness of the input.
        self.last_msg = Instant::now();
    }

    /// While blocked: once no record is with the producer any more (every
    /// report is in), re-sends the failed ones front to back, so their order
    /// on the topic is kept; stops at the first one the producer refuses.
    fn resend(&mut self) {
        if self.blocked_since.is_none() || self.inflight.iter().any(|p| p.delivery.is_some()) {
            return;
        }
        if self.inflight.is_empty() {
            self.unblock();
            return;
        }
        for p in self.inflight.iter_mut() {
            if p.delivery.is_some() {
                continue;
            }
            match self.outbox.try_send(&p.record) {
                Ok(d) => {
                    p.delivery = Some(d);
                    self.resent += 1;
                }
                Err(e) => {
                    if !self.outbox.check_fatal() && self.outbox.should_warn() {
                        tracing::warn!(topic = %p.record.topic, error = %e, "output still unavailable; retrying");
                    }
                    break;
                }
            }
        }
    }

    /// Waits for every in-flight record (at most `kafka.shutdown_timeout`),
    /// re-sending failed ones; unacknowledged ones stay in the queue, so the
    /// committable offset stays before their cause.
    async fn drain(&mut self) {
        let limit = Duration::from_millis(self.cfg.kafka.shutdown_timeout.ms().max(0) as u64);
        let deadline = tokio::time::Instant::now() + limit;
        while !self.inflight.is_empty() {
            let step = async {
                tokio::select! {
                    (i, r) = next_delivery(&mut self.inflight) => Some((i, r)),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => None,
                }
            };
            match tokio::time::timeout_at(deadline, step).await {
                Ok(Some((i, r))) => self.on_delivery(i, r),
                Ok(None) => self.resend(),
                Err(_) => {
                    tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, unacknowledged = self.inflight.len(),
                        "shutdown timeout with records unacknowledged; their input will be re-processed by the next owner");
                    return;
                }
            }
        }
    }

    fn finish_rebuild(&mut self) {
        self.rebuilt = true;
        self.shared.rebuilt.store(true, Ordering::SeqCst);
        self.base_stats = self.engine.stats().clone();
        self.base_clicks = self.engine.targets().into_iter().map(|t| (t.target, t.clicks)).collect();
        let span = rebuild_span_ms(&self.cfg);
        let covered = match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        if self.replayed > 0 && covered < span && self.seek_pos > self.low {
            tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, replayed = self.replayed,
                covered = %crate::time::format_duration_ms(covered), span = %crate::time::format_duration_ms(span),
                "rebuild covered less event time than the rebuild span; raise kafka.rebuild_max_messages");
        }
        tracing::info!(topic = %self.shared.topic, partition = self.shared.partition, replayed = self.replayed,
            campaigns = self.engine.campaigns_tracked(), committed = self.committed, "partition rebuilt; signals resume");
        self.publish_snapshot();
    }

    /// Applies one message; whether its effects are complete (applied, no
    /// record of its own waiting for an acknowledgement, not a rebuild
    /// replay), for the latency metric. `received`: when its batch was polled.
    async fn on_message(&mut self, m: InMsg<'_>, received: Instant) -> bool {
        if self.awaiting_reseek {
            return false;
        }
        if let Some(target) = self.reseek_for {
            if m.offset <= target {
                self.anchored = true;
            }
        }
        if m.offset < self.applied_next {
            // Already processed (re-delivered after seeking back).
            return false;
        }
        let need = self.applied_next.max(self.committed);
        if m.offset > need {
            // Offsets in [need, m.offset) were not delivered. Tansu 0.6 answers
            // a fetch inside a record batch with the next batch, so seek back
            // (doubling) until a fetch starts at or before `need`; a gap that
            // remains after reading sequentially from there is real
            // (compaction, transaction markers).
            let repeat = self.reseek_for == Some(need);
            if !(repeat && (self.anchored || self.seek_pos <= self.low)) {
                self.step = if repeat { self.step.saturating_mul(2) } else { 1000 };
                let base = if repeat { self.seek_pos } else { need };
                let to = (base - self.step).max(self.low);
                tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, expected = need, got = m.offset, seek_to = to,
                    "offsets skipped by the broker (fetch inside a record batch); seeking back");
                self.seek_pos = to;
                self.reseek_for = Some(need);
                self.anchored = false;
                self.awaiting_reseek = true;
                let _ = self.reseek_tx.send((self.shared.topic.clone(), self.shared.partition, to));
                return false;
            }
            tracing::debug!(topic = %self.shared.topic, partition = self.shared.partition, from = need, to = m.offset, "offset gap in the log");
        }
        let rebuilding = m.offset < self.committed;
        let max_bytes = self.cfg.limits.max_event_bytes as usize;
        let max_future = self.cfg.estimator.max_future.ms();
        let guard = self.held.as_ref().map_or(m.offset, |h| h.offset);
        let payload: &[u8] = m.payload.unwrap_or_default();
        let mut dead: Vec<DeadLetter> = Vec::new();
        let mut kind = None;
        let mut hold_this = false;
        let result = if payload.len() > max_bytes {
            Err(Rejection::new(RejectReason::TooLarge, format!("{} bytes is over limits.max_event_bytes ({max_bytes})", payload.len())))
        } else {
            match decode(payload) {
                Err(r) => Err(r),
                Ok(ev) => {
                    if rebuilding {
                        self.replayed += 1;
                        self.first_ts.get_or_insert(ev.ts_ms);
                        self.last_ts = Some(ev.ts_ms);
                    } else if m.key != Some(ev.campaign.as_bytes()) {
                        self.metrics.unkeyed.inc();
                        if self.last_unkeyed_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                            self.last_unkeyed_warning = Some(Instant::now());
                            tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, offset = m.offset,
                                "input message not keyed by its campaign: the campaign's estimate is split across partitions; key events by campaign");
                        }
                    }
                    kind = Some(ev.kind);
                    let mut result = self.engine.apply(&ev, &mut self.out);
                    let is_future = matches!(&result, Err(r) if r.reason == RejectReason::Future);
                    let hold = |result: &Result<Applied, Rejection>| Held {
                        offset: m.offset,
                        key: m.key.map(<[u8]>::to_vec),
                        bytes: payload.to_vec(),
                        ts_ms: ev.ts_ms,
                        rejection: result.clone().err(),
                    };
                    match (self.held.take(), is_future) {
                        (Some(h), true) if (ev.ts_ms - h.ts_ms).abs() <= max_future => {
                            self.engine.accept_jump(h.ts_ms.min(ev.ts_ms));
                            let held_result = decode(&h.bytes).and_then(|hev| {
                                let k = hev.kind;
                                self.engine.apply(&hev, &mut self.out).map(|a| (a, k))
                            });
                            match held_result {
                                Ok((a, k)) if h.offset >= self.committed => self.count(a, k),
                                Ok(_) => {}
                                Err(r) => dead.push((h.offset, h.key, h.bytes, r)),
                            }
                            result = self.engine.apply(&ev, &mut self.out);
                        }
                        (Some(h), _) => {
                            let r = h.rejection.unwrap_or_else(|| Rejection::new(RejectReason::Future, "event time far ahead of the log"));
                            dead.push((h.offset, h.key, h.bytes, r));
                            if is_future {
                                hold_this = true;
                                self.held = Some(hold(&result));
                            }
                        }
                        (None, true) => {
                            hold_this = true;
                            self.held = Some(hold(&result));
                        }
                        (None, false) => {}
                    }
                    result
                }
            }
        };
        if !hold_this {
            match result {
                Ok(a) if !rebuilding => self.count(a, kind.unwrap_or(EventKind::Click)),
                Ok(_) => {}
                Err(r) => dead.push((m.offset, m.key.map(<[u8]>::to_vec), payload.to_vec(), r)),
            }
            // Only the detection half of a bin step here: its onsets go to the
            // producer below before the bin's forecasts are computed.
            if let Some(wm) = self.engine.natural_watermark() {
                self.engine.advance_detect(wm, &mut self.out);
            }
        }
        self.applied_next = m.offset + 1;
        let before = self.inflight.len();
        for (offset, key, bytes, r) in dead {
            if offset >= self.committed {
                self.dead_letter(guard, offset, key, bytes, r).await;
            }
        }
        if !hold_this && !self.out.is_empty() {
            self.emit(guard, rebuilding).await;
        }
        self.engine.advance_plan(&mut self.out);
        if !self.out.is_empty() {
            self.emit(guard, rebuilding).await;
        }
        // Latency: observed at the acknowledgement of the message's last
        // record if it caused any, else when its batch is done.
        let complete = if self.inflight.len() > before {
            if let Some(p) = self.inflight.back_mut() {
                p.received = Some(received);
            }
            false
        } else {
            !rebuilding
        };
        if !self.rebuilt && self.applied_next >= self.committed {
            self.finish_rebuild();
        }
        complete
    }

    /// Counts an applied event (added to the metrics by [`Self::flush_counts`]).
    fn count(&mut self, a: Applied, kind: EventKind) {
        let i = match a {
            Applied::Accepted => match kind {
                EventKind::Send => 0,
                EventKind::Click => 1,
                EventKind::Forward => 2,
            },
            Applied::Duplicate => 3,
            Applied::Late => 4,
            Applied::Shed => return,
        };
        if let Some(n) = self.counted.get_mut(i) {
            *n += 1;
        }
    }

    /// Adds the events counted since the last call to the metrics.
    fn flush_counts(&mut self) {
        let [send, click, forward, duplicates, late] = std::mem::take(&mut self.counted);
        for (counter, n) in self.metrics.events_by_kind.iter().zip([send, click, forward]) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if duplicates > 0 {
            self.metrics.duplicates.inc_by(duplicates);
        }
        if late > 0 {
            self.metrics.late.inc_by(late);
        }
    }

    async fn dead_letter(&mut self, guard: i64, offset: i64, key: Option<Vec<u8>>, bytes: Vec<u8>, r: Rejection) {
        self.metrics.rejected.with_label_values(&[r.reason.as_str()]).inc();
        self.metrics.dead_letter.inc();
        // No detail in the log and a scrubbed one in the header: rejection
        // details may quote input values (see `scrub_detail`).
        tracing::debug!(topic = %self.shared.topic, partition = self.shared.partition, offset, reason = r.reason.as_str(), "dead letter");
        let record = OutRecord {
            topic: self.dead_letter_topic.clone(),
            key,
            payload: Some(bytes),
            headers: vec![
                ("floodgate.reason", r.reason.as_str().as_bytes().to_vec()),
                ("floodgate.detail", scrub_detail(&r.detail).into_bytes()),
                ("floodgate.source.topic", self.shared.topic.as_bytes().to_vec()),
                ("floodgate.source.partition", self.shared.partition.to_string().into_bytes()),
                ("floodgate.source.offset", offset.to_string().into_bytes()),
            ],
            timestamp_ms: None,
        };
        self.enqueue(record, guard, None).await;
    }

    async fn emit(&mut self, guard: i64, suppressed: bool) {
        let mut out = std::mem::take(&mut self.out);
        self.engine.count_signals(&out);
        if !suppressed {
            for s in &out {
                let topic = match s {
                    Signal::Estimate(_) => match &self.estimate_topic {
                        Some(t) => t.clone(),
                        None => continue,
                    },
                    _ => self.signal_topic.clone(),
                };
                let record = OutRecord::signal(topic, &self.cfg.output.source, s, &mut self.buf);
                self.metrics.signals.with_label_values(&[s.kind()]).inc();
                if !matches!(s, Signal::Estimate(_)) {
                    tracing::info!(target: "floodgate::signal", kind = s.kind(), subject = s.subject(), id = %s.id(),
                        time = %crate::time::rfc3339(s.time_ms()), partition = self.shared.partition, "{}", s.summary());
                }
                self.enqueue(record, guard, None).await;
            }
        }
        out.clear();
        self.out = out;
    }

    async fn on_tick(&mut self) {
        let idle = Duration::from_millis(self.cfg.kafka.idle_partition_timeout.ms().max(0) as u64);
        // Idle means caught up with a broker that answers: a broker outage
        // (no messages, high watermark unknown) or a backlog is not idleness,
        // and neither is a pause for an unavailable output.
        let caught_up = self.shared.high_ok.load(Ordering::SeqCst)
            && self.shared.position.load(Ordering::SeqCst) >= self.shared.high.load(Ordering::SeqCst);
        if self.rebuilt && caught_up && self.blocked_since.is_none() && !self.awaiting_reseek && self.last_msg.elapsed() >= idle {
            if let Some(max_ts) = self.engine.max_event_ms() {
                let guard = self.applied_next;
                if let Some(h) = self.held.take() {
                    let r = h.rejection.unwrap_or_else(|| Rejection::new(RejectReason::Future, "event time far ahead of the log"));
                    if h.offset >= self.committed {
                        self.dead_letter(h.offset, h.offset, h.key, h.bytes, r).await;
                    }
                }
                let wm = max_ts.saturating_add(self.last_msg.elapsed().as_millis() as i64);
                self.engine.advance_to(wm, &mut self.out);
                if !self.out.is_empty() {
                    self.emit(guard, false).await;
                }
                self.update_commit();
            }
        }
        if self.rebuilt {
            let s = self.engine.stats().clone();
            self.metrics.add_shed(&self.base_stats, &s);
            self.base_stats = s;
            for t in self.engine.targets() {
                let prev = self.base_clicks.get(&t.target).copied().unwrap_or(0);
                if t.clicks > prev {
                    self.metrics.target_clicks.with_label_values(&[&t.target]).inc_by(t.clicks - prev);
                }
                self.base_clicks.insert(t.target, t.clicks);
            }
        }
        self.publish_snapshot();
    }

    fn publish_snapshot(&self) {
        let snap = Snapshot {
            tracked: self.engine.campaigns_tracked(),
            viral: self.engine.campaigns_viral(),
            watermark_ms: self.engine.final_until_ms(),
            targets: self.engine.targets(),
            top: self.engine.top_campaigns(self.cfg.output.top_k as usize),
        };
        *lock(&self.shared.snapshot) = snap;
    }
}

/// Field names that rejection details quote; every other quoted or
/// back-ticked word in a detail is input data.
const FIELD_NAMES: [&str; 9] = ["type", "campaign", "ts", "id", "person", "parent", "target", "generation", "recipients"];

/// A rejection detail without input values, for the dead-letter header:
/// text in double quotes, and text in backticks that is not a field name
/// and has letters or digits, becomes `…` (a rejected line may hold a person
/// id in any field; the original bytes are the dead letter's payload, the one
/// place that keeps them).
pub fn scrub_detail(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut rest = detail;
    while let Some(i) = rest.find(['"', '`']) {
        let q = rest.as_bytes()[i] as char;
        out.push_str(&rest[..=i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find(q) else {
            out.push('…');
            return out;
        };
        let inner = &after[..j];
        let keep = q == '`' && (FIELD_NAMES.contains(&inner) || !inner.chars().any(char::is_alphanumeric));
        out.push_str(if keep { inner } else { "…" });
        out.push(q);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// Sends `()` on `tx` at SIGTERM/SIGINT.
pub async fn shutdown_on_signal(tx: broadcast::Sender<()>) {
    let which = crate::shutdown::signal().await;
    tracing::info!(signal = which, "received signal");
    let _ = tx.send(());
}

#[cfg(test)]
mod tests {
    use super::scrub_detail;

    #[test]
    fn scrubbed_details_keep_field_names_and_drop_values() {
        assert_eq!(
            scrub_detail("invalid JSON: invalid type: string \"p-42\", expected i64 at line 1 column 9"),
            "invalid JSON: invalid type: string \"…\", expected i64 at line 1 column 9"
        );
        assert_eq!(scrub_detail("invalid type: integer `12345`, expected a string"), "invalid type: integer `…`, expected a string");
        assert_eq!(
            scrub_detail("unknown event type `alice@example.com` (expected send, click or forward)"),
            "unknown event type `…` (expected send, click or forward)"
        );
        assert_eq!(scrub_detail("forward event needs `person` (missing)"), "forward event needs `person` (missing)");
        assert_eq!(
            scrub_detail("invalid JSON: expected `,` or `}` at line 1 column 5"),
            "invalid JSON: expected `,` or `}` at line 1 column 5"
        );
        assert_eq!(scrub_detail("`ts` \"yesterday\" is not an RFC 3339 timestamp"), "`ts` \"…\" is not an RFC 3339 timestamp");
        assert_eq!(scrub_detail("unterminated \"abc"), "unterminated \"…");
    }
}

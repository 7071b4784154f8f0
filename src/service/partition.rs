//! The partition task: one per assigned partition, owning that partition's
//! [`Engine`]. It takes the consumer thread's batches, runs each message
//! through the ingest step ([`PartitionTask::on_message`]), sends what the
//! engine emits through its [`AckQueue`], and publishes the committable
//! offset and a [`Snapshot`] for the aggregator.
//!
//! Its states, each an enum: the [`Phase`] (rebuilding the engine from
//! before the committed offset, signals suppressed; then live) and the
//! [`GapRecovery`] from offsets the broker skipped (see "Offset gaps" in
//! [`crate::service`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::batch::{Batch, InMsg, MAX_BATCH_BYTES};
use super::dead_letter::{self, DeadLetter};
use super::model::ModelBoard;
use super::outbox::{Ack, AckQueue, DeliveryResult};
use super::{lock, rebuild_span_ms, PartitionOffset, MAX_INFLIGHT};
use crate::config::Config;
use crate::decode::Rejection;
use crate::engine::{Applied, CampaignView, Engine, Stats, TargetView};
use crate::event::{Event, EventKind};
use crate::ingest::{Ingest, Outcomes, Pushed};
use crate::signal::Signal;
use crate::sink::kafka::{OutRecord, Outbox};
use crate::sink::metrics::Metrics;

/// What the consumer thread tells a partition task.
pub(super) enum Cmd {
    /// Messages of the partition, in offset order.
    Batch(Batch),
    /// The consumer thread sought back; messages from here on are from the new position.
    Reseeked,
    /// Drain, reply with the committable offset, end.
    Stop(std::sync::mpsc::SyncSender<i64>),
}

/// State of a partition engine, for metrics and the API.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    /// Campaigns the engine tracks.
    pub(super) tracked: usize,
    /// Of which viral.
    pub(super) viral: usize,
    /// Event time up to which the engine's bins are final.
    pub(super) watermark_ms: Option<i64>,
    /// The engine's targets (forecast, replicas, clicks).
    pub(super) targets: Vec<TargetView>,
    /// The engine's top campaigns (`output.top_k`).
    pub(super) top: Vec<CampaignView>,
}

/// What the consumer thread, the task and the aggregator share about a partition.
#[derive(Debug)]
pub(super) struct PartitionShared {
    /// The partition's topic.
    pub(super) topic: Arc<str>,
    /// The partition.
    pub(super) partition: i32,
    /// The committable offset, published by the task (see [`PartitionTask::committable`]).
    pub(super) commit: AtomicI64,
    /// The next offset the task will process.
    pub(super) position: AtomicI64,
    /// Messages sent to the task's channel and not yet taken by it: the
    /// channel's bound is counted in messages, whatever the batch sizes.
    pub(super) queued: AtomicUsize,
    /// The partition's high watermark (end offset), refreshed every 2 s by the aggregator.
    pub(super) high: AtomicI64,
    /// The last high-watermark fetch succeeded (the broker answers).
    pub(super) high_ok: AtomicBool,
    /// The task finished its rebuild (signals flow).
    pub(super) rebuilt: AtomicBool,
    /// Why output records of this partition are not being delivered, if so.
    pub(super) blocked: Mutex<Option<String>>,
    /// Revoked or shutting down: the task must not start new work.
    pub(super) stopped: AtomicBool,
    /// The engine's state as of the task's last tick.
    pub(super) snapshot: Mutex<Snapshot>,
}

impl PartitionShared {
    /// The shared state of a partition assigned at `start` (the rebuild
    /// rewind) with committed offset `committed` and high watermark `high`.
    pub(super) fn new(topic: Arc<str>, partition: i32, start: i64, committed: i64, high: i64) -> PartitionShared {
        PartitionShared {
            topic,
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
        }
    }
}

/// What the ingest step decided about the records of one message (or of an
/// idle tick), as the partition task acts on it: counts, rebuild progress,
/// the unkeyed-input warning, dead letters. A record is the message itself
/// or the far-future record the step held before it.
struct MessageOutcomes<'a> {
    /// The offset of the message being pushed.
    message_offset: i64,
    /// Its key.
    message_key: Option<&'a [u8]>,
    /// The key of the record held before it, if one is held.
    held_key: Option<&'a [u8]>,
    /// The committed offset: effects before it were counted by an earlier run.
    committed: i64,
    /// Events counted.
    counts: &'a mut EventCounts,
    /// Rebuilding or live.
    phase: &'a mut Phase,
    /// The unkeyed-input check.
    unkeyed: Unkeyed<'a>,
    /// Records rejected, to send as dead letters.
    dead: Vec<DeadLetter>,
}

impl<'a> MessageOutcomes<'a> {
    /// The key of the record at `offset`.
    fn key_of(&self, offset: i64) -> Option<&'a [u8]> {
        if offset == self.message_offset {
            self.message_key
        } else {
            self.held_key
        }
    }
}

impl Outcomes<i64> for MessageOutcomes<'_> {
    fn applied(&mut self, &offset: &i64, event: &Event<'_>, applied: Applied) {
        if offset < self.committed {
            if let Phase::Rebuilding(p) = &mut *self.phase {
                p.replayed += 1;
                p.first_ts.get_or_insert(event.ts_ms);
                p.last_ts = Some(event.ts_ms);
            }
            return;
        }
        let key = self.key_of(offset);
        self.unkeyed.check(offset, key, event);
        self.counts.count(applied, event.kind);
    }

    fn rejected(&mut self, &offset: &i64, bytes: &[u8], rejection: Rejection) {
        let key = self.key_of(offset).map(<[u8]>::to_vec);
        self.dead.push(DeadLetter { offset, key, bytes: bytes.to_vec(), rejection });
    }
}

/// Input not keyed by its campaign splits the campaign's estimate across
/// partitions: counted, and warned about at most once a minute.
struct Unkeyed<'a> {
    /// The partition.
    shared: &'a PartitionShared,
    /// `floodgate_unkeyed_events_total`.
    metrics: &'a Metrics,
    /// When the last warning was logged.
    last_warning: &'a mut Option<Instant>,
}

impl Unkeyed<'_> {
    /// Counts (and perhaps warns about) the event at `offset` if `key` is not its campaign.
    fn check(&mut self, offset: i64, key: Option<&[u8]>, event: &Event<'_>) {
        if key == Some(event.campaign.as_bytes()) {
            return;
        }
        self.metrics.unkeyed.inc();
        if self.last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            *self.last_warning = Some(Instant::now());
            tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, offset,
                "input message not keyed by its campaign: the campaign's estimate is split across partitions; key events by campaign");
        }
    }
}

/// Events applied and not yet added to the metrics (flushed once per batch).
#[derive(Clone, Copy, Debug, Default)]
struct EventCounts {
    /// Accepted sends.
    send: u64,
    /// Accepted clicks.
    click: u64,
    /// Accepted forwards.
    forward: u64,
    /// Duplicates (same campaign, id and bin).
    duplicates: u64,
    /// Events behind the watermark.
    late: u64,
}

impl EventCounts {
    /// Counts an event of `kind` that the engine applied as `a`.
    fn count(&mut self, a: Applied, kind: EventKind) {
        let n = match a {
            Applied::Accepted => match kind {
                EventKind::Send => &mut self.send,
                EventKind::Click => &mut self.click,
                EventKind::Forward => &mut self.forward,
            },
            Applied::Duplicate => &mut self.duplicates,
            Applied::Late => &mut self.late,
            Applied::Shed => return,
        };
        *n += 1;
    }

    /// Adds the counts to the metrics and starts again from zero.
    fn flush(&mut self, metrics: &Metrics) {
        let EventCounts { send, click, forward, duplicates, late } = std::mem::take(self);
        for (counter, n) in metrics.events_by_kind.iter().zip([send, click, forward]) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if duplicates > 0 {
            metrics.duplicates.inc_by(duplicates);
        }
        if late > 0 {
            metrics.late.inc_by(late);
        }
    }
}

/// Where the task is in rebuilding its engine.
enum Phase {
    /// Replaying the messages before the committed offset: the engine's
    /// state is rebuilt, signals, dead letters and counters are suppressed.
    Rebuilding(RebuildProgress),
    /// Rebuilt: signals flow.
    Live(Baselines),
}

/// How much event time a rebuild has replayed (to warn when it is less
/// than [`rebuild_span_ms`]).
#[derive(Default)]
struct RebuildProgress {
    /// Events replayed.
    replayed: u64,
    /// Event time of the first one.
    first_ts: Option<i64>,
    /// Event time of the last one.
    last_ts: Option<i64>,
}

/// The engine's cumulative counts at the last metrics update (counters are
/// raised by the difference; what the rebuild counted is not counted again).
struct Baselines {
    /// Engine statistics (shed events).
    stats: Stats,
    /// Clicks per target.
    clicks: HashMap<String, u64>,
}

/// Recovery from offsets the broker skipped (Tansu answers a fetch inside a
/// record batch with the next batch): seek back, doubling the step, until a
/// fetch starts at or before the offset needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GapRecovery {
    /// No seek back asked for yet.
    None,
    /// A seek back was asked of the consumer thread to find `need`; until it
    /// answers (`Cmd::Reseeked`) messages are ignored.
    AwaitingSeek {
        /// The first offset that was missing.
        need: i64,
        /// How far before the previous position this seek went.
        step: i64,
    },
    /// Reading again after a seek back for `need`.
    Reading {
        /// The first offset that was missing.
        need: i64,
        /// How far before the previous position the last seek went.
        step: i64,
        /// A message at or before `need` arrived since the seek: the fetch
        /// started early enough, so a gap that remains is real (compaction,
        /// transaction markers).
        anchored: bool,
    },
}

/// Where a new partition task starts.
pub(super) struct TaskStart {
    /// The offset the consumer was positioned at (the rebuild rewind).
    pub(super) start: i64,
    /// The group's committed offset: messages before it are replayed to
    /// rebuild the engine, with their effects suppressed.
    pub(super) committed: i64,
    /// The partition's log start offset when it was assigned.
    pub(super) low: i64,
}

/// The channels and shared pieces a partition task works with.
pub(super) struct TaskWiring {
    /// The configuration.
    pub(super) cfg: Arc<Config>,
    /// Metrics.
    pub(super) metrics: Metrics,
    /// The producer.
    pub(super) outbox: Outbox,
    /// `kafka.signal_topic`.
    pub(super) signal_topic: Arc<str>,
    /// `kafka.estimate_topic`, if set.
    pub(super) estimate_topic: Option<Arc<str>>,
    /// `kafka.dead_letter_topic`.
    pub(super) dead_letter_topic: Arc<str>,
    /// Asks the consumer thread to seek this partition back.
    pub(super) reseek_tx: std::sync::mpsc::Sender<PartitionOffset>,
    /// Returns emptied batches to the consumer thread.
    pub(super) recycle_tx: std::sync::mpsc::SyncSender<Batch>,
    /// Where the task leaves its engine's learned model for publication
    /// (`None`: `kafka.model_topic` is off).
    pub(super) model_board: Option<Arc<ModelBoard>>,
    /// `kafka.demand_topic`, if set: the engine shares its demand there
    /// instead of planning.
    pub(super) demand_topic: Option<Arc<str>>,
}

/// One partition's task (see the module docs).
pub(super) struct PartitionTask {
    /// Channels, topics, metrics and configuration.
    w: TaskWiring,
    /// What the consumer thread and the aggregator see of this partition.
    shared: Arc<PartitionShared>,
    /// The partition's engine.
    engine: Engine,
    /// The batch being processed and the index of its next message; kept
    /// across loop turns when the task stopped taking input in the middle
    /// of it (output blocked, too many records in flight).
    batch: Option<(Batch, usize)>,
    /// `floodgate_processing_latency_seconds`, flushed once per batch.
    latency: prometheus::local::LocalHistogram,
    /// Events counted and not yet added to the metrics.
    counts: EventCounts,
    /// Signals the engine emitted and not yet sent (reused buffer).
    out: Vec<Signal>,
    /// The ingest step (size limit, decode, far-future hold, apply, bin
    /// steps), positions being partition offsets. It holds a far-future
    /// event until the next one confirms or refutes the jump.
    ingest: Ingest<i64>,
    /// The key of the message `ingest` holds, for its dead letter.
    held_key: Option<Vec<u8>>,
    /// Output records not yet acknowledged.
    acks: AckQueue,
    /// The offset the consumer was last asked to read from: the rebuild
    /// rewind, then the target of the last seek back.
    seek_pos: i64,
    /// Recovery from offsets the broker skipped.
    gap: GapRecovery,
    /// The committed offset when the partition was assigned.
    committed: i64,
    /// The partition's log start offset when it was assigned (no seek goes before it).
    low: i64,
    /// The offset after the last message applied (the next one needed).
    applied_next: i64,
    /// Rebuilding or live.
    phase: Phase,
    /// When the last batch was processed (or output recovered): idleness.
    last_msg: Instant,
    /// When the last "not keyed by its campaign" warning was logged.
    last_unkeyed_warning: Option<Instant>,
    /// Buffer for serialising signals.
    buf: String,
    /// When the engine's learned model was last left on the model board.
    model_stored: Instant,
}

impl PartitionTask {
    /// A task for `shared` with a fresh engine.
    pub(super) fn new(w: TaskWiring, shared: Arc<PartitionShared>, engine: Engine, at: TaskStart) -> PartitionTask {
        let latency = w.metrics.latency.local();
        let acks = AckQueue::new(w.outbox.clone(), shared.clone(), w.metrics.latency.clone());
        let ingest = Ingest::new(engine.config());
        PartitionTask {
            w,
            shared,
            engine,
            batch: None,
            latency,
            counts: EventCounts::default(),
            out: Vec::new(),
            ingest,
            held_key: None,
            acks,
            seek_pos: at.start,
            gap: GapRecovery::None,
            committed: at.committed,
            low: at.low,
            applied_next: at.start,
            phase: Phase::Rebuilding(RebuildProgress::default()),
            last_msg: Instant::now(),
            last_unkeyed_warning: None,
            buf: String::new(),
            model_stored: Instant::now(),
        }
    }

    /// Whether the rebuild is done.
    fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Live(_))
    }

    /// Runs until stopped, revoked, or its channel closes.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
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
                (i, r) = self.acks.next_delivery(), if !self.acks.is_empty() => self.on_delivery(i, r),
                _ = resend.tick(), if self.acks.is_blocked() => self.resend(),
                cmd = rx.recv(), if taking => match cmd {
                    Some(Cmd::Batch(b)) => {
                        self.shared.queued.fetch_sub(b.len(), Ordering::Relaxed);
                        self.batch = Some((b, 0));
                        self.process_batch().await;
                    }
                    Some(Cmd::Reseeked) => {
                        if let GapRecovery::AwaitingSeek { need, step } = self.gap {
                            self.gap = GapRecovery::Reading { need, step, anchored: false };
                        }
                    }
                    Some(Cmd::Stop(reply)) => {
                        self.drain().await;
                        self.publish_snapshot();
                        self.store_model(true);
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
        self.acks.len() < MAX_INFLIGHT && !self.acks.is_blocked() && !self.shared.stopped.load(Ordering::Relaxed)
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
        self.share_demand();
        self.counts.flush(&self.w.metrics);
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
        } else if batch.arena_capacity() <= 2 * MAX_BATCH_BYTES {
            // Back to the consumer thread for reuse (dropped if its pool is full).
            let _ = self.w.recycle_tx.try_send(batch);
        }
    }

    /// The offset up to which every message is applied and all its effects
    /// acknowledged: the lowest of the next offset to apply, a held
    /// far-future event, and the guard of the oldest unacknowledged record;
    /// never before the committed offset.
    fn committable(&self) -> i64 {
        let mut c = self.applied_next;
        if let Some(&held) = self.ingest.held_at() {
            c = c.min(held);
        }
        if let Some(guard) = self.acks.lowest_guard() {
            c = c.min(guard);
        }
        c.max(self.committed)
    }

    /// Publishes [`Self::committable`] for the consumer thread's commits.
    fn update_commit(&self) {
        self.shared.commit.store(self.committable(), Ordering::SeqCst);
    }

    /// A delivery report arrived.
    fn on_delivery(&mut self, i: usize, r: DeliveryResult) {
        if let Ack::Acknowledged { recovered } = self.acks.on_delivery(i, r) {
            if recovered {
                self.on_recovered();
            }
            self.update_commit();
        }
    }

    /// While blocked: re-sends failed records (see [`AckQueue::resend`]).
    fn resend(&mut self) {
        if self.acks.resend() {
            self.on_recovered();
        }
    }

    /// Output recovered after a block.
    fn on_recovered(&mut self) {
        // The pause was not idleness of the input.
        self.last_msg = Instant::now();
    }

    /// Waits for every in-flight record (at most `kafka.shutdown_timeout`),
    /// re-sending failed ones; unacknowledged ones stay in the queue, so the
    /// committable offset stays before their cause.
    async fn drain(&mut self) {
        let limit = Duration::from_millis(self.w.cfg.kafka.shutdown_timeout.ms().max(0) as u64);
        let deadline = tokio::time::Instant::now() + limit;
        while !self.acks.is_empty() {
            let step = async {
                tokio::select! {
                    (i, r) = self.acks.next_delivery() => Some((i, r)),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => None,
                }
            };
            match tokio::time::timeout_at(deadline, step).await {
                Ok(Some((i, r))) => self.on_delivery(i, r),
                Ok(None) => self.resend(),
                Err(_) => {
                    tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, unacknowledged = self.acks.len(),
                        "shutdown timeout with records unacknowledged; their input will be re-processed by the next owner");
                    return;
                }
            }
        }
    }

    /// The rebuild is done: signals flow from here on.
    fn finish_rebuild(&mut self) {
        let baselines = Baselines {
            stats: self.engine.stats().clone(),
            clicks: self.engine.targets().into_iter().map(|t| (t.target, t.clicks)).collect(),
        };
        let progress = match std::mem::replace(&mut self.phase, Phase::Live(baselines)) {
            Phase::Rebuilding(p) => p,
            Phase::Live(_) => RebuildProgress::default(),
        };
        self.shared.rebuilt.store(true, Ordering::SeqCst);
        let span = rebuild_span_ms(&self.w.cfg);
        let covered = match (progress.first_ts, progress.last_ts) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        if progress.replayed > 0 && covered < span && self.seek_pos > self.low {
            tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, replayed = progress.replayed,
                covered = %crate::time::format_duration_ms(covered), span = %crate::time::format_duration_ms(span),
                "rebuild covered less event time than the rebuild span; raise kafka.rebuild_max_messages");
        }
        tracing::info!(topic = %self.shared.topic, partition = self.shared.partition, replayed = progress.replayed,
            campaigns = self.engine.campaigns_tracked(), committed = self.committed, "partition rebuilt; signals resume");
        self.publish_snapshot();
    }

    // ---------------------------------------------------------------------
    // One message: the offset-gap check, then the shared ingest step
    // (`crate::ingest`: size limit, decode, far-future hold, apply, the
    // detection half of the bin step), then dead letters, signals, and the
    // planning half.
    // ---------------------------------------------------------------------

    /// Applies one message; whether its effects are complete (applied, no
    /// record of its own waiting for an acknowledgement, not a rebuild
    /// replay), for the latency metric. `received`: when its batch was polled.
    async fn on_message(&mut self, m: InMsg<'_>, received: Instant) -> bool {
        if let GapRecovery::AwaitingSeek { .. } = self.gap {
            return false;
        }
        if let GapRecovery::Reading { need: target, anchored, .. } = &mut self.gap {
            if m.offset <= *target {
                *anchored = true;
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
            let (repeat, step, anchored) = match self.gap {
                GapRecovery::Reading { need: n, step, anchored } if n == need => (true, step, anchored),
                _ => (false, 0, false),
            };
            if !(repeat && (anchored || self.seek_pos <= self.low)) {
                let step = if repeat { step.saturating_mul(2) } else { 1000 };
                let base = if repeat { self.seek_pos } else { need };
                let to = (base - step).max(self.low);
                tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, expected = need, got = m.offset, seek_to = to,
                    "offsets skipped by the broker (fetch inside a record batch); seeking back");
                self.seek_pos = to;
                self.gap = GapRecovery::AwaitingSeek { need, step };
                let _ = self.w.reseek_tx.send(PartitionOffset {
                    topic: self.shared.topic.clone(),
                    partition: self.shared.partition,
                    offset: to,
                });
                return false;
            }
            tracing::debug!(topic = %self.shared.topic, partition = self.shared.partition, from = need, to = m.offset, "offset gap in the log");
        }
        let rebuilding = m.offset < self.committed;
        let guard = self.ingest.held_at().copied().unwrap_or(m.offset);
        let payload: &[u8] = m.payload.unwrap_or_default();
        let mut outcomes = MessageOutcomes {
            message_offset: m.offset,
            message_key: m.key,
            held_key: self.held_key.as_deref(),
            committed: self.committed,
            counts: &mut self.counts,
            phase: &mut self.phase,
            unkeyed: Unkeyed { shared: &self.shared, metrics: &self.w.metrics, last_warning: &mut self.last_unkeyed_warning },
            dead: Vec::new(),
        };
        let pushed = self.ingest.push(&mut self.engine, payload, m.offset, &mut self.out, &mut outcomes);
        let dead = std::mem::take(&mut outcomes.dead);
        if pushed == Pushed::Held {
            self.held_key = m.key.map(<[u8]>::to_vec);
        } else if self.ingest.held_at().is_none() {
            self.held_key = None;
        }
        self.applied_next = m.offset + 1;
        let before = self.acks.len();
        for d in dead {
            if d.offset >= self.committed {
                self.dead_letter(guard, d).await;
            }
        }
        if pushed == Pushed::Decided && !self.out.is_empty() {
            self.emit(guard, rebuilding).await;
        }
        self.ingest.plan(&mut self.engine, &mut self.out);
        if !self.out.is_empty() {
            self.emit(guard, rebuilding).await;
        }
        // Latency: observed at the acknowledgement of the message's last
        // record if it caused any, else when its batch is done.
        let complete = if self.acks.len() > before {
            self.acks.observe_latency_at_last(received);
            false
        } else {
            !rebuilding
        };
        if !self.is_live() && self.applied_next >= self.committed {
            self.finish_rebuild();
        }
        complete
    }

    // --------------------------- end of a message ---------------------------

    /// Sends a dead letter (guarded by `guard`) and counts it.
    async fn dead_letter(&mut self, guard: i64, d: DeadLetter) {
        let reason = d.rejection.reason.as_str();
        self.w.metrics.rejected.with_label_values(&[reason]).inc();
        self.w.metrics.dead_letter.inc();
        // No detail in the log and a scrubbed one in the header: rejection
        // details may quote input values (see `scrub_detail`).
        tracing::debug!(topic = %self.shared.topic, partition = self.shared.partition, offset = d.offset, reason, "dead letter");
        let source = dead_letter::Source { topic: &self.shared.topic, partition: self.shared.partition };
        let record = d.into_record(self.w.dead_letter_topic.clone(), source);
        self.acks.enqueue(record, guard).await;
    }

    /// Sends the signals in `self.out` (guarded by `guard`), unless
    /// `suppressed` (a rebuild replay); they are counted by the engine either way.
    async fn emit(&mut self, guard: i64, suppressed: bool) {
        let mut out = std::mem::take(&mut self.out);
        self.engine.count_signals(&out);
        if !suppressed {
            for s in &out {
                let topic = match s {
                    Signal::Estimate(_) => match &self.w.estimate_topic {
                        Some(t) => t.clone(),
                        None => continue,
                    },
                    _ => self.w.signal_topic.clone(),
                };
                let record = OutRecord::signal(topic, &self.w.cfg.output.source, s, &mut self.buf);
                self.w.metrics.signals.with_label_values(&[s.kind()]).inc();
                if !matches!(s, Signal::Estimate(_)) {
                    tracing::info!(target: "floodgate::signal", kind = s.kind(), subject = s.subject(), id = %s.id(),
                        time = %crate::time::rfc3339(s.time_ms()), partition = self.shared.partition, "{}", s.summary());
                }
                self.acks.enqueue(record, guard).await;
            }
        }
        out.clear();
        self.out = out;
    }

    /// Once a second: closes the windows of an idle partition, updates the
    /// cumulative metrics, publishes a snapshot.
    async fn on_tick(&mut self) {
        let idle = Duration::from_millis(self.w.cfg.kafka.idle_partition_timeout.ms().max(0) as u64);
        // Idle means caught up with a broker that answers: a broker outage
        // (no messages, high watermark unknown) or a backlog is not idleness,
        // and neither is a pause for an unavailable output.
        let caught_up = self.shared.high_ok.load(Ordering::SeqCst)
            && self.shared.position.load(Ordering::SeqCst) >= self.shared.high.load(Ordering::SeqCst);
        let seeking = matches!(self.gap, GapRecovery::AwaitingSeek { .. });
        if self.is_live() && caught_up && !self.acks.is_blocked() && !seeking && self.last_msg.elapsed() >= idle {
            if let Some(max_ts) = self.engine.max_event_ms() {
                let guard = self.applied_next;
                let wm = max_ts.saturating_add(self.last_msg.elapsed().as_millis() as i64);
                let mut outcomes = MessageOutcomes {
                    message_offset: guard,
                    message_key: None,
                    held_key: self.held_key.as_deref(),
                    committed: self.committed,
                    counts: &mut self.counts,
                    phase: &mut self.phase,
                    unkeyed: Unkeyed { shared: &self.shared, metrics: &self.w.metrics, last_warning: &mut self.last_unkeyed_warning },
                    dead: Vec::new(),
                };
                self.ingest.advance_to(&mut self.engine, wm, &mut self.out, &mut outcomes);
                let dead = std::mem::take(&mut outcomes.dead);
                self.held_key = None;
                for d in dead {
                    if d.offset >= self.committed {
                        let offset = d.offset;
                        self.dead_letter(offset, d).await;
                    }
                }
                if !self.out.is_empty() {
                    self.emit(guard, false).await;
                }
                self.update_commit();
                self.share_demand();
            }
        }
        if let Phase::Live(base) = &mut self.phase {
            let s = self.engine.stats().clone();
            self.w.metrics.add_shed(&base.stats, &s);
            base.stats = s;
            for t in self.engine.targets() {
                let prev = base.clicks.get(&t.target).copied().unwrap_or(0);
                if t.clicks > prev {
                    self.w.metrics.target_clicks.with_label_values(&[&t.target]).inc_by(t.clicks - prev);
                }
                base.clicks.insert(t.target, t.clicks);
            }
        }
        self.publish_snapshot();
        self.store_model(false);
    }

    /// Leaves the engine's learned model on the model board (if the model
    /// topic is on): every half `kafka.model_publish_interval` (so a
    /// publication is at most 1.5 intervals behind the engine), or `now`
    /// (the task stops: revoke or shutdown).
    fn store_model(&mut self, now: bool) {
        let Some(board) = &self.w.model_board else { return };
        let half = Duration::from_millis((self.w.cfg.kafka.model_publish_interval.ms().max(0) / 2) as u64);
        if !now && self.model_stored.elapsed() < half {
            return;
        }
        self.model_stored = Instant::now();
        board.store(&self.shared.topic, self.shared.partition, self.engine.learned_model());
    }

    /// Publishes the demand shares the engine exported (demand sharing on,
    /// see [`super::demand`]); a rebuild's are dropped (the first live bin
    /// step shares the whole state again).
    fn share_demand(&mut self) {
        let shares = self.engine.take_shares();
        let Some(topic) = &self.w.demand_topic else { return };
        if shares.is_empty() || !self.is_live() {
            return;
        }
        let source = format!("{}/{}", self.shared.topic, self.shared.partition);
        super::demand::publish_shares(&self.w.outbox, topic, &source, shares, &self.w.metrics);
    }

    /// Publishes the engine's state for the aggregator.
    fn publish_snapshot(&self) {
        let snap = Snapshot {
            tracked: self.engine.campaigns_tracked(),
            viral: self.engine.campaigns_viral(),
            watermark_ms: self.engine.final_until_ms(),
            targets: self.engine.targets(),
            top: self.engine.top_campaigns(self.w.cfg.output.top_k as usize),
        };
        *lock(&self.shared.snapshot) = snap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_counts_go_to_their_own_counter_and_start_again_after_a_flush() {
        let metrics = Metrics::new();
        let mut counts = EventCounts::default();
        counts.count(Applied::Accepted, EventKind::Send);
        for _ in 0..2 {
            counts.count(Applied::Accepted, EventKind::Click);
        }
        for _ in 0..3 {
            counts.count(Applied::Accepted, EventKind::Forward);
        }
        for _ in 0..4 {
            counts.count(Applied::Duplicate, EventKind::Click);
        }
        for _ in 0..5 {
            counts.count(Applied::Late, EventKind::Send);
        }
        counts.count(Applied::Shed, EventKind::Click);
        counts.flush(&metrics);
        let by_kind: Vec<u64> = metrics.events_by_kind.iter().map(|c| c.get()).collect();
        assert_eq!(by_kind, [1, 2, 3]);
        assert_eq!((metrics.duplicates.get(), metrics.late.get()), (4, 5));
        counts.flush(&metrics);
        assert_eq!(metrics.events_by_kind.iter().map(|c| c.get()).sum::<u64>(), 6, "a second flush adds nothing");
    }
}

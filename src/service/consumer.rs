//! The consumer thread: polls the group consumer, hands each poll burst's
//! messages to the partition tasks as [`Batch`]es (pausing a partition
//! whose task has no room), seeks partitions back when their task asks,
//! commits the tasks' committable offsets every `kafka.commit_interval`, and
//! handles rebalances (start a task per assigned partition, drain and
//! commit revoked ones).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::batch::{Batch, Burst, PartitionBatch, MAX_BATCH, MAX_BATCH_BYTES};
use super::partition::{Cmd, PartitionShared, PartitionTask, TaskStart, TaskWiring};
use super::{lock, Ctx, PartitionOffset, TopicPartition, CHANNEL};
use crate::engine::model_file::LearnedModel;
use crate::engine::Engine;
use crate::shutdown::Shutdown;
use crate::source::kafka::{GroupContext, RebalanceHandler};

/// The consumer thread's handle on a partition task.
pub(super) struct Handle {
    /// The task's channel.
    tx: mpsc::Sender<Cmd>,
    /// What the task publishes (committable offset, position, snapshot).
    pub(super) shared: Arc<PartitionShared>,
    /// Batches the task had no room for (the partition is paused meanwhile).
    stash: VecDeque<Batch>,
    /// The partition is paused on the consumer.
    paused: bool,
    /// The offset last committed for the partition (-1: commit again).
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

/// A partition being assigned, as read before its task starts.
struct Assigned {
    /// The partition.
    at: TopicPartition,
    /// Where its task starts reading and rebuilding.
    start: TaskStart,
    /// Its high watermark.
    high: i64,
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
            assigned.push(Assigned {
                at: TopicPartition { topic: Arc::from(topic.as_str()), partition },
                start: TaskStart { start, committed: c, low },
                high,
            });
        }
        for a in assigned {
            let (topic, partition) = (&a.at.topic, a.at.partition);
            let _ = tpl.set_partition_offset(topic, partition, Offset::Offset(a.start.start));
            tracing::info!(topic = %topic, partition, committed = a.start.committed, rewind_to = a.start.start, low = a.start.low, high = a.high,
                "rebalance: partition assigned; rebuilding");
            self.start_partition(a);
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
                if let Some(h) = handles.remove(&TopicPartition { topic: Arc::from(el.topic()), partition: el.partition() }) {
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
        for o in &offsets {
            let _ = self.metrics.consumer_lag.remove_label_values(&[&*o.topic, &o.partition.to_string()]);
            if ok {
                tracing::info!(topic = %o.topic, partition = o.partition, committed = o.offset, "rebalance: partition revoked");
            } else {
                tracing::warn!(topic = %o.topic, partition = o.partition, committable = o.offset,
                    "rebalance: partition revoked without a commit; the next owner re-processes from the last committed offset");
            }
        }
    }

    fn on_commit_failed(&self, offsets: &TopicPartitionList) {
        // Commit these again at the next interval even if nothing new is applied.
        let mut handles = lock(&self.handles);
        for el in offsets.elements() {
            if let Some(h) = handles.get_mut(&TopicPartition { topic: Arc::from(el.topic()), partition: el.partition() }) {
                h.last_committed = -1;
            }
        }
    }
}

/// Commits synchronously; whether it succeeded.
fn commit_sync(consumer: &BaseConsumer<GroupContext>, offsets: &[PartitionOffset]) -> bool {
    let mut tpl = TopicPartitionList::new();
    for o in offsets {
        let _ = tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset));
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
    /// Starts the task of a newly assigned partition.
    fn start_partition(&self, a: Assigned) {
        let shared = Arc::new(PartitionShared::new(a.at.topic.clone(), a.at.partition, a.start.start, a.start.committed, a.high));
        let (tx, rx) = mpsc::channel(CHANNEL);
        let mut engine = match Engine::new(&*self.cfg) {
            Ok(e) => e.with_estimates(self.estimate_topic.is_some()).with_shared_plans(self.demand_topic.is_some()),
            Err(e) => {
                tracing::error!(error = %e, "engine configuration");
                return;
            }
        };
        let model = match &self.model_board {
            Some(board) => board.model_for_new_engine(&self.model),
            None => LearnedModel::empty(self.model.bin_ms),
        };
        if !model.targets.is_empty() {
            // Checked record by record when read (bin, values, audiences), and
            // learned by engines of this configuration since: this does not fail.
            if let Err(e) = engine.load_model(&model) {
                tracing::error!(topic = %a.at.topic, partition = a.at.partition, error = %e, "the model topic's model could not be loaded; this partition learns from scratch");
            }
        }
        let wiring = TaskWiring {
            cfg: self.cfg.clone(),
            metrics: self.metrics.clone(),
            outbox: self.outbox.clone(),
            signal_topic: self.signal_topic.clone(),
            estimate_topic: self.estimate_topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            reseek_tx: lock(&self.reseek_tx).clone(),
            recycle_tx: self.recycle_tx.clone(),
            model_board: self.model_board.clone(),
            demand_topic: self.demand_topic.clone(),
        };
        let last_committed = a.start.committed;
        let task = PartitionTask::new(wiring, shared.clone(), engine, a.start);
        self.runtime.spawn(task.run(rx));
        let epoch = self.epoch.load(Ordering::SeqCst);
        lock(&self.handles).insert(a.at, Handle { tx, shared, stash: VecDeque::new(), paused: false, last_committed, epoch });
    }

    /// Asks each task to drain and stop; returns their committable offsets.
    pub(super) fn stop_partitions(&self, handles: Vec<Handle>) -> Vec<PartitionOffset> {
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
                offsets.push(PartitionOffset { topic: h.shared.topic.clone(), partition: h.shared.partition, offset });
            }
        }
        offsets
    }
}

/// Sends a burst's batches to their tasks: one lock for the burst, one
/// lookup and one send per partition. A task without room gets a little
/// time before its batch is stashed and its partition paused. Batches of a
/// partition revoked, or assigned anew, since they were polled are dropped
/// (the partition's next task reads from its own starting offset).
fn dispatch(ctx: &Ctx, consumer: &BaseConsumer<GroupContext>, burst: &mut Burst) {
    let mut handles = lock(&ctx.handles);
    for PartitionBatch { topic, partition, batch } in burst.groups.drain(..) {
        let Some(h) = handles.iter_mut().find(|(k, _)| k.partition == partition && *k.topic == *topic).map(|(_, h)| h) else {
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

/// Seeks a partition back as its task asked, then resumes it if paused and
/// tells the task (`Cmd::Reseeked`).
fn seek_back(ctx: &Ctx, consumer: &BaseConsumer<GroupContext>, to: PartitionOffset) {
    let mut handles = lock(&ctx.handles);
    let PartitionOffset { topic, partition, offset } = to;
    let Some(h) = handles.get_mut(&TopicPartition { topic: topic.clone(), partition }) else { return };
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

/// Hands stashed batches to tasks that have room again, resuming their
/// partitions once the stash is empty.
fn unstash(ctx: &Ctx, consumer: &BaseConsumer<GroupContext>) {
    let mut handles = lock(&ctx.handles);
    for (k, h) in handles.iter_mut() {
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
            let _ = tpl.add_partition(&k.topic, k.partition);
            let _ = consumer.resume(&tpl);
            h.paused = false;
        }
    }
}

/// Commits (asynchronously) every partition whose committable offset moved.
fn commit_progress(ctx: &Ctx, consumer: &BaseConsumer<GroupContext>) {
    let mut tpl = TopicPartitionList::new();
    let mut handles = lock(&ctx.handles);
    for (k, h) in handles.iter_mut() {
        let c = h.shared.commit.load(Ordering::SeqCst);
        if c > h.last_committed {
            let _ = tpl.add_partition_offset(&k.topic, k.partition, Offset::Offset(c));
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

/// The consumer thread's loop, until `shutdown`; then drains every
/// partition, commits, and leaves the group.
pub(super) fn consumer_loop(
    ctx: &Arc<Ctx>,
    consumer: BaseConsumer<GroupContext>,
    reseek_rx: Receiver<PartitionOffset>,
    recycle_rx: Receiver<Batch>,
    mut shutdown: Shutdown,
) {
    let commit_every = Duration::from_millis(ctx.cfg.kafka.commit_interval.ms().max(10) as u64);
    let mut last_commit = Instant::now();
    let mut last_error: Option<Instant> = None;
    let only_topic = match ctx.cfg.kafka.input_topics.as_slice() {
        [t] if !t.starts_with('^') => Some(t.clone()),
        _ => None,
    };
    let mut burst = Burst::new(only_topic);
    while !shutdown.poll_now() {
        while let Ok(to) = reseek_rx.try_recv() {
            seek_back(ctx, &consumer, to);
        }
        unstash(ctx, &consumer);
        if last_commit.elapsed() >= commit_every {
            last_commit = Instant::now();
            commit_progress(ctx, &consumer);
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
    for o in &offsets {
        tracing::info!(topic = %o.topic, partition = o.partition, committed = o.offset, "shutdown: offsets committed");
    }
    ctx.shutting_down.store(true, Ordering::SeqCst);
    ctx.metrics.partitions_assigned.set(0);
    ctx.metrics.ready.set(0);
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(100));
    drop(consumer);
}

//! Ordered acknowledgement → committable offset (Vector's finalizer idea):
//! every output record a partition task sends (signal, estimate, dead
//! letter) waits in an [`AckQueue`] with the *guard* offset of the input
//! message that caused it, until the broker acknowledges it. The
//! partition's committable offset never passes the lowest guard still in
//! the queue, so a restart re-processes the input of every record that was
//! not acknowledged (at-least-once), and nothing acknowledged is produced
//! twice by this instance.
//!
//! A record the broker refuses blocks the queue: the task stops taking
//! input, and the failed records are re-sent front to back (their order on
//! the topic is kept) until every one is acknowledged.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Histogram;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::lock;
use super::partition::PartitionShared;
use crate::sink::kafka::{OutRecord, Outbox, Pending};

/// A delivery report: the broker's answer, or the producer dropped it.
pub(super) type DeliveryResult = Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>;

/// What a delivery report did to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ack {
    /// The record is acknowledged and left the queue; `recovered` when that
    /// emptied a blocked queue (input resumes).
    Acknowledged {
        /// The queue was blocked and is now empty.
        recovered: bool,
    },
    /// The record failed: the queue is blocked until it is re-sent.
    Failed,
}

/// The records of one partition task that the broker has not acknowledged
/// yet, in the order of their cause.
pub(super) struct AckQueue {
    /// The producer the records go through.
    producer: Outbox,
    /// The partition's shared state: where the blocked reason is published,
    /// whether the task was stopped, the names for logs.
    shared: Arc<PartitionShared>,
    /// `floodgate_processing_latency_seconds`, observed when a message's
    /// last record is acknowledged.
    latency: Histogram,
    /// Unacknowledged records, each with its guard offset; guards do not
    /// decrease along the queue.
    queue: VecDeque<Pending>,
    /// Since when a record could not be delivered (input paused), if so.
    blocked_since: Option<Instant>,
    /// Records re-sent in the current blocked episode.
    resent: u64,
}

impl AckQueue {
    /// An empty queue sending through `producer`.
    pub(super) fn new(producer: Outbox, shared: Arc<PartitionShared>, latency: Histogram) -> AckQueue {
        AckQueue { producer, shared, latency, queue: VecDeque::new(), blocked_since: None, resent: 0 }
    }

    /// Records waiting for an acknowledgement.
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether every record is acknowledged.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a record could not be delivered (input is paused meanwhile).
    pub(super) fn is_blocked(&self) -> bool {
        self.blocked_since.is_some()
    }

    /// The lowest guard offset of an unacknowledged record: the committable
    /// offset may not pass it.
    pub(super) fn lowest_guard(&self) -> Option<i64> {
        // Guards do not decrease along the queue: the front's is the lowest.
        self.queue.front().map(|p| p.guard)
    }

    /// Marks the last queued record as its message's last one: its
    /// acknowledgement observes the latency since `received`.
    pub(super) fn observe_latency_at_last(&mut self, received: Instant) {
        if let Some(p) = self.queue.back_mut() {
            p.received = Some(received);
        }
    }

    /// Hands `record` to the producer, or queues it unsent behind the
    /// records that could not be delivered. Waits while the producer's local
    /// queue is full (back-pressure, e.g. during a broker outage).
    pub(super) async fn enqueue(&mut self, record: OutRecord, guard: i64) {
        let mut p = Pending { guard, received: None, record, delivery: None };
        while self.blocked_since.is_none() {
            match self.producer.try_send(&p.record) {
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
        self.queue.push_back(p);
    }

    /// Waits for the delivery report of the first record that is with the
    /// producer (records waiting to be re-sent are skipped); its index and
    /// the report. Never returns while no record is with the producer.
    pub(super) async fn next_delivery(&mut self) -> (usize, DeliveryResult) {
        match self.queue.iter_mut().enumerate().find_map(|(i, p)| p.delivery.as_mut().map(|d| (i, d))) {
            Some((i, d)) => (i, d.await),
            None => std::future::pending().await,
        }
    }

    /// Applies the delivery report `r` of the `i`-th record.
    pub(super) fn on_delivery(&mut self, i: usize, r: DeliveryResult) -> Ack {
        let error = match r {
            Ok(Ok(_)) => {
                if let Some(p) = self.queue.remove(i) {
                    if let Some(t) = p.received {
                        self.latency.observe(t.elapsed().as_secs_f64());
                    }
                }
                let recovered = self.blocked_since.is_some() && self.queue.is_empty();
                if recovered {
                    self.unblock();
                }
                return Ack::Acknowledged { recovered };
            }
            Ok(Err((e, _))) => e.to_string(),
            Err(_) => "delivery report cancelled".to_string(),
        };
        let Some(p) = self.queue.get_mut(i) else { return Ack::Failed };
        p.delivery = None;
        let why = format!("{}: {error}", p.record.topic);
        self.block(why);
        Ack::Failed
    }

    /// A record could not be delivered: stop taking input; [`Self::resend`]
    /// re-sends the failed records in order.
    fn block(&mut self, why: String) {
        // A fatal producer error also stops the service (see `Fatal`).
        self.producer.check_fatal();
        if self.blocked_since.is_none() {
            self.blocked_since = Some(Instant::now());
            self.resent = 0;
            tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, error = %why, unacknowledged = self.queue.len(),
                "output unavailable: records are kept and re-sent in order, input of this partition is paused, offsets stay before the unsent records");
        }
        *lock(&self.shared.blocked) = Some(why);
    }

    /// Every record is acknowledged after a block: input may resume.
    fn unblock(&mut self) {
        if let Some(since) = self.blocked_since.take() {
            tracing::info!(topic = %self.shared.topic, partition = self.shared.partition, resent = self.resent,
                blocked = %crate::time::format_duration_ms(since.elapsed().as_millis() as i64), "output recovered; input resumes");
        }
        *lock(&self.shared.blocked) = None;
    }

    /// While blocked: once no record is with the producer any more (every
    /// report is in), re-sends the failed ones front to back, so their order
    /// on the topic is kept; stops at the first one the producer refuses.
    /// Whether the queue recovered (it was blocked and is empty).
    pub(super) fn resend(&mut self) -> bool {
        if self.blocked_since.is_none() || self.queue.iter().any(|p| p.delivery.is_some()) {
            return false;
        }
        if self.queue.is_empty() {
            self.unblock();
            return true;
        }
        for p in self.queue.iter_mut() {
            if p.delivery.is_some() {
                continue;
            }
            match self.producer.try_send(&p.record) {
                Ok(d) => {
                    p.delivery = Some(d);
                    self.resent += 1;
                }
                Err(e) => {
                    if !self.producer.check_fatal() && self.producer.should_warn() {
                        tracing::warn!(topic = %p.record.topic, error = %e, "output still unavailable; retrying");
                    }
                    break;
                }
            }
        }
        false
    }
}

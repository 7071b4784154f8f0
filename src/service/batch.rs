//! Batches: the messages of one partition from one poll burst, handed from
//! the consumer thread to the partition's task as one channel item (see the
//! module docs of [`crate::service`] on why batches exist), and the
//! [`Burst`] that groups a poll burst's messages by partition.

use std::sync::mpsc::Receiver;
use std::time::Instant;

use rdkafka::message::{BorrowedMessage, Message};

/// At most this many messages are taken per poll burst (see [`Batch`]).
pub const MAX_BATCH: usize = 512;
/// A poll burst also ends once its keys and payloads reach this many bytes.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Emptied batches waiting to be refilled by the consumer thread.
pub(super) const BATCH_POOL: usize = 32;

/// Messages of one partition from one poll burst, handed to its task as one
/// channel item.
///
/// Keys and payloads are copied back to back into one arena instead of two
/// allocations per message; emptied batches go back to the consumer thread
/// (a bounded pool) and are refilled, so in steady state a batch costs no
/// allocation at all.
#[derive(Debug)]
pub struct Batch {
    /// Every entry's key then payload, back to back.
    arena: Vec<u8>,
    /// Where each message lives in `arena`, in offset order.
    entries: Vec<Entry>,
    /// When the burst's first message was returned by `poll` (latency metric).
    pub(super) received: Instant,
}

/// Where one message of a [`Batch`] lives in its arena.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The message's offset in its partition.
    offset: i64,
    /// The key is `arena[start..key_end]`, the payload `arena[key_end..end]`.
    start: usize,
    /// End of the key, start of the payload.
    key_end: usize,
    /// End of the payload.
    end: usize,
    /// Whether the message has a key (Kafka tells an absent key from an empty one).
    has_key: bool,
    /// Whether the message has a payload (likewise).
    has_payload: bool,
}

/// One message of a batch, borrowed from its arena.
#[derive(Clone, Copy, Debug)]
pub(super) struct InMsg<'a> {
    /// The message's offset in its partition.
    pub(super) offset: i64,
    /// Its key, if it has one.
    pub(super) key: Option<&'a [u8]>,
    /// Its payload, if it has one.
    pub(super) payload: Option<&'a [u8]>,
}

impl Batch {
    /// An empty batch received at `received`, reusing `recycled`'s buffers if given.
    pub(super) fn new(recycled: Option<Batch>, received: Instant) -> Batch {
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

    /// Appends a message (copied into the arena).
    pub(super) fn push(&mut self, offset: i64, key: Option<&[u8]>, payload: Option<&[u8]>) {
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

    /// Bytes the arena holds room for (a batch grown far beyond
    /// [`MAX_BATCH_BYTES`] is not recycled).
    pub(super) fn arena_capacity(&self) -> usize {
        self.arena.capacity()
    }

    /// The `i`-th message.
    pub(super) fn get(&self, i: usize) -> Option<InMsg<'_>> {
        let e = self.entries.get(i)?;
        Some(InMsg {
            offset: e.offset,
            key: if e.has_key { self.arena.get(e.start..e.key_end) } else { None },
            payload: if e.has_payload { self.arena.get(e.key_end..e.end) } else { None },
        })
    }
}

/// The batch of one partition within a [`Burst`].
pub(super) struct PartitionBatch {
    /// The partition's topic.
    pub(super) topic: String,
    /// The partition.
    pub(super) partition: i32,
    /// Its messages from this burst.
    pub(super) batch: Batch,
}

/// The messages of one poll burst, grouped by partition (an instance holds
/// few partitions, so a scan finds a message's group).
pub(super) struct Burst {
    /// One batch per partition seen in the burst, in order of first message.
    pub(super) groups: Vec<PartitionBatch>,
    /// The one topic this instance reads, when it reads exactly one by name
    /// (not a `^regex`): then a message's topic need not be asked for. Each
    /// `topic()` call is a `strlen` and a UTF-8 check of the name, about 200
    /// instructions per message (callgrind).
    pub(super) only_topic: Option<String>,
    /// Messages in the burst so far (at most [`MAX_BATCH`]).
    pub(super) messages: usize,
    /// Key and payload bytes in the burst so far (at most [`MAX_BATCH_BYTES`]).
    pub(super) bytes: usize,
    /// [`super::Ctx::epoch`] when its messages were polled.
    pub(super) epoch: u64,
    /// When the burst's first message was returned by `poll`.
    pub(super) received: Instant,
}

impl Burst {
    /// An empty burst for an instance reading `only_topic` (see the field).
    pub(super) fn new(only_topic: Option<String>) -> Burst {
        Burst { groups: Vec::new(), only_topic, messages: 0, bytes: 0, epoch: 0, received: Instant::now() }
    }

    /// Adds a polled message to its partition's batch (a recycled one from
    /// `pool` if the partition is new in this burst).
    pub(super) fn add(&mut self, m: &BorrowedMessage<'_>, pool: &Receiver<Batch>) {
        let partition = m.partition();
        let topic = match &self.only_topic {
            Some(t) => t.as_str(),
            None => m.topic(),
        };
        let i = match self.groups.iter().position(|g| g.partition == partition && g.topic == topic) {
            Some(i) => i,
            None => {
                let batch = Batch::new(pool.try_recv().ok(), self.received);
                self.groups.push(PartitionBatch { topic: topic.to_string(), partition, batch });
                self.groups.len() - 1
            }
        };
        let (key, payload) = (m.key(), m.payload());
        self.messages += 1;
        self.bytes += key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
        if let Some(g) = self.groups.get_mut(i) {
            g.batch.push(m.offset(), key, payload);
        }
    }
}

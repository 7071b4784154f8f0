//! The three things that happen to a mailing, as the engine sees them.
//!
//! An [`Event`] borrows its strings from the input buffer (a line of NDJSON or a
//! Kafka message payload), so decoding allocates nothing unless a string
//! contains a JSON escape. The engine interns the campaign and hashes person
//! ids on ingest ([`person_key`]); no raw person id is ever stored.

use std::borrow::Cow;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A mailing left the house: `recipients` addressees, linking to `target`.
    Send,
    /// Someone clicked the link. Generation 0 is a direct recipient (an
    /// *imported* case in the renewal model); generation ≥ 1 reached the mail
    /// through a forward (a *local* case).
    Click,
    /// Someone passed the mail on to `recipients` addressees.
    Forward,
}

impl EventKind {
    /// The `type` string used in the wire format and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Send => "send",
            EventKind::Click => "click",
            EventKind::Forward => "forward",
        }
    }
}

/// One decoded, validated event. Field meanings follow `schemas/event.schema.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// send, click or forward.
    pub kind: EventKind,
    /// Campaign identifier (non-empty).
    pub campaign: Cow<'a, str>,
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// Optional unique event id; events with the same campaign and id are counted once.
    pub id: Option<Cow<'a, str>>,
    /// The person who clicked or forwarded (clicks and forwards).
    pub person: Option<Cow<'a, str>>,
    /// For a click: the person whose forward was clicked.
    pub parent: Option<Cow<'a, str>>,
    /// For a click: 0 = direct recipient, ≥ 1 = reached through forwarding.
    pub generation: u32,
    /// For a send or a forward: the number of addressees.
    pub recipients: u64,
    /// The web service the link points at (sends; optionally clicks).
    pub target: Option<Cow<'a, str>>,
    /// For a send: the mailing list or segment it went to. The engine learns
    /// each audience's direct wave under its target's (see
    /// `engine/direct_wave.rs`); on other events it is accepted and ignored.
    pub audience: Option<Cow<'a, str>>,
}

/// Stable 64-bit key of a string (xxh3 with a fixed seed). Used for person ids
/// and event ids so that raw personal identifiers are never kept in memory,
/// and so that keys are the same across runs and machines.
#[inline]
pub fn person_key(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(s.as_bytes(), 0x666c_6f6f_6467_6174)
}

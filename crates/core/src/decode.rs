//! Bytes → [`Event`], or a [`Rejection`] that says why.
//!
//! The schema rules (`schemas/event.schema.json`) live here. The decoder never
//! panics on input and never allocates for strings without JSON escapes. The
//! caller adds *where* (a line number, a Kafka partition and offset), the
//! decoder says *why*.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::event::{Event, EventKind};
use crate::time::parse_rfc3339_ms;

/// Longest accepted campaign, person, parent, target, audience or id string, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Why an input record was rejected. The variants are the (bounded) values of
/// the `reason` label of `floodgate_events_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not valid JSON, or not a JSON object.
    Json,
    /// Valid JSON, but a field has the wrong JSON type (e.g. `"recipients":"ten"`).
    FieldType,
    /// A required field is missing.
    MissingField,
    /// `type` is not one of send, click, forward.
    UnknownType,
    /// `ts` is neither RFC 3339 nor integer epoch milliseconds in 1970..=9999.
    Timestamp,
    /// A field has a value outside its allowed range (empty campaign, negative
    /// recipients, a generation-0 click with a parent, an id that is too long, …).
    Value,
    /// The record is larger than `limits.max_event_bytes`.
    TooLarge,
    /// The event is further in the future than `estimator.max_future` allows.
    Future,
}

impl RejectReason {
    /// All reasons, for pre-registering metric series.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::Json,
        RejectReason::FieldType,
        RejectReason::MissingField,
        RejectReason::UnknownType,
        RejectReason::Timestamp,
        RejectReason::Value,
        RejectReason::TooLarge,
        RejectReason::Future,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Json => "json",
            RejectReason::FieldType => "field_type",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::Timestamp => "timestamp",
            RejectReason::Value => "value",
            RejectReason::TooLarge => "too_large",
            RejectReason::Future => "future",
        }
    }
}

/// A rejected record: the reason class and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Rejection {
    /// The reason class (metric label).
    pub reason: RejectReason,
    /// What is wrong, in words, e.g. ``click needs `campaign` (missing)``.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection { reason, detail: detail.into() }
    }
}

/// A string that borrows from the input when it can (no escapes) and owns
/// otherwise. `Option<Cow<str>>` would always own: serde only borrows into a
/// bare `Cow` field.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field that must be a string, with a value of another JSON type kept as
/// the name of that type, so that the rejection can name the field
/// (`serde_json`'s type errors give a line and column, not the key). `null`
/// is absent, as for the other optional strings (`Option` takes it).
enum Text<'a> {
    /// A string (borrowed when it has no escape).
    Str(Cow<'a, str>),
    /// Not a string: which JSON type it was.
    Wrong(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text::Wrong("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text::Wrong("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text::Wrong("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text::Wrong("a number"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Text::Wrong("an array"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Text::Wrong("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `ts`: a string (RFC 3339) or an integer (epoch milliseconds).
enum Ts<'a> {
    Text(Cow<'a, str>),
    Millis(i64),
    BadNumber,
}

impl<'de: 'a, 'a> Deserialize<'de> for Ts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer epoch milliseconds")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Ts::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Ts::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Ts::Millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map(Ts::Millis).unwrap_or(Ts::BadNumber))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Ts::BadNumber)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default, Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    campaign: Option<Str<'a>>,
    #[serde(borrow)]
    ts: Option<Ts<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    person: Option<Str<'a>>,
    #[serde(borrow)]
    parent: Option<Str<'a>>,
    #[serde(borrow)]
    target: Option<Str<'a>>,
    #[serde(borrow)]
    audience: Option<Text<'a>>,
    generation: Option<i64>,
    recipients: Option<i64>,
}

/// Epoch milliseconds of 10000-01-01T00:00:00Z: the first instant RFC 3339 cannot write.
const MAX_TS_MS: i64 = 253_402_300_800_000;

fn check_str<'a>(field: &str, v: Option<Str<'a>>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None => Ok(None),
        Some(Str(s)) if s.is_empty() => Err(Rejection::new(RejectReason::Value, format!("`{field}` is empty"))),
        Some(Str(s)) if s.len() > MAX_ID_BYTES => {
            Err(Rejection::new(RejectReason::Value, format!("`{field}` is {} bytes long; at most {MAX_ID_BYTES} are allowed", s.len())))
        }
        Some(Str(s)) => Ok(Some(s)),
    }
}

/// [`check_str`] for a field read as [`Text`]: a value of another type is a
/// `field_type` rejection naming the field.
fn check_text<'a>(field: &str, v: Option<Text<'a>>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None => Ok(None),
        Some(Text::Str(s)) => check_str(field, Some(Str(s))),
        Some(Text::Wrong(what)) => Err(Rejection::new(RejectReason::FieldType, format!("`{field}` must be a string, not {what}"))),
    }
}

fn required<T>(kind: EventKind, field: &str, v: Option<T>) -> Result<T, Rejection> {
    v.ok_or_else(|| Rejection::new(RejectReason::MissingField, format!("{} event needs `{field}` (missing)", kind.as_str())))
}

/// Decodes one JSON object into a validated [`Event`]. Unknown fields are
/// ignored; everything else that does not match the schema is a [`Rejection`].
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, Rejection> {
    match fast::parse(bytes) {
        Some(raw) => validate(raw),
        None => validate(parse_serde(bytes)?),
    }
}

/// The general JSON path (every input the fast path does not take).
fn parse_serde(bytes: &[u8]) -> Result<Raw<'_>, Rejection> {
    serde_json::from_slice(bytes).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Data => RejectReason::FieldType,
            _ => RejectReason::Json,
        };
        Rejection::new(reason, format!("invalid JSON: {e}"))
    })
}

/// The schema rules, on the raw fields.
fn validate(raw: Raw<'_>) -> Result<Event<'_>, Rejection> {
    let kind = match raw.kind.as_ref().map(|s| s.0.as_ref()) {
        Some("send") => EventKind::Send,
        Some("click") => EventKind::Click,
        Some("forward") => EventKind::Forward,
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return Err(Rejection::new(
                RejectReason::UnknownType,
                format!("unknown event type `{shown}` (expected send, click or forward)"),
            ));
        }
        None => return Err(Rejection::new(RejectReason::MissingField, "event needs `type` (missing)")),
    };
    let campaign = required(kind, "campaign", check_str("campaign", raw.campaign)?)?;
    let ts_ms = match required(kind, "ts", raw.ts)? {
        Ts::Millis(ms) if (0..MAX_TS_MS).contains(&ms) => ms,
        Ts::Millis(ms) => {
            return Err(Rejection::new(RejectReason::Timestamp, format!("`ts` {ms} is outside 1970..=9999 in epoch milliseconds")))
        }
        Ts::BadNumber => {
            return Err(Rejection::new(
                RejectReason::Timestamp,
                "`ts` must be an integer number of epoch milliseconds or an RFC 3339 string",
            ))
        }
        Ts::Text(s) => match parse_rfc3339_ms(&s) {
            Some(ms) if (0..MAX_TS_MS).contains(&ms) => ms,
            _ => {
                let shown: String = s.chars().take(40).collect();
                return Err(Rejection::new(
                    RejectReason::Timestamp,
                    format!("`ts` \"{shown}\" is not an RFC 3339 timestamp such as 2026-03-02T08:00:00Z"),
                ));
            }
        },
    };
    let id = check_str("id", raw.id)?;
    let person = check_str("person", raw.person)?;
    let parent = check_str("parent", raw.parent)?;
    let target = check_str("target", raw.target)?;
    let audience = check_text("audience", raw.audience)?;
    let generation = match raw.generation {
        None => 0,
        Some(g) if (0..=1_000_000).contains(&g) => g as u32,
        Some(g) => return Err(Rejection::new(RejectReason::Value, format!("`generation` {g} must be between 0 and 1000000"))),
    };
    let recipients = match raw.recipients {
        None => None,
        Some(r) if r >= 0 => Some(r as u64),
        Some(r) => return Err(Rejection::new(RejectReason::Value, format!("`recipients` {r} must not be negative"))),
    };
    let recipients = match kind {
        EventKind::Send | EventKind::Forward => required(kind, "recipients", recipients)?,
        EventKind::Click => 0,
    };
    match kind {
        EventKind::Send if target.is_none() => return Err(required::<()>(kind, "target", None).unwrap_err()),
        EventKind::Forward if person.is_none() => return Err(required::<()>(kind, "person", None).unwrap_err()),
        EventKind::Click if generation == 0 && parent.is_some() => {
            return Err(Rejection::new(
                RejectReason::Value,
                "click has a `parent` but `generation` is 0 (a direct recipient has no parent; set generation ≥ 1)",
            ))
        }
        _ => {}
    }
    Ok(Event { kind, campaign, ts_ms, id, person, parent, generation, recipients, target, audience })
}

/// The fast path of [`decode`]: a scanner for the common shape of an event (a
/// flat object of known keys whose values are strings without escapes or
/// non-negative integers). It returns exactly what `serde_json` would
/// deserialize into [`Raw`], or `None` for anything else — escapes, `null`,
/// negative or non-integer numbers, unknown keys with other than simple values,
/// duplicate keys, invalid UTF-8, malformed JSON — which then takes the
/// `serde_json` path, so accepted input, values and rejections (reason and
/// message) are those of `serde_json` in every case.
///
/// Strings are found in one of two ways (the `Strings` trait): a
/// *plain* line (printable ASCII, no backslash, at most 256 bytes — what
/// producers normally write) has all its quotes located by one SSE2 pass up
/// front, and each string ends at the next quote bit; any other line is
/// searched eight bytes at a time as it is read. The SSE2 pass and the
/// UTF-8 shortcut it allows are the crate's only `unsafe` code, each block
/// with the argument for its safety beside it: the only module where the
/// crate's `#![deny(unsafe_code)]` is lifted.
#[allow(unsafe_code)]
mod fast {
    use std::borrow::Cow;

    use super::{Raw, Str, Text, Ts};

    /// Most digits of an integer taken on the fast path (always fits an i64).
    const MAX_DIGITS: usize = 18;

    /// The fields of [`Raw`], and any other key.
    #[derive(Clone, Copy)]
    enum Key {
        Type,
        Campaign,
        Ts,
        Id,
        Person,
        Parent,
        Target,
        Audience,
        Generation,
        Recipients,
        Other,
    }

    /// Longest line whose quotes are located up front by [`scan`] (four
    /// 64-byte blocks); longer lines find each closing quote as they go.
    const SCAN_MAX: usize = 256;

    /// Where the quotes are, one bit per byte of the line, for a line that
    /// [`scan`] found plain: every byte printable ASCII (no control
    /// character, no byte ≥ 0x80) and no backslash. In such a line every
    /// quote delimits a string, so the closing quote of a string is simply
    /// the next set bit.
    type Quotes = [u64; SCAN_MAX / 64];

    /// The quote masks of a plain line of at most [`SCAN_MAX`] bytes, or
    /// `None` when the line is longer or not plain. Sixteen bytes per step
    /// with SSE2 (part of every x86-64 CPU); other architectures take the
    /// byte scanner for every line.
    #[inline]
    fn scan(b: &[u8]) -> Option<Quotes> {
        #[cfg(target_arch = "x86_64")]
        {
            scan_sse2(b)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = b;
            None
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn scan_sse2(b: &[u8]) -> Option<Quotes> {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
        if b.len() > SCAN_MAX {
            return None;
        }
        let mut quotes: Quotes = [0; SCAN_MAX / 64];
        let mut stops = 0i32;
        let masks = |lane: &[u8; 16]| {
            // SAFETY: SSE2 is part of the x86-64 baseline, so these
            // instructions exist on every CPU this code is compiled for, and
            // the unaligned load reads exactly the 16 bytes of `lane`.
            unsafe {
                let v = _mm_loadu_si128(lane.as_ptr().cast());
                let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
                // Signed compare: bytes below 0x20 and bytes from 0x80 up
                // (negative as i8) are both "less than 0x20".
                let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                (q as u32 as u64, _mm_movemask_epi8(_mm_or_si128(low, backslash)))
            }
        };
        let full = b.len() / 16;
        for k in 0..full {
            let (q, stop) = masks(b.get(16 * k..16 * k + 16)?.try_into().ok()?);
            stops |= stop;
            quotes[k / 4] |= q << (16 * (k % 4));
        }
        let rest = b.len() % 16;
        if rest > 0 {
            // The last 16 bytes of the line (overlapping the lane before),
            // shifted so that only the `rest` new bytes count; a line shorter
            // than 16 bytes is padded with spaces (neither quotes nor stops).
            let (q, stop) = match b.last_chunk::<16>() {
                Some(lane) => masks(lane),
                None => {
                    let mut lane = [b' '; 16];
                    lane[16 - rest..].copy_from_slice(b);
                    masks(&lane)
                }
            };
            stops |= stop >> (16 - rest);
            quotes[full / 4] |= (q >> (16 - rest)) << (16 * (full % 4));
        }
        (stops == 0).then_some(quotes)
    }

    /// How a [`Cursor`] finds the quote that closes a string.
    trait Strings {
        /// The position of the quote closing the string whose opening quote
        /// is at `open`, or `None` when the string has an escape or a
        /// control character (or no end): such a line takes `serde_json`.
        fn close(&mut self, b: &[u8], open: usize) -> Option<usize>;
    }

    /// A plain line's quotes, taken in order: the opening quote of the next
    /// string is always the lowest quote not yet taken.
    struct Plain {
        quotes: Quotes,
        word: usize,
    }

    impl Plain {
        #[inline(always)]
        fn pop(&mut self) -> Option<usize> {
            loop {
                let m = *self.quotes.get(self.word)?;
                if m != 0 {
                    self.quotes[self.word] = m & (m - 1);
                    return Some(self.word * 64 + m.trailing_zeros() as usize);
                }
                self.word += 1;
            }
        }
    }

    impl Strings for Plain {
        #[inline(always)]
        fn close(&mut self, _: &[u8], open: usize) -> Option<usize> {
            if self.pop()? != open {
                return None;
            }
            self.pop()
        }
    }

    /// Any other line: the closing quote is searched for eight bytes at a
    /// time. In each word, the lowest byte flagged by the zero-byte bit
    /// tricks is exact (false positives only sit above a true one), so the
    /// first quote and the first backslash or control character are found
    /// exactly.
    struct Scanned;

    impl Strings for Scanned {
        #[inline]
        fn close(&mut self, b: &[u8], open: usize) -> Option<usize> {
            const ONES: u64 = 0x0101_0101_0101_0101;
            const HIGHS: u64 = 0x8080_8080_8080_8080;
            let mut n = open + 1;
            loop {
                let chunk = b.get(n..)?;
                if chunk.is_empty() {
                    return None;
                }
                let (x, k) = match chunk.first_chunk::<8>() {
                    Some(w) => (u64::from_le_bytes(*w), 8),
                    None => {
                        // The line's last bytes, padded with spaces (neither
                        // quotes nor special).
                        let mut w = [b' '; 8];
                        w[..chunk.len()].copy_from_slice(chunk);
                        (u64::from_le_bytes(w), chunk.len())
                    }
                };
                let q = x ^ (ONES * u64::from(b'"'));
                let bs = x ^ (ONES * u64::from(b'\\'));
                let quote = q.wrapping_sub(ONES) & !q & HIGHS;
                let special = ((bs.wrapping_sub(ONES) & !bs) | (x.wrapping_sub(ONES * 0x20) & !x)) & HIGHS;
                if quote | special != 0 {
                    if special.trailing_zeros() < quote.trailing_zeros() {
                        return None;
                    }
                    return Some(n + (quote.trailing_zeros() / 8) as usize);
                }
                n += k;
            }
        }
    }

    struct Cursor<'a, S> {
        text: &'a str,
        b: &'a [u8],
        i: usize,
        strings: S,
    }

    impl<'a, S: Strings> Cursor<'a, S> {
        #[inline]
        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        #[inline]
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        /// A string starting at the cursor (on its opening quote), without
        /// escapes or control characters.
        #[inline(always)]
        fn string(&mut self) -> Option<&'a str> {
            if self.peek()? != b'"' {
                return None;
            }
            let end = self.strings.close(self.b, self.i)?;
            let start = self.i + 1;
            self.i = end + 1;
            // Quotes are ASCII, so both ends are character boundaries.
            self.text.get(start..end)
        }

        /// An object key (the cursor on its opening quote). A key with an
        /// escape takes the `serde_json` path, like any escaped string.
        #[inline]
        fn key(&mut self) -> Option<Key> {
            Some(match self.string()?.as_bytes() {
                b"type" => Key::Type,
                b"campaign" => Key::Campaign,
                b"ts" => Key::Ts,
                b"id" => Key::Id,
                b"person" => Key::Person,
                b"parent" => Key::Parent,
                b"target" => Key::Target,
                b"audience" => Key::Audience,
                b"generation" => Key::Generation,
                b"recipients" => Key::Recipients,
                _ => Key::Other,
            })
        }

        /// A non-negative integer of at most [`MAX_DIGITS`] digits, without
        /// leading zeros, not followed by a fraction or an exponent.
        #[inline]
        fn integer(&mut self) -> Option<i64> {
            let start = self.i;
            let mut v: i64 = 0;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                v = v * 10 + i64::from(d - b'0');
                self.i += 1;
            }
            let len = self.i - start;
            if len == 0 || len > MAX_DIGITS || (len > 1 && self.b[start] == b'0') {
                return None;
            }
            match self.peek() {
                Some(b'.' | b'e' | b'E') => None,
                _ => Some(v),
            }
        }
    }

    fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
        if slot.is_some() {
            return None; // duplicate field: serde_json's error
        }
        *slot = Some(v);
        Some(())
    }

    pub(super) fn parse(b: &[u8]) -> Option<Raw<'_>> {
        match scan(b) {
            Some(quotes) => {
                // SAFETY: `scan` found every byte below 0x80, and ASCII is UTF-8.
                let text = unsafe { std::str::from_utf8_unchecked(b) };
                object(Cursor { text, b, i: 0, strings: Plain { quotes, word: 0 } })
            }
            // Valid UTF-8 as a whole, so every string between quotes is too
            // (and serde_json rejects invalid UTF-8 in any string it keeps).
            None => object(Cursor { text: std::str::from_utf8(b).ok()?, b, i: 0, strings: Scanned }),
        }
    }

    /// The object at the cursor, which must span the whole line.
    #[inline(always)]
    fn object<'a, S: Strings>(mut c: Cursor<'a, S>) -> Option<Raw<'a>> {
        let b = c.b;
        let mut raw = Raw::default();
        c.ws();
        if c.peek()? != b'{' {
            return None;
        }
        c.i += 1;
        c.ws();
        if c.peek()? == b'}' {
            c.i += 1;
        } else {
            loop {
                let key = c.key()?;
                c.ws();
                if c.peek()? != b':' {
                    return None;
                }
                c.i += 1;
                c.ws();
                let string = c.peek()? == b'"';
                match key {
                    Key::Type => set(&mut raw.kind, Str(Cow::Borrowed(c.string()?)))?,
                    Key::Campaign => set(&mut raw.campaign, Str(Cow::Borrowed(c.string()?)))?,
                    Key::Id => set(&mut raw.id, Str(Cow::Borrowed(c.string()?)))?,
                    Key::Person => set(&mut raw.person, Str(Cow::Borrowed(c.string()?)))?,
                    Key::Parent => set(&mut raw.parent, Str(Cow::Borrowed(c.string()?)))?,
                    Key::Target => set(&mut raw.target, Str(Cow::Borrowed(c.string()?)))?,
                    // Not a string: `serde_json` names the type for the rejection.
                    Key::Audience => set(&mut raw.audience, Text::Str(Cow::Borrowed(c.string()?)))?,
                    Key::Ts if string => set(&mut raw.ts, Ts::Text(Cow::Borrowed(c.string()?)))?,
                    Key::Ts => set(&mut raw.ts, Ts::Millis(c.integer()?))?,
                    Key::Generation => set(&mut raw.generation, c.integer()?)?,
                    Key::Recipients => set(&mut raw.recipients, c.integer()?)?,
                    // Unknown keys are ignored, as serde does; only simple values here.
                    Key::Other if string => {
                        c.string()?;
                    }
                    Key::Other => {
                        c.integer()?;
                    }
                }
                c.ws();
                match c.peek()? {
                    b',' => {
                        c.i += 1;
                        c.ws();
                    }
                    b'}' => {
                        c.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        c.ws();
        (c.i == b.len()).then_some(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_three_kinds() {
        let s = decode(br#"{"type":"send","campaign":"spring-sale","ts":"2026-03-02T08:00:00Z","recipients":20000,"target":"shop-web"}"#)
            .unwrap();
        assert_eq!(s.kind, EventKind::Send);
        assert_eq!(s.recipients, 20000);
        assert_eq!(s.target.as_deref(), Some("shop-web"));
        assert!(matches!(s.campaign, Cow::Borrowed(_)), "plain strings are borrowed");
        let c = decode(br#"{"type":"click","campaign":"spring-sale","ts":1772438400000,"id":"c-17","person":"p-9","generation":1,"parent":"p-3","target":"shop-web","extra":[1,2]}"#).unwrap();
        assert_eq!((c.kind, c.generation, c.ts_ms), (EventKind::Click, 1, 1_772_438_400_000));
        assert_eq!(c.parent.as_deref(), Some("p-3"));
        let f =
            decode(br#"{"type":"forward","campaign":"spring-sale","ts":"2026-03-02T08:01:00Z","id":"f-4","person":"p-3","recipients":5}"#)
                .unwrap();
        assert_eq!((f.kind, f.recipients), (EventKind::Forward, 5));
        let d = decode(br#"{"type":"click","campaign":"a\"b","ts":0}"#).unwrap();
        assert_eq!(d.campaign, "a\"b");
        assert_eq!(d.generation, 0);
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases: &[(&[u8], RejectReason)] = &[
            (b"{not json", RejectReason::Json),
            (b"[1,2]", RejectReason::FieldType),
            (br#"{"type":"click","campaign":"a","ts":"2026-03-02T08:00:00Z""#, RejectReason::Json),
            (br#"{"type":"jump","campaign":"a","ts":0}"#, RejectReason::UnknownType),
            (br#"{"campaign":"a","ts":0}"#, RejectReason::MissingField),
            (br#"{"type":"click","ts":0}"#, RejectReason::MissingField),
            (br#"{"type":"click","campaign":"a"}"#, RejectReason::MissingField),
            (br#"{"type":"click","campaign":"","ts":0}"#, RejectReason::Value),
            (br#"{"type":"click","campaign":"a","ts":"yesterday"}"#, RejectReason::Timestamp),
            (br#"{"type":"click","campaign":"a","ts":-5}"#, RejectReason::Timestamp),
            (br#"{"type":"click","campaign":"a","ts":1.5}"#, RejectReason::Timestamp),
            (br#"{"type":"send","campaign":"a","ts":0,"target":"w"}"#, RejectReason::MissingField),
            (br#"{"type":"send","campaign":"a","ts":0,"recipients":10}"#, RejectReason::MissingField),
            (br#"{"type":"send","campaign":"a","ts":0,"recipients":-1,"target":"w"}"#, RejectReason::Value),
            (br#"{"type":"send","campaign":"a","ts":0,"recipients":"ten","target":"w"}"#, RejectReason::FieldType),
            (br#"{"type":"forward","campaign":"a","ts":0,"recipients":3}"#, RejectReason::MissingField),
            (br#"{"type":"click","campaign":"a","ts":0,"parent":"p"}"#, RejectReason::Value),
            (br#"{"type":"click","campaign":"a","ts":0,"generation":-1}"#, RejectReason::Value),
            (br#"{"type":"click","campaign":"a","ts":0,"ts":1}"#, RejectReason::FieldType),
        ];
        for (input, want) in cases {
            let got = decode(input).expect_err(&String::from_utf8_lossy(input));
            assert_eq!(got.reason, *want, "{} -> {}", String::from_utf8_lossy(input), got.detail);
            assert!(!got.detail.is_empty());
        }
    }

    /// `audience`: an optional string like `target` (borrowed when plain,
    /// unescaped when not, `null` is absent); any other JSON type is a
    /// `field_type` rejection that names the field, on both decoding paths.
    #[test]
    fn audience_is_an_optional_string_named_when_mistyped() {
        let send = |extra: &str| format!(r#"{{"type":"send","campaign":"a","ts":0,"recipients":10,"target":"w"{extra}}}"#);
        let got = |extra: &str| {
            let line = send(extra);
            let fast = decode(line.as_bytes());
            assert_eq!(fast, parse_serde(line.as_bytes()).and_then(validate), "{line}");
            fast.map(|e| e.audience.map(Cow::into_owned))
        };
        let plain = send(r#","audience":"newsletter""#);
        let e = decode(plain.as_bytes()).expect("a send with an audience");
        assert!(matches!(e.audience, Some(Cow::Borrowed("newsletter"))), "{:?}", e.audience);
        assert_eq!(got(""), Ok(None));
        assert_eq!(got(r#","audience":null"#), Ok(None));
        assert_eq!(got(r#","audience":"caf\u00e9 \"vip\"""#), Ok(Some("café \"vip\"".to_string())));
        // On a click it is accepted (and ignored by the engine).
        let click = decode(br#"{"type":"click","campaign":"a","ts":0,"audience":"x"}"#).expect("click");
        assert_eq!(click.audience.as_deref(), Some("x"));
        for (value, what) in
            [("5", "a number"), ("-1.5", "a number"), ("true", "a boolean"), ("[\"a\"]", "an array"), ("{\"a\":1}", "an object")]
        {
            let r = got(&format!(r#","audience":{value}"#)).expect_err(value);
            assert_eq!(r.reason, RejectReason::FieldType, "{value}: {}", r.detail);
            assert_eq!(r.detail, format!("`audience` must be a string, not {what}"));
        }
        let r = got(r#","audience":"""#).expect_err("empty");
        assert_eq!((r.reason, r.detail.as_str()), (RejectReason::Value, "`audience` is empty"));
        let r = got(&format!(r#","audience":"{}""#, "x".repeat(MAX_ID_BYTES + 1))).expect_err("long");
        assert_eq!(r.reason, RejectReason::Value);
        assert!(r.detail.starts_with("`audience` is 257 bytes long"), "{}", r.detail);
    }

    #[test]
    fn long_ids_are_rejected_not_truncated() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let line = format!(r#"{{"type":"click","campaign":"{long}","ts":0}}"#);
        assert_eq!(decode(line.as_bytes()).unwrap_err().reason, RejectReason::Value);
    }

    /// The plain-line scan reads the line in 16-byte lanes (the last one
    /// overlapping): a quote or a stop byte must be found at every position
    /// and line length, including lines shorter than one lane.
    #[test]
    fn plain_scan_sees_every_position() {
        for pad in 0..80 {
            let line = format!(r#"{{"type":"click","campaign":"a","ts":0,"x":"{}"}}"#, "y".repeat(pad));
            assert!(fast::parse(line.as_bytes()).is_some(), "{line}");
            for (i, stop) in [(line.len() - 3, "\\"), (line.len() - 3, "\t"), (line.len() - 3, "é")] {
                let bad = format!("{}{stop}{}", &line[..i], &line[i..]);
                assert_eq!(decode(bad.as_bytes()), parse_serde(bad.as_bytes()).and_then(validate), "{bad}");
            }
            let cut = &line.as_bytes()[..line.len() - 2];
            assert!(fast::parse(cut).is_none());
        }
        for short in [&b"{}"[..], b" {} ", b"{\"a\":1}", b"{\"a\":\"\"}"] {
            assert!(fast::parse(short).is_some(), "{}", String::from_utf8_lossy(short));
        }
    }

    /// The fast path must agree with serde_json on every input: the simulator's
    /// lines, the unit-test lines, and every single-byte deletion and
    /// substitution (by JSON-significant bytes) of them.
    #[test]
    fn fast_path_agrees_with_serde() {
        let mut corpus: Vec<Vec<u8>> = crate::simulate::simulate(&crate::simulate::demo_scenario(5, 1_772_438_400_000))
            .into_iter()
            .step_by(97)
            .take(40)
            .map(|e| e.line.into_bytes())
            .collect();
        assert!(corpus.iter().all(|l| fast::parse(l).is_some()), "the simulator's lines take the fast path");
        for extra in [
            &br#" {"type" : "click" ,"campaign":"a","ts":0 , "generation": 12,"parent":"p","x":"y","n":5}  "#[..],
            br#"{"type":"send","campaign":"\u00e9t\u00e9","ts":"2026-03-02T08:00:00Z","recipients":20000,"target":"shop-web"}"#,
            br#"{"type":"click","campaign":"caf\xc3\xa9","ts":"2026-03-02T08:00:00.123+01:00","person":"\xe2\x82\xac"}"#,
            br#"{"type":"click","campaign":"a","ts":0,"generation":007}"#,
            br#"{"type":"click","campaign":"a","ts":-0}"#,
            br#"{"type":"click","campaign":"a","ts":99999999999999999999}"#,
            br#"{"type":"click","campaign":"a","ts":123456789012345678,"generation":1e3}"#,
            br#"{"type":"click","campaign":"a","ts":1,"id":null,"x":[1,{"a":2}],"y":true}"#,
            br#"{}"#,
            br#"{"type":"click","campaign":"a","ts":1}x"#,
            br#"{"type":"send","campaign":"a","ts":0,"recipients":10,"target":"w","audience":"news"}"#,
            br#"{"type":"send","campaign":"a","ts":0,"recipients":10,"target":"w","audience":7}"#,
        ] {
            corpus.push(extra.to_vec());
        }
        corpus.push(b"{\"type\":\"click\",\"campaign\":\"caf\xc3\xa9\",\"ts\":0,\"person\":\"\xff\"}".to_vec());
        corpus.push(b"{\"type\":\"click\",\"campaign\":\"a\tb\",\"ts\":0}".to_vec());
        let subst: &[u8] = b"\"\\{}[]:,0-9.e n\t\x01\x7f\xc3\xff";
        let mut checked = 0;
        for line in &corpus {
            let mut variants = vec![line.clone()];
            for i in 0..line.len() {
                let mut v = line.clone();
                v.remove(i);
                variants.push(v);
                for &b in subst {
                    let mut v = line.clone();
                    v[i] = b;
                    variants.push(v);
                }
            }
            for v in &variants {
                let fast = decode(v);
                let slow = parse_serde(v).and_then(validate);
                assert_eq!(fast, slow, "{}", String::from_utf8_lossy(v));
                checked += 1;
            }
        }
        assert!(checked > 10_000);
    }
}

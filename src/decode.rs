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

/// Longest accepted campaign, person, parent, target or id string, in bytes.
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

#[derive(Deserialize)]
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
    generation: Option<i64>,
    recipients: Option<i64>,
}

/// Epoch milliseconds of 10000-01-01T00:00:00Z: the first instant RFC 3339 cannot write.
const MAX_TS_MS: i64 = 253_402_300_800_000;

fn check_str<'a>(field: &str, v: Option<Str<'a>>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None => Ok(None),
        Some(Str(s)) if s.is_empty() => Err(Rejection::new(RejectReason::Value, format!("`{field}` is empty"))),
        Some(Str(s)) if s.len() > MAX_ID_BYTES => Err(Rejection::new(
            RejectReason::Value,
            format!("`{field}` is {} bytes long; at most {MAX_ID_BYTES} are allowed", s.len()),
        )),
        Some(Str(s)) => Ok(Some(s)),
    }
}

fn required<T>(kind: EventKind, field: &str, v: Option<T>) -> Result<T, Rejection> {
    v.ok_or_else(|| Rejection::new(RejectReason::MissingField, format!("{} event needs `{field}` (missing)", kind.as_str())))
}

/// Decodes one JSON object into a validated [`Event`]. Unknown fields are
/// ignored; everything else that does not match the schema is a [`Rejection`].
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, Rejection> {
    let raw: Raw<'_> = serde_json::from_slice(bytes).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Data => RejectReason::FieldType,
            _ => RejectReason::Json,
        };
        Rejection::new(reason, format!("invalid JSON: {e}"))
    })?;
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
            return Err(Rejection::new(RejectReason::Timestamp, "`ts` must be an integer number of epoch milliseconds or an RFC 3339 string"))
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
    Ok(Event { kind, campaign, ts_ms, id, person, parent, generation, recipients, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_three_kinds() {
        let s = decode(br#"{"type":"send","campaign":"spring-sale","ts":"2026-03-02T08:00:00Z","recipients":20000,"target":"shop-web"}"#).unwrap();
        assert_eq!(s.kind, EventKind::Send);
        assert_eq!(s.recipients, 20000);
        assert_eq!(s.target.as_deref(), Some("shop-web"));
        assert!(matches!(s.campaign, Cow::Borrowed(_)), "plain strings are borrowed");
        let c = decode(br#"{"type":"click","campaign":"spring-sale","ts":1772438400000,"id":"c-17","person":"p-9","generation":1,"parent":"p-3","target":"shop-web","extra":[1,2]}"#).unwrap();
        assert_eq!((c.kind, c.generation, c.ts_ms), (EventKind::Click, 1, 1_772_438_400_000));
        assert_eq!(c.parent.as_deref(), Some("p-3"));
        let f = decode(br#"{"type":"forward","campaign":"spring-sale","ts":"2026-03-02T08:01:00Z","id":"f-4","person":"p-3","recipients":5}"#).unwrap();
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

    #[test]
    fn long_ids_are_rejected_not_truncated() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let line = format!(r#"{{"type":"click","campaign":"{long}","ts":0}}"#);
        assert_eq!(decode(line.as_bytes()).unwrap_err().reason, RejectReason::Value);
    }
}

//! Dead letters: a rejected input message, and the scrubbing of its
//! rejection detail before the detail leaves the process.

use std::sync::Arc;

use crate::decode::Rejection;
use crate::sink::kafka::OutRecord;

/// A rejected input message, on its way to the dead-letter topic.
#[derive(Debug)]
pub(super) struct DeadLetter {
    /// Its offset in the input partition.
    pub(super) offset: i64,
    /// Its key, if it had one.
    pub(super) key: Option<Vec<u8>>,
    /// The original bytes (the dead letter's payload).
    pub(super) bytes: Vec<u8>,
    /// Why it was rejected.
    pub(super) rejection: Rejection,
}

/// Where a dead letter came from, for its headers.
pub(super) struct Source<'a> {
    /// The input topic.
    pub(super) topic: &'a str,
    /// The input partition.
    pub(super) partition: i32,
}

impl DeadLetter {
    /// The record for `dead_letter_topic`: the original key and bytes, and
    /// headers saying why (scrubbed, see [`scrub_detail`]) and where from.
    pub(super) fn into_record(self, dead_letter_topic: Arc<str>, source: Source<'_>) -> OutRecord {
        let r = &self.rejection;
        OutRecord {
            topic: dead_letter_topic,
            key: self.key,
            payload: Some(self.bytes),
            headers: vec![
                ("floodgate.reason", r.reason.as_str().as_bytes().to_vec()),
                ("floodgate.detail", scrub_detail(&r.detail).into_bytes()),
                ("floodgate.source.topic", source.topic.as_bytes().to_vec()),
                ("floodgate.source.partition", source.partition.to_string().into_bytes()),
                ("floodgate.source.offset", self.offset.to_string().into_bytes()),
            ],
            timestamp_ms: None,
        }
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

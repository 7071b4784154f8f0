//! Input sources. [`kafka`] is the consumer-group source of `floodgate run`
//! (plus `floodgate produce`, which feeds an input topic from NDJSON). The
//! file/stdin source is [`crate::replay`].

pub mod kafka;

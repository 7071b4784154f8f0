//! # floodgate-core
//!
//! The pure core of floodgate: everything
//! that turns event bytes into decisions, with no I/O, no async runtime, no
//! Kafka and no HTTP. The `floodgate` crate (CLI, Kafka service, sinks,
//! sources, backtest) drives it; so do the benchmarks and property tests.
//! The compiler enforces the boundary: this crate does not depend on tokio,
//! rdkafka or an HTTP stack, and `unsafe` code is denied everywhere except in
//! the decoder's SIMD scanner ([`decode`]'s `fast` module), whose safety
//! argument stands beside each block.
//!
//! ## Layout
//!
//! ```text
//! bytes ─► decode ─► Event ─► engine (campaign table, bins, estimators, detector,
//!                                     forecast, planner) ─► Signal
//! ```
//!
//! * [`event`] — the `Event` type (send, click, forward), borrowed from the input.
//! * [`decode`] — bytes → `Event` or a `Rejection` with its reason.
//! * [`ingest`] — one record of input → size limit, decode, far-future hold,
//!   apply, bin steps: every input rule in one place, for every driver.
//! * [`time`] — RFC 3339 and duration parsing.
//! * [`config`] — the typed, validated configuration sections.
//! * [`engine`] — campaign table, event-time bins, watermark, estimators
//!   ([`engine::renewal`], [`engine::lineage`]), detector, forecast, planner.
//! * [`signal`] — what floodgate emits, as CloudEvents JSON with deterministic ids.
//! * [`simulate`] — synthetic mailings with known R.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod config;
pub mod decode;
pub mod engine;
pub mod event;
pub mod ingest;
pub mod signal;
pub mod simulate;
pub mod time;

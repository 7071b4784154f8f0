//! # floodgate
//!
//! Predictive scale-ahead for mass mailings. floodgate reads a campaign's
//! send, click and forward events, estimates its pass-along reproduction
//! number R (new clickers per clicker, through forwarding) in sliding
//! event-time windows, and tells autoscalers to add capacity for the linked
//! web service *before* a forwarded mailing's wave arrives.
//!
//! ## Layout
//!
//! The engine is a pure, synchronous core; I/O lives at the edges, so
//! `replay`, `run`, `backtest`, the benchmarks and the property tests all drive
//! the same code.
//!
//! ```text
//! source (file | kafka) -> decode -> engine -> sinks (stdout | kafka | metrics | http)
//! ```
//!
//! * [`event`] — the `Event` type (send, click, forward), borrowed from the input.
//! * [`decode`] — bytes → `Event` or a `Rejection` with its reason.
//! * [`time`] — RFC 3339 and duration parsing.
//! * [`config`] — the typed, validated configuration (TOML + env overrides).
//! * [`engine`] — campaign table, event-time bins, watermark, estimators
//!   ([`engine::renewal`], [`engine::lineage`]), detector, forecast, planner.
//! * [`signal`] — what floodgate emits, as CloudEvents JSON with deterministic ids.
//! * [`ingest`] — the ingest step: one record → size limit, decode, far-future
//!   hold, apply, bin step; every input rule in one place.
//! * [`replay`] — the file/stdin driver shared by `floodgate replay` and tests.
//! * [`simulate`] — synthetic mailings with known R.
//! * [`service`] — `floodgate run`: the Kafka consumer-group service (one engine
//!   per partition, rebuild on assignment, at-least-once commits), with
//!   [`source`] (Kafka consumer, `produce`), [`sink`] (Kafka producer, Prometheus
//!   metrics), [`http`] (`/metrics`, `/healthz`, `/readyz`, `/api/campaigns`
//!   on hyper, serving a [`status::Status`] that the service fills),
//!   [`shutdown`] and [`telemetry`].
//! * [`backtest`] — a log replayed against reactive autoscaling on a capacity
//!   model (policies, start-up delay, HTML report).
//! * [`evaluate`] — forecasts, R and onsets scored after the fact against
//!   what the log shows happened, next to baselines (HTML report), and the
//!   converter of real re-share cascades.

#![warn(missing_docs)]

pub mod backtest;
pub mod config;
pub mod evaluate;
pub mod http;
pub mod replay;
pub mod service;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod status;
pub mod telemetry;

// The pure core, re-exported under its old paths so `floodgate::engine`,
// `crate::decode`, … keep naming the same things (`config` is this crate's,
// which re-exports the core's sections).
pub use floodgate_core::{decode, engine, event, ingest, signal, simulate, time};

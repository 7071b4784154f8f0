//! Output sinks of `floodgate run`: [`kafka`] (signals, estimates, dead
//! letters through an idempotent producer) and [`metrics`] (Prometheus).
//! `replay` writes to stdout instead.

pub mod kafka;
pub mod metrics;

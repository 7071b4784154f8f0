//! `tracing` initialisation for `floodgate run`: `[log] format` (`pretty` or
//! `json`) and `[log] level` (a `tracing` filter; `RUST_LOG` wins when set).
//! Logs go to stderr.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber. Calling it twice is harmless (the second
/// call does nothing).
pub fn init(cfg: &LogConfig) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(&cfg.level),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if cfg.format == "json" {
        builder.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

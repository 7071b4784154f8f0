//! The HTTP server of `floodgate run` (`[http] listen`, default
//! `127.0.0.1:9898`, localhost only): read-only, GET only.
//!
//! * `/metrics` — Prometheus text format.
//! * `/healthz` — 200 while the process runs.
//! * `/readyz` — 200 once partitions are assigned, rebuilt and caught up
//!   (lag ≤ `kafka.ready_max_lag`); 503 with the reason otherwise.
//! * `/api/campaigns` — JSON: top campaigns (state, R, P(viral), forecast),
//!   targets (forecast summed over this instance's partitions, replicas) and
//!   partitions (rebuilt, position, lag, watermark).

use std::sync::atomic::Ordering;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::service::Status;
use crate::shutdown::Shutdown;

/// The router (exposed for tests).
pub fn router(status: Status) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/campaigns", get(campaigns))
        .layer(DefaultBodyLimit::max(1024))
        .with_state(status)
}

/// Serves until `shutdown` fires.
pub async fn serve(listener: tokio::net::TcpListener, status: Status, mut shutdown: Shutdown) {
    let app = router(status);
    let r = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.recv().await }).await;
    if let Err(e) = r {
        tracing::error!(error = %e, "http server failed");
    }
}

async fn metrics(State(s): State<Status>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

async fn readyz(State(s): State<Status>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let reason = s.not_ready_reason.lock().map(|r| r.clone()).unwrap_or_default();
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response()
    }
}

async fn campaigns(State(s): State<Status>) -> Response {
    let view = s.api.lock().map(|v| v.clone()).unwrap_or_default();
    Json(view).into_response()
}

//! What `floodgate run` shows about itself over HTTP: the data the
//! service's aggregator writes once a second and [`crate::http`] reads.
//!
//! It lives below both: `http` serves a [`Status`] without knowing the
//! service, and the service fills one without knowing HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::engine::{CampaignView, TargetView};
use crate::sink::metrics::Metrics;

/// One row of `/api/campaigns` → `partitions`.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionView {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Rebuilt (signals flowing).
    pub rebuilt: bool,
    /// Next offset to process.
    pub position: i64,
    /// Messages behind the end of the partition.
    pub lag: i64,
    /// Event time up to which bins are final (RFC 3339).
    pub watermark: Option<String>,
}

/// The body of `/api/campaigns`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiView {
    /// Whether `/readyz` says ready.
    pub ready: bool,
    /// Top campaigns over this instance's partitions (viral first, then by R, then forecast).
    pub campaigns: Vec<CampaignView>,
    /// Targets: forecast summed over partitions, replicas from the sum.
    pub targets: Vec<TargetView>,
    /// Assigned partitions.
    pub partitions: Vec<PartitionView>,
}

/// What the HTTP server reads; cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Status {
    /// The registry behind `/metrics`.
    pub metrics: Metrics,
    /// Ready (assigned, rebuilt, caught up): `/readyz` answers 200.
    pub ready: Arc<AtomicBool>,
    /// Why not ready, if not (the body of a 503 from `/readyz`).
    pub not_ready_reason: Arc<Mutex<String>>,
    /// The body of `/api/campaigns`.
    pub api: Arc<Mutex<ApiView>>,
}

impl Status {
    /// Not ready for `reason`, with an empty API view.
    pub fn new(metrics: Metrics, reason: impl Into<String>) -> Status {
        Status {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            not_ready_reason: Arc::new(Mutex::new(reason.into())),
            api: Arc::new(Mutex::new(ApiView::default())),
        }
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(self.not_ready_reason.lock().map(|r| r.clone()).unwrap_or_default())
        }
    }

    /// A copy of the current `/api/campaigns` view.
    pub fn api_view(&self) -> ApiView {
        self.api.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

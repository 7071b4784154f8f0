//! What the engine needs to know, and nothing more: the estimator, detector,
//! forecast and planner settings (with the per-target overrides) and the
//! state limits. The application's [`crate::config::Config`] builds one with
//! [`crate::config::Config::engine_config`]; its Kafka, HTTP, output and log
//! sections never reach the engine.
//!
//! The sub-structures are the application's own types (`[estimator]`,
//! `[detector]`, … as read from TOML), so a field has one name and one
//! documented default wherever it is read.

use std::collections::BTreeMap;

use crate::config::{DetectorConfig, EstimatorConfig, ForecastConfig, LimitsConfig, PlannerConfig, TargetOverrides};

/// The engine's configuration. Build it from a validated application
/// configuration ([`crate::config::Config::engine_config`]); `Engine::new`
/// checks what only the engine can (the generation interval's shape).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How R is estimated (`[estimator]`).
    pub estimator: EstimatorConfig,
    /// When a campaign counts as viral (`[detector]`).
    pub detector: DetectorConfig,
    /// How demand is forecast (`[forecast]`).
    pub forecast: ForecastConfig,
    /// How demand becomes replicas, for every target without an override (`[planner]`).
    pub planner: PlannerConfig,
    /// Per-target overrides of `planner`, keyed by target service name (`[targets.<name>]`).
    pub targets: BTreeMap<String, TargetOverrides>,
    /// Bounds on state and input (`[limits]`).
    pub limits: LimitsConfig,
    /// `estimator.window` in bins.
    pub window_bins: u32,
    /// `estimator.lineage_window` in bins.
    pub lineage_window_bins: u32,
}

impl EngineConfig {
    /// `estimator.window` in bins.
    pub fn window_in_bins(&self) -> u32 {
        self.window_bins
    }

    /// `estimator.lineage_window` in bins.
    pub fn lineage_window_in_bins(&self) -> u32 {
        self.lineage_window_bins
    }

    /// The capacity model of `target`: `planner` with its override applied.
    pub fn planner_for(&self, target: &str) -> PlannerConfig {
        TargetOverrides::apply(self.targets.get(target), &self.planner)
    }
}

//! What the engine needs to know, and nothing more: the estimator, detector,
//! forecast and planner settings (with the per-target overrides) and the
//! state limits, checked together by [`EngineConfig::new`]. The application's
//! configuration (the `floodgate` crate's `config::Config`) builds one; its
//! Kafka, HTTP, output and log sections never reach the engine.
//!
//! The sub-structures are the application's own types (`[estimator]`,
//! `[detector]`, … as read from TOML), so a field has one name and one
//! documented default wherever it is read.

use std::collections::BTreeMap;

use crate::config::{
    delay, fraction, invalid, open_fraction, planner as check_planner, positive, span_in_bins, ConfigError, DetectorConfig,
    EstimatorConfig, ForecastConfig, LimitsConfig, PlannerConfig, TargetOverrides,
};

/// The engine's configuration, built by [`EngineConfig::new`] (which checks
/// it); `Engine::new` checks what only the engine can (the generation
/// interval's shape).
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
    /// Checks the sections' ranges and consistency (every error names its
    /// key) and computes the windows in bins.
    pub fn new(
        estimator: EstimatorConfig,
        detector: DetectorConfig,
        forecast: ForecastConfig,
        planner: PlannerConfig,
        targets: BTreeMap<String, TargetOverrides>,
        limits: LimitsConfig,
    ) -> Result<EngineConfig, ConfigError> {
        let e = &estimator;
        let bin = e.bin.ms();
        if bin < 1000 {
            return Err(invalid("estimator.bin", "must be at least 1s"));
        }
        let window = span_in_bins("estimator.window", e.window, bin)?;
        if window > 10_000 {
            return Err(invalid("estimator.window", "at most 10000 bins"));
        }
        let lw = span_in_bins("estimator.lineage_window", e.lineage_window, bin)?;
        if lw > 10_000 {
            return Err(invalid("estimator.lineage_window", "at most 10000 bins"));
        }
        positive("estimator.prior_mean", e.prior_mean)?;
        positive("estimator.prior_sd", e.prior_sd)?;
        if e.allowed_lateness.ms() < 0 {
            return Err(invalid("estimator.allowed_lateness", "must not be negative"));
        }
        if e.max_future.ms() < bin {
            return Err(invalid("estimator.max_future", "must be at least one bin"));
        }
        fraction("estimator.lineage_min_coverage", e.lineage_min_coverage)?;
        delay("estimator.generation_interval", e.generation_interval.delay(), bin)?;
        positive("estimator.generation_interval.learn_weight", e.generation_interval.learn_weight)?;
        let follow = e.generation_interval.follow.ms();
        if follow < lw as i64 * bin {
            return Err(invalid("estimator.generation_interval.follow", "must be at least estimator.lineage_window"));
        }
        if follow / bin > 100_000 {
            return Err(invalid("estimator.generation_interval.follow", "at most 100000 bins"));
        }
        delay("estimator.forward.delay", e.forward.delay, bin)?;
        if e.forward.delay.mean >= e.generation_interval.mean {
            return Err(invalid(
                "estimator.forward.delay.mean",
                "must be shorter than estimator.generation_interval.mean (a forward comes before the click it causes)",
            ));
        }
        fraction("estimator.forward.click_prior", e.forward.click_prior)?;
        positive("estimator.forward.click_prior_weight", e.forward.click_prior_weight)?;
        let d = &detector;
        open_fraction("detector.onset_probability", d.onset_probability)?;
        open_fraction("detector.subside_probability", d.subside_probability)?;
        if d.subside_probability >= d.onset_probability {
            return Err(invalid("detector.subside_probability", "must be below detector.onset_probability (hysteresis)"));
        }
        if d.confirm_bins == 0 {
            return Err(invalid("detector.confirm_bins", "must be at least 1"));
        }
        let f = &forecast;
        if f.horizon.ms() < bin {
            return Err(invalid("forecast.horizon", "must be at least one bin"));
        }
        fraction("forecast.click_through", f.click_through)?;
        positive("forecast.click_through_weight", f.click_through_weight)?;
        delay("forecast.response", f.response, bin)?;
        open_fraction("forecast.r_quantile", f.r_quantile)?;
        positive("forecast.learn_weight", f.learn_weight)?;
        check_planner("planner", &planner)?;
        for (name, o) in &targets {
            check_planner(&format!("targets.{name}"), &TargetOverrides::apply(Some(o), &planner))?;
        }
        let l = &limits;
        for (k, v) in [
            ("limits.max_campaigns", l.max_campaigns),
            ("limits.max_clickers_per_campaign", l.max_clickers_per_campaign),
            ("limits.max_targets", l.max_targets),
            ("limits.max_dedup_ids", l.max_dedup_ids),
        ] {
            if v == 0 {
                return Err(invalid(k, "must be at least 1"));
            }
        }
        if l.max_event_bytes < 64 {
            return Err(invalid("limits.max_event_bytes", "must be at least 64"));
        }
        if !(l.forget_below >= 0.0 && l.forget_below.is_finite()) {
            return Err(invalid("limits.forget_below", "must be a finite number of clicks, 0 or more"));
        }
        if l.idle_timeout.ms() < bin * (window as i64) {
            return Err(invalid("limits.idle_timeout", "must be at least one estimator window"));
        }
        Ok(EngineConfig { estimator, detector, forecast, planner, targets, limits, window_bins: window, lineage_window_bins: lw })
    }

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

impl Default for EngineConfig {
    /// The documented defaults of every section.
    fn default() -> Self {
        EngineConfig::new(
            EstimatorConfig::default(),
            DetectorConfig::default(),
            ForecastConfig::default(),
            PlannerConfig::default(),
            BTreeMap::new(),
            LimitsConfig::default(),
        )
        .expect("the documented defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_key() {
        let d = EngineConfig::default();
        assert_eq!((d.window_bins, d.lineage_window_bins), (10, 60));
        let detector = DetectorConfig { subside_probability: 0.99, ..Default::default() };
        let err = EngineConfig::new(
            EstimatorConfig::default(),
            detector,
            ForecastConfig::default(),
            PlannerConfig::default(),
            BTreeMap::new(),
            LimitsConfig::default(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(err.contains("detector.subside_probability"), "{err}");
    }
}

//! Configuration: one typed struct, read from TOML, overridden by environment
//! variables, validated once at start with errors that name the key.
//!
//! Every key has a default that works for email (see `deploy/floodgate.toml`
//! and the README's configuration table, which list them all). Environment
//! overrides take the form `FLOODGATE_<SECTION>__<KEY>` (nested sections are
//! joined with `__` as well), e.g. `FLOODGATE_KAFKA__BROKERS=10.0.0.1:9092` or
//! `FLOODGATE_ESTIMATOR__GENERATION_INTERVAL__MEAN=20m`. Values are read as TOML
//! when they parse as such (numbers, booleans) and as strings otherwise; a
//! comma-separated value sets a list key. Under `kafka.properties` the key is
//! a librdkafka property with `_` standing for `.`:
//! `FLOODGATE_KAFKA__PROPERTIES__SASL_MECHANISM=PLAIN` sets `sasl.mechanism`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::engine::config::EngineConfig;
use crate::time::{format_duration_ms, parse_duration_ms};

/// A configuration error; the message names the key and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given with `--config`.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("config {origin}: {message}")]
    Parse {
        /// Where the config came from (a file path, or "environment").
        origin: String,
        /// What the TOML parser said, including the key.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The dotted key, e.g. `estimator.window`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

/// A duration written as text in the config (`"90s"`, `"17m"`, `"1h30m"`), held in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub i64);

impl Duration {
    /// Milliseconds.
    pub fn ms(self) -> i64 {
        self.0
    }
    /// Whole seconds, as a float.
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration_ms(&s).map(Duration).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration_ms(self.0))
    }
}

/// The window length: a duration (`"10m"`) or a number of bins (`10`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Span {
    /// A number of bins.
    Bins(u32),
    /// A duration; must be a whole multiple of `estimator.bin`.
    Time(Duration),
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a number of bins (e.g. 10) or a duration (e.g. \"10m\")"))?
        {
            Raw::N(n) if (1..=100_000).contains(&n) => Ok(Span::Bins(n as u32)),
            Raw::N(n) => Err(serde::de::Error::custom(format!("{n} bins is out of range 1..=100000"))),
            Raw::S(s) => parse_duration_ms(&s).map(|ms| Span::Time(Duration(ms))).map_err(serde::de::Error::custom),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How R is estimated.
    pub estimator: EstimatorConfig,
    /// When a campaign counts as viral.
    pub detector: DetectorConfig,
    /// How demand is forecast.
    pub forecast: ForecastConfig,
    /// How demand becomes replicas (defaults for every target).
    pub planner: PlannerConfig,
    /// Per-target overrides of `[planner]`, keyed by target service name.
    pub targets: BTreeMap<String, TargetOverrides>,
    /// Bounds on state and input.
    pub limits: LimitsConfig,
    /// Output records.
    pub output: OutputConfig,
    /// Kafka source and sinks (`floodgate run`).
    pub kafka: KafkaConfig,
    /// HTTP server (`floodgate run`).
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[estimator]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EstimatorConfig {
    /// Width of an event-time bin. Default `1m`.
    pub bin: Duration,
    /// Sliding window of the renewal estimator (bins or duration). Default `10m`.
    pub window: Span,
    /// Cohort window of the lineage estimator: clickers of this recent span are
    /// followed (long enough to see most of their offspring: about 3.5 mean
    /// generation intervals). Default `60m`.
    pub lineage_window: Span,
    /// Prior mean of R (Gamma prior, as EpiEstim). Default 5.
    pub prior_mean: f64,
    /// Prior standard deviation of R. Default 5.
    pub prior_sd: f64,
    /// How late (in event time) an event may arrive and still be placed in its
    /// bin. Default `5m`.
    pub allowed_lateness: Duration,
    /// Events further than this ahead of the latest event time seen are
    /// rejected (reason `future`), so one bad clock cannot close every window.
    /// Default `1h`.
    pub max_future: Duration,
    /// `auto` (lineage when clicks carry `parent`, else renewal), `renewal` or `lineage`. Default `auto`.
    pub method: MethodChoice,
    /// Share of local clicks that must carry a known `parent` for `auto` to use
    /// the lineage estimator. Default 0.9.
    pub lineage_min_coverage: f64,
    /// Generation interval: click → offspring click.
    pub generation_interval: DelayConfig,
    /// Forwards as a leading indicator.
    pub forward: ForwardConfig,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        EstimatorConfig {
            bin: Duration(60_000),
            window: Span::Time(Duration(600_000)),
            lineage_window: Span::Time(Duration(3_600_000)),
            prior_mean: 5.0,
            prior_sd: 5.0,
            allowed_lateness: Duration(300_000),
            max_future: Duration(3_600_000),
            method: MethodChoice::Auto,
            lineage_min_coverage: 0.9,
            generation_interval: DelayConfig { mean: Duration(1_020_000), sd: Duration(600_000) },
            forward: ForwardConfig::default(),
        }
    }
}

/// Which estimator drives detection and planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodChoice {
    /// Lineage when the campaign's local clicks carry parents, renewal otherwise.
    Auto,
    /// Always Cori et al. (2013) renewal estimation.
    Renewal,
    /// Always lineage (offspring counting).
    Lineage,
}

/// A delay distribution given by mean and standard deviation (discretised onto
/// bins as EpiEstim's `discr_si`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// Mean delay. Must exceed one bin.
    pub mean: Duration,
    /// Standard deviation.
    pub sd: Duration,
}

/// `[estimator.forward]`: how forwards sharpen early estimates.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardConfig {
    /// Use forwards at all. Default true.
    pub enabled: bool,
    /// Delay from a click to the clicker's forward. Default mean `7m`, sd `6m`.
    pub delay: DelayConfig,
    /// Prior click-through of a forwarded copy (offspring clicks per forwarded
    /// recipient), before the campaign's own matured forwards say otherwise. Default 0.3.
    pub click_prior: f64,
    /// Weight of that prior, in forwarded recipients. Default 50.
    pub click_prior_weight: f64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            enabled: true,
            delay: DelayConfig { mean: Duration(420_000), sd: Duration(360_000) },
            click_prior: 0.3,
            click_prior_weight: 50.0,
        }
    }
}

/// `[detector]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Onset when P(R > 1) is at least this. Default 0.95.
    pub onset_probability: f64,
    /// Subsided when P(R > 1) falls to this or below. Default 0.5.
    pub subside_probability: f64,
    /// Evidence needed: local (forwarded) clicks in the estimator's window. Default 20.
    pub min_local_cases: u32,
    /// Consecutive bin steps a crossing must hold before it is signalled. Default 2.
    pub confirm_bins: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig { onset_probability: 0.95, subside_probability: 0.5, min_local_cases: 20, confirm_bins: 2 }
    }
}

/// `[forecast]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// How far ahead demand is forecast. Default `30m`.
    pub horizon: Duration,
    /// Expected direct click-through of a send (clicks per recipient) before
    /// any click is seen. Default 0.05.
    pub click_through: f64,
    /// Weight of that prior, in recipients, when it is updated with the observed
    /// direct clicks. Default 2000.
    pub click_through_weight: f64,
    /// Delay from send to a direct click (response curve). Default mean `30m`, sd `30m`.
    pub response: DelayConfig,
    /// The posterior quantile of R used to project pass-along demand (a cautious
    /// planner uses more than the mean). Default 0.75.
    pub r_quantile: f64,
    /// Learn each target's direct wave (response curve and click-through)
    /// from its past campaigns, with `response` and `click_through` as the
    /// prior (`engine/direct_wave.rs`). `false`: the configured constants,
    /// always. Default true.
    pub learn: bool,
    /// Weight of the configured response curve against the learned delays,
    /// in direct clicks. Default 50.
    pub learn_weight: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            horizon: Duration(1_800_000),
            click_through: 0.05,
            click_through_weight: 2000.0,
            response: DelayConfig { mean: Duration(1_800_000), sd: Duration(1_800_000) },
            r_quantile: 0.75,
            learn: true,
            learn_weight: 50.0,
        }
    }
}

/// `[planner]`: capacity model of a target service.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerConfig {
    /// HTTP requests a click causes (page, assets, API calls). Default 10.
    pub requests_per_click: f64,
    /// Requests per second one replica serves. Default 50.
    pub capacity_per_replica: f64,
    /// Spare capacity on top of the forecast (and of the observed rate, for
    /// the reactive floor), as a fraction. Default 0.25.
    pub headroom: f64,
    /// Request rate not caused by campaigns, always planned for. Default 0.
    pub baseline_rps: f64,
    /// Fewest replicas ever asked for. Default 2.
    pub min_replicas: u32,
    /// Most replicas ever asked for. Default 200.
    pub max_replicas: u32,
    /// A lower replica count is signalled only after the plan has stayed
    /// lower for this long (scale-up is immediate). The time-phased plan
    /// already holds replicas while the upper quantile of the forecast needs
    /// them within the lead time; this only damps flapping. Default `0s`.
    pub cooldown: Duration,
    /// Time from asking for a replica to its serving requests (scheduling,
    /// image pull, start, readiness). Each replica is asked for this long,
    /// plus the decision delay (`estimator.bin` + `estimator.allowed_lateness`),
    /// before the forecast needs it. Default `90s`.
    pub startup: Duration,
    /// Predictive quantile of each future minute's demand the plan provides
    /// for (0.5 … 0.999; the forecast path at `forecast.r_quantile` plus the
    /// Poisson spread of the clicks, summed over the target's campaigns).
    /// Default 0.9.
    pub quantile: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            requests_per_click: 10.0,
            capacity_per_replica: 50.0,
            headroom: 0.25,
            baseline_rps: 0.0,
            min_replicas: 2,
            max_replicas: 200,
            cooldown: Duration(0),
            startup: Duration(90_000),
            quantile: 0.9,
        }
    }
}

/// `[targets.<name>]`: any `[planner]` key, for one target service.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetOverrides {
    /// See `planner.requests_per_click`.
    pub requests_per_click: Option<f64>,
    /// See `planner.capacity_per_replica`.
    pub capacity_per_replica: Option<f64>,
    /// See `planner.headroom`.
    pub headroom: Option<f64>,
    /// See `planner.baseline_rps`.
    pub baseline_rps: Option<f64>,
    /// See `planner.min_replicas`.
    pub min_replicas: Option<u32>,
    /// See `planner.max_replicas`.
    pub max_replicas: Option<u32>,
    /// See `planner.cooldown`.
    pub cooldown: Option<Duration>,
    /// See `planner.startup`.
    pub startup: Option<Duration>,
    /// See `planner.quantile`.
    pub quantile: Option<f64>,
}

/// `[limits]`: bounded state under hostile input.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Campaigns tracked at once; beyond it, the idlest campaign is shed. Default 100000.
    pub max_campaigns: u32,
    /// Clickers followed per campaign by the lineage estimator. Default 200000.
    pub max_clickers_per_campaign: u32,
    /// Target services tracked (metric label values); more go to `other`. Default 100.
    pub max_targets: u32,
    /// Largest accepted event, in bytes. Default 65536.
    pub max_event_bytes: u32,
    /// A campaign with no event for this long is forgotten. Default `6h`.
    pub idle_timeout: Duration,
    /// Event ids remembered for de-duplication (the open bins). Default 5000000.
    pub max_dedup_ids: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_campaigns: 100_000,
            max_clickers_per_campaign: 200_000,
            max_targets: 100,
            max_event_bytes: 65_536,
            idle_timeout: Duration(6 * 3_600_000),
            max_dedup_ids: 5_000_000,
        }
    }
}

/// `[output]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// CloudEvents `source` attribute. Default `urn:floodgate`.
    pub source: String,
    /// Number of campaigns in the bounded top-K (metrics, `/api/campaigns`). Default 20.
    pub top_k: u32,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { source: "urn:floodgate".into(), top_k: 20 }
    }
}

/// `[kafka]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Consumer group id. Default `floodgate`.
    pub group: String,
    /// Topics with send, click and forward events. Default `["floodgate.events"]`.
    pub input_topics: Vec<String>,
    /// Topic for signals (CloudEvents JSON, keyed by campaign or target). Default `floodgate.signals`.
    pub signal_topic: String,
    /// Topic for `floodgate.estimate` records; empty = not published. Default empty.
    pub estimate_topic: String,
    /// Topic for undecodable or invalid input. Default `floodgate.dead-letter`.
    pub dead_letter_topic: String,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`, `sasl.mechanism`).
    pub properties: BTreeMap<String, String>,
    /// Partitions idle this long (wall clock) advance their watermark by the wall clock. Default `1m`.
    pub idle_partition_timeout: Duration,
    /// Longest wait for broker acknowledgements at shutdown. Default `10s`.
    pub shutdown_timeout: Duration,
    /// How far back (in messages) a newly assigned partition is rewound before
    /// its committed offset to rebuild campaign state (signals suppressed up to
    /// the committed offset). Should cover a partition's traffic over the
    /// rebuild span (see `service::rebuild_span_ms`). Default 200000.
    pub rebuild_max_messages: u64,
    /// How often the offsets of applied and acknowledged events are committed. Default `1s`.
    pub commit_interval: Duration,
    /// `/readyz` is ready only while every assigned partition lags by at most this many messages. Default 10000.
    pub ready_max_lag: u64,
    /// Whether `run` creates missing output topics (signals, estimates, dead
    /// letters) at start. With `false` (clusters where applications may not
    /// create topics) signals for a missing topic are retried until it
    /// exists, and consumption pauses meanwhile. Default `true`.
    pub create_topics: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group: "floodgate".into(),
            input_topics: vec!["floodgate.events".into()],
            signal_topic: "floodgate.signals".into(),
            estimate_topic: String::new(),
            dead_letter_topic: "floodgate.dead-letter".into(),
            properties: BTreeMap::new(),
            idle_partition_timeout: Duration(60_000),
            shutdown_timeout: Duration(10_000),
            rebuild_max_messages: 200_000,
            commit_interval: Duration(1_000),
            ready_max_lag: 10_000,
            create_topics: true,
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address for `/metrics`, `/healthz`, `/readyz`, `/api/campaigns`.
    /// Default `127.0.0.1:9898` (localhost only; set `0.0.0.0:9898` in a container).
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:9898".into() }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`. Default `pretty`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `floodgate=debug`. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "pretty".into(), level: "info".into() }
    }
}

impl Config {
    /// Reads `path` (or the defaults when `None`), applies the `FLOODGATE_*`
    /// variables of the process environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?,
                p.display().to_string(),
            ),
            None => (String::new(), "defaults".to_string()),
        };
        Self::from_toml_with_env(&text, &origin, env)
    }

    /// Parses TOML text, applies environment overrides and validates.
    pub fn from_toml_with_env(text: &str, origin: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        for (k, v) in env {
            // Every key lives in a section, so an override has a `__`; other
            // FLOODGATE_* variables belong to the tooling (FLOODGATE_CACHE,
            // FLOODGATE_PYTHON, FLOODGATE_KAFKA_STATE, …) and are ignored.
            if let Some(path) = k.strip_prefix("FLOODGATE_").filter(|p| p.contains("__")) {
                apply_env(&mut value, path, &v)?;
            }
        }
        let cfg: Config = Config::deserialize(toml::Value::Table(value))
            .map_err(|e| ConfigError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text without looking at the environment.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_with_env(text, "text", std::iter::empty())
    }

    /// Checks ranges and consistency. Every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.estimator;
        let bin = e.bin.ms();
        if bin < 1000 {
            return Err(invalid("estimator.bin", "must be at least 1s"));
        }
        let window = self.window_bins("estimator.window", e.window)?;
        if window > 10_000 {
            return Err(invalid("estimator.window", "at most 10000 bins"));
        }
        let lw = self.window_bins("estimator.lineage_window", e.lineage_window)?;
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
        delay("estimator.generation_interval", e.generation_interval, bin)?;
        delay("estimator.forward.delay", e.forward.delay, bin)?;
        if e.forward.delay.mean >= e.generation_interval.mean {
            return Err(invalid(
                "estimator.forward.delay.mean",
                "must be shorter than estimator.generation_interval.mean (a forward comes before the click it causes)",
            ));
        }
        fraction("estimator.forward.click_prior", e.forward.click_prior)?;
        positive("estimator.forward.click_prior_weight", e.forward.click_prior_weight)?;
        let d = &self.detector;
        open_fraction("detector.onset_probability", d.onset_probability)?;
        open_fraction("detector.subside_probability", d.subside_probability)?;
        if d.subside_probability >= d.onset_probability {
            return Err(invalid("detector.subside_probability", "must be below detector.onset_probability (hysteresis)"));
        }
        if d.confirm_bins == 0 {
            return Err(invalid("detector.confirm_bins", "must be at least 1"));
        }
        let f = &self.forecast;
        if f.horizon.ms() < bin {
            return Err(invalid("forecast.horizon", "must be at least one bin"));
        }
        fraction("forecast.click_through", f.click_through)?;
        positive("forecast.click_through_weight", f.click_through_weight)?;
        delay("forecast.response", f.response, bin)?;
        open_fraction("forecast.r_quantile", f.r_quantile)?;
        positive("forecast.learn_weight", f.learn_weight)?;
        planner("planner", &self.planner)?;
        for name in self.targets.keys() {
            planner(&format!("targets.{name}"), &self.planner_for(name))?;
        }
        let l = &self.limits;
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
        if l.idle_timeout.ms() < bin * (window as i64) {
            return Err(invalid("limits.idle_timeout", "must be at least one estimator window"));
        }
        if self.output.source.is_empty() {
            return Err(invalid("output.source", "must not be empty"));
        }
        if !matches!(self.log.format.as_str(), "pretty" | "json") {
            return Err(invalid("log.format", format!("`{}` is not one of pretty, json", self.log.format)));
        }
        Ok(())
    }

    fn window_bins(&self, key: &str, span: Span) -> Result<u32, ConfigError> {
        let bin = self.estimator.bin.ms();
        match span {
            Span::Bins(n) => Ok(n),
            Span::Time(d) if d.ms() <= 0 || d.ms() % bin != 0 => Err(invalid(
                key,
                format!("{} is not a whole positive multiple of estimator.bin ({})", format_duration_ms(d.ms()), format_duration_ms(bin)),
            )),
            Span::Time(d) => Ok((d.ms() / bin) as u32),
        }
    }

    /// `estimator.window` in bins (valid after [`Config::validate`]).
    pub fn window_in_bins(&self) -> u32 {
        self.window_bins("estimator.window", self.estimator.window).unwrap_or(10)
    }

    /// `estimator.lineage_window` in bins (valid after [`Config::validate`]).
    pub fn lineage_window_in_bins(&self) -> u32 {
        self.window_bins("estimator.lineage_window", self.estimator.lineage_window).unwrap_or(60)
    }

    /// The capacity model of `target`: `[planner]` with `[targets.<target>]` applied.
    pub fn planner_for(&self, target: &str) -> PlannerConfig {
        TargetOverrides::apply(self.targets.get(target), &self.planner)
    }

    /// The part of this configuration the engine reads (valid after
    /// [`Config::validate`]).
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            estimator: self.estimator.clone(),
            detector: self.detector.clone(),
            forecast: self.forecast.clone(),
            planner: self.planner.clone(),
            targets: self.targets.clone(),
            limits: self.limits.clone(),
            window_bins: self.window_in_bins(),
            lineage_window_bins: self.lineage_window_in_bins(),
        }
    }
}

impl TargetOverrides {
    /// `planner` with the keys set in `overrides` (if any) replaced: the one
    /// rule behind [`Config::planner_for`] and [`EngineConfig::planner_for`].
    pub fn apply(overrides: Option<&TargetOverrides>, planner: &PlannerConfig) -> PlannerConfig {
        let mut p = planner.clone();
        if let Some(o) = overrides {
            p.requests_per_click = o.requests_per_click.unwrap_or(p.requests_per_click);
            p.capacity_per_replica = o.capacity_per_replica.unwrap_or(p.capacity_per_replica);
            p.headroom = o.headroom.unwrap_or(p.headroom);
            p.baseline_rps = o.baseline_rps.unwrap_or(p.baseline_rps);
            p.min_replicas = o.min_replicas.unwrap_or(p.min_replicas);
            p.max_replicas = o.max_replicas.unwrap_or(p.max_replicas);
            p.cooldown = o.cooldown.unwrap_or(p.cooldown);
            p.startup = o.startup.unwrap_or(p.startup);
            p.quantile = o.quantile.unwrap_or(p.quantile);
        }
        p
    }
}

impl From<&Config> for EngineConfig {
    fn from(cfg: &Config) -> EngineConfig {
        cfg.engine_config()
    }
}

impl From<Config> for EngineConfig {
    fn from(cfg: Config) -> EngineConfig {
        cfg.engine_config()
    }
}

impl From<std::sync::Arc<Config>> for EngineConfig {
    fn from(cfg: std::sync::Arc<Config>) -> EngineConfig {
        cfg.engine_config()
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} must be a positive number")))
    }
}

fn fraction(key: &str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} must be between 0 and 1")))
    }
}

fn open_fraction(key: &str, v: f64) -> Result<(), ConfigError> {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} must be strictly between 0 and 1")))
    }
}

fn delay(key: &str, d: DelayConfig, bin: i64) -> Result<(), ConfigError> {
    if d.mean.ms() <= bin {
        return Err(invalid(
            &format!("{key}.mean"),
            format!("must exceed one bin ({}) — the discretisation needs mean > 1 bin", format_duration_ms(bin)),
        ));
    }
    if d.sd.ms() <= 0 {
        return Err(invalid(&format!("{key}.sd"), "must be positive"));
    }
    Ok(())
}

fn planner(key: &str, p: &PlannerConfig) -> Result<(), ConfigError> {
    positive(&format!("{key}.requests_per_click"), p.requests_per_click)?;
    positive(&format!("{key}.capacity_per_replica"), p.capacity_per_replica)?;
    if !(p.headroom.is_finite() && p.headroom >= 0.0) {
        return Err(invalid(&format!("{key}.headroom"), "must be ≥ 0"));
    }
    if !(p.baseline_rps.is_finite() && p.baseline_rps >= 0.0) {
        return Err(invalid(&format!("{key}.baseline_rps"), "must be ≥ 0"));
    }
    if p.max_replicas == 0 || p.min_replicas > p.max_replicas {
        return Err(invalid(&format!("{key}.max_replicas"), format!("must be ≥ 1 and ≥ min_replicas ({})", p.min_replicas)));
    }
    if p.cooldown.ms() < 0 {
        return Err(invalid(&format!("{key}.cooldown"), "must not be negative"));
    }
    if p.startup.ms() < 0 {
        return Err(invalid(&format!("{key}.startup"), "must not be negative"));
    }
    if !(p.quantile >= 0.5 && p.quantile <= 0.999) {
        return Err(invalid(&format!("{key}.quantile"), "must be in [0.5, 0.999]"));
    }
    Ok(())
}

/// Sets one `FLOODGATE_A__B__C=value` override in the TOML tree.
fn apply_env(root: &mut toml::Table, path: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Parse { origin: "environment".into(), message: format!("FLOODGATE_{path}: empty key segment") });
    }
    let (last, sections) = match parts.split_last() {
        Some(x) => x,
        None => return Ok(()),
    };
    let mut table = root;
    for s in sections {
        let entry = table.entry(s.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Parse {
                    origin: "environment".into(),
                    message: format!("FLOODGATE_{path}: `{s}` is not a section"),
                })
            }
        };
    }
    let is_properties = sections.len() == 2 && sections[0] == "kafka" && sections[1] == "properties";
    let key = if is_properties { last.replace('_', ".") } else { last.clone() };
    let value = if is_properties {
        toml::Value::String(raw.to_string())
    } else if is_list_key(sections, last) {
        toml::Value::Array(raw.split(',').map(|s| toml::Value::String(s.trim().to_string())).filter(|v| v.as_str() != Some("")).collect())
    } else {
        match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
            Err(_) => toml::Value::String(raw.to_string()),
        }
    };
    table.insert(key, value);
    Ok(())
}

fn is_list_key(sections: &[String], last: &str) -> bool {
    sections.len() == 1 && sections[0] == "kafka" && last == "input_topics"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_validate() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.window_in_bins(), 10);
        assert_eq!(c.lineage_window_in_bins(), 60);
        assert_eq!(c.estimator.generation_interval.mean.ms(), 17 * 60_000);
    }

    #[test]
    fn file_values_and_env_overrides() {
        let text = "[estimator]\nbin = \"30s\"\nwindow = 12\n[estimator.generation_interval]\nmean = \"20m\"\nsd = \"8m\"\n[targets.shop-web]\nmax_replicas = 40\n";
        let c = Config::from_toml_with_env(
            text,
            "t",
            env(&[
                ("FLOODGATE_KAFKA__BROKERS", "10.0.0.1:9092"),
                ("FLOODGATE_KAFKA__INPUT_TOPICS", "clicks, sends"),
                ("FLOODGATE_DETECTOR__MIN_LOCAL_CASES", "50"),
                ("FLOODGATE_KAFKA__PROPERTIES__SASL_MECHANISM", "PLAIN"),
                ("FLOODGATE_ESTIMATOR__GENERATION_INTERVAL__SD", "9m"),
                ("OTHER", "x"),
                ("FLOODGATE_PYTHON", "/usr/bin/python3"),
                ("FLOODGATE_KAFKA_STATE", "/tmp/x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.estimator.bin.ms(), 30_000);
        assert_eq!(c.window_in_bins(), 12);
        assert_eq!(c.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(c.kafka.input_topics, vec!["clicks", "sends"]);
        assert_eq!(c.detector.min_local_cases, 50);
        assert_eq!(c.kafka.properties.get("sasl.mechanism").map(String::as_str), Some("PLAIN"));
        assert_eq!(c.estimator.generation_interval.sd.ms(), 9 * 60_000);
        assert_eq!(c.planner_for("shop-web").max_replicas, 40);
        assert_eq!(c.planner_for("other").max_replicas, 200);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[estimator]\nbin = \"ten\"", "bin"),
            ("[estimator]\nwindow = \"90s\"", "estimator.window"),
            ("[estimator]\nprior_sd = -1.0", "estimator.prior_sd"),
            ("[estimator]\nbogus = 1", "bogus"),
            ("[detector]\nsubside_probability = 0.99", "detector.subside_probability"),
            ("[estimator.generation_interval]\nmean = \"30s\"\nsd = \"10s\"", "estimator.generation_interval.mean"),
            ("[targets.web]\nmin_replicas = 9\nmax_replicas = 3", "targets.web.max_replicas"),
            ("[log]\nformat = \"xml\"", "log.format"),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }
}

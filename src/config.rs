//! The application's configuration: one typed struct, read from TOML,
//! overridden by environment variables, validated once at start with errors
//! that name the key.
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
//!
//! The engine's sections and their checks live in `floodgate-core`
//! (`floodgate_core::config`, re-exported here); this module adds the
//! sections only the service reads (`[output]`, `[kafka]`, `[http]`,
//! `[log]`), the file and the environment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use floodgate_core::config::*;
use floodgate_core::engine::EngineConfig;

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
    /// The compacted topic where `run` keeps the learned model, one record
    /// per target keyed by its name: read at start, published every
    /// `model_publish_interval` and at shutdown. Empty = off (each start
    /// learns from scratch). Default `floodgate.model`.
    pub model_topic: String,
    /// How often `run` publishes the targets whose learned model changed
    /// to `model_topic` (and once more at graceful shutdown). Default `60s`.
    pub model_publish_interval: Duration,
    /// The compacted topic through which instances plan each target as one:
    /// every partition engine publishes its demand on each target there
    /// (keyed by target and partition), and the instance holding a target's
    /// home partition plans it from every engine's latest demand for
    /// `floodgate_target_desired_replicas` (see `service::demand`). Empty =
    /// off: the gauges sum this instance's partition engines' forecasts.
    /// Default `floodgate.demand`.
    pub demand_topic: String,
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
            model_topic: "floodgate.model".into(),
            model_publish_interval: Duration(60_000),
            demand_topic: "floodgate.demand".into(),
        }
    }
}

impl KafkaConfig {
    /// Checks `kafka.model_topic` and `kafka.demand_topic` (legal topic
    /// names, not one of the other topics) and `kafka.model_publish_interval`
    /// (positive).
    fn validate_model_keys(&self) -> Result<(), ConfigError> {
        if self.model_publish_interval.ms() <= 0 {
            return Err(invalid("kafka.model_publish_interval", "must be positive"));
        }
        self.validate_own_topic("kafka.model_topic", &self.model_topic, "the model")?;
        self.validate_own_topic("kafka.demand_topic", &self.demand_topic, "demand sharing")?;
        if !self.model_topic.is_empty() && self.model_topic == self.demand_topic {
            return Err(invalid(
                "kafka.demand_topic",
                format!("`{}` is also kafka.model_topic; demand sharing needs a topic of its own", self.demand_topic),
            ));
        }
        Ok(())
    }

    /// Checks that topic `t` (of key `key`, used for `what`) is empty (off)
    /// or a legal topic name that none of the other topics uses.
    fn validate_own_topic(&self, key: &'static str, t: &str, what: &str) -> Result<(), ConfigError> {
        if t.is_empty() {
            return Ok(());
        }
        if t.len() > 249 || t == "." || t == ".." || !t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(invalid(key, format!("`{t}` is not a Kafka topic name (1-249 of a-z, A-Z, 0-9, `.`, `_`, `-`; empty = off)")));
        }
        let others = [
            ("kafka.signal_topic", &self.signal_topic),
            ("kafka.estimate_topic", &self.estimate_topic),
            ("kafka.dead_letter_topic", &self.dead_letter_topic),
        ];
        if let Some((other, _)) = others.iter().find(|(_, o)| o.as_str() == t) {
            return Err(invalid(key, format!("`{t}` is also {other}; {what} needs a topic of its own")));
        }
        if self.input_topics.iter().any(|i| i == t) {
            return Err(invalid(key, format!("`{t}` is also one of kafka.input_topics; {what} needs a topic of its own")));
        }
        Ok(())
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
        let given = value.clone();
        let mut cfg: Config = Config::deserialize(toml::Value::Table(value))
            .map_err(|e| ConfigError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        cfg.follow_bin(|key| key_is_given(&given, key));
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text without looking at the environment.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_with_env(text, "text", std::iter::empty())
    }

    /// Gives every duration key that must relate to `estimator.bin` and that
    /// the user did not set (`is_given(dotted key)` is false) a default valid
    /// for that bin. The rule, one for every such key: today's default for
    /// bins up to one minute, and the same number of bins for longer ones —
    /// `max(default, n bins)` where `n` is the default in minutes (window 10,
    /// lineage window 60, generation interval 17 / 10, response curve 30 / 30,
    /// horizon 30, max future 60, idle timeout 360, forward delay
    /// 7 / 6), windows rounded up to whole bins. The forward delay must come
    /// before the click it causes: when that default is not shorter than the
    /// generation interval's mean, it is 7/17 and 6/17 of that mean (the
    /// proportions of `7m` / `6m` to `17m`) — or, if that share is not more
    /// than one bin, halfway between one bin and the mean. `limits.idle_timeout` also covers the
    /// estimator window. With the default `1m` bin every value is today's.
    /// Keys the user set are left alone: [`Config::validate`] still checks
    /// them and names them when they conflict with the bin.
    pub fn follow_bin(&mut self, is_given: impl Fn(&str) -> bool) {
        let bin = self.estimator.bin.ms();
        if bin <= 0 {
            return; // validate reports `estimator.bin`
        }
        let scaled = |minutes: i64| Duration((minutes * 60_000).max(minutes.saturating_mul(bin)));
        let span = |minutes: i64| {
            let ms = scaled(minutes).ms();
            Span::Time(Duration((ms + bin - 1) / bin * bin))
        };
        let e = &mut self.estimator;
        if !is_given("estimator.window") {
            e.window = span(10);
        }
        if !is_given("estimator.lineage_window") {
            e.lineage_window = span(60);
        }
        if !is_given("estimator.max_future") {
            e.max_future = scaled(60);
        }
        if !is_given("estimator.generation_interval.mean") {
            e.generation_interval.mean = scaled(17);
        }
        if !is_given("estimator.generation_interval.sd") {
            e.generation_interval.sd = scaled(10);
        }
        if !is_given("estimator.generation_interval.follow") {
            e.generation_interval.follow = scaled(1440).max(span_duration(e.lineage_window, bin));
        }
        // A forward comes before the click it causes: when the usual default
        // would not, it becomes the share of the generation interval that
        // today's defaults have (7m and 6m of 17m), kept above one bin.
        let gi_mean = e.generation_interval.mean.ms();
        let fits = scaled(7).ms() < gi_mean;
        if !is_given("estimator.forward.delay.mean") {
            let share = gi_mean * 7 / 17;
            let halfway = bin + (gi_mean - bin) / 2;
            e.forward.delay.mean = Duration(if fits {
                scaled(7).ms()
            } else if share > bin {
                share
            } else {
                halfway
            });
        }
        if !is_given("estimator.forward.delay.sd") {
            e.forward.delay.sd = if fits { scaled(6) } else { Duration((gi_mean * 6 / 17).max(1)) };
        }
        let f = &mut self.forecast;
        if !is_given("forecast.horizon") {
            f.horizon = scaled(30);
        }
        if !is_given("forecast.response.mean") {
            f.response.mean = scaled(30);
        }
        if !is_given("forecast.response.sd") {
            f.response.sd = scaled(30);
        }
        if !is_given("limits.idle_timeout") {
            self.limits.idle_timeout = scaled(10_080).max(span_duration(self.estimator.window, bin));
        }
    }

    /// Checks ranges and consistency. Every error names its key. The
    /// engine's sections are checked by [`EngineConfig::new`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.checked_engine_config()?;
        if self.output.source.is_empty() {
            return Err(invalid("output.source", "must not be empty"));
        }
        if !matches!(self.log.format.as_str(), "pretty" | "json") {
            return Err(invalid("log.format", format!("`{}` is not one of pretty, json", self.log.format)));
        }
        self.kafka.validate_model_keys()
    }

    /// The engine's part of this configuration, checked.
    pub fn checked_engine_config(&self) -> Result<EngineConfig, ConfigError> {
        EngineConfig::new(
            self.estimator.clone(),
            self.detector.clone(),
            self.forecast.clone(),
            self.planner.clone(),
            self.targets.clone(),
            self.limits.clone(),
        )
    }

    /// `estimator.window` in bins (valid after [`Config::validate`]).
    pub fn window_in_bins(&self) -> u32 {
        span_in_bins("estimator.window", self.estimator.window, self.estimator.bin.ms()).unwrap_or(10)
    }

    /// `estimator.lineage_window` in bins (valid after [`Config::validate`]).
    pub fn lineage_window_in_bins(&self) -> u32 {
        span_in_bins("estimator.lineage_window", self.estimator.lineage_window, self.estimator.bin.ms()).unwrap_or(60)
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

/// Whether the dotted `key` (e.g. `estimator.forward.delay.mean`) is present in
/// the TOML tree the user gave (file and `FLOODGATE_*` variables).
fn key_is_given(root: &toml::Table, key: &str) -> bool {
    let mut table = root;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        match table.get(part) {
            None => return false,
            Some(_) if parts.peek().is_none() => return true,
            Some(toml::Value::Table(t)) => table = t,
            Some(_) => return true,
        }
    }
    false
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
    fn minute_bin_defaults_are_todays() {
        // Nothing set, and only the bin set to its default: every resolved
        // value is the one `Default` has always had.
        let shipped = toml::to_string(&Config::default()).unwrap();
        for text in ["", "[estimator]\nbin = \"1m\"\n"] {
            let c = Config::from_toml(text).unwrap();
            assert_eq!(toml::to_string(&c).unwrap(), shipped, "{text:?}");
        }
        // A shorter bin keeps them too (nothing changes for 30 s users).
        let c = Config::from_toml("[estimator]\nbin = \"30s\"\n").unwrap();
        assert_eq!(c.lineage_window_in_bins(), 120);
        assert_eq!(c.limits.idle_timeout.ms(), 7 * 24 * 3_600_000);
        assert_eq!(c.estimator.forward.delay.mean.ms(), 420_000);
        // A user's generation interval keeps today's forward delay when it fits.
        let c = Config::from_toml("[estimator.generation_interval]\nmean = \"20m\"\nsd = \"8m\"\n").unwrap();
        assert_eq!((c.estimator.forward.delay.mean.ms(), c.estimator.forward.delay.sd.ms()), (420_000, 360_000));
    }

    #[test]
    fn daily_bins_need_only_bin_window_prior_and_generation_interval() {
        let text = "[estimator]\nbin = \"1d\"\nwindow = 7\nprior_mean = 5.0\nprior_sd = 5.0\n\
                    [estimator.generation_interval]\nmean = \"5d\"\nsd = \"2d\"\n";
        let c = Config::from_toml(text).unwrap();
        let day = 86_400_000;
        assert_eq!(c.window_in_bins(), 7);
        assert_eq!(c.lineage_window_in_bins(), 60);
        assert_eq!(c.estimator.max_future.ms(), 60 * day);
        assert_eq!(c.forecast.horizon.ms(), 30 * day);
        assert_eq!(c.forecast.response.mean.ms(), 30 * day);
        assert_eq!(c.planner.cooldown.ms(), 0, "the default cooldown (none) fits any bin");
        assert_eq!(c.limits.idle_timeout.ms(), 10_080 * day);
        // 7 days would not come before a 5-day generation: 7/17 and 6/17 of it.
        assert_eq!(c.estimator.forward.delay.mean.ms(), 5 * day * 7 / 17);
        assert_eq!(c.estimator.forward.delay.sd.ms(), 5 * day * 6 / 17);
        // Only the bin set: the generation interval follows it as well.
        let c = Config::from_toml("[estimator]\nbin = \"1d\"\n").unwrap();
        assert_eq!(c.estimator.generation_interval.mean.ms(), 17 * day);
        assert_eq!(c.window_in_bins(), 10);
        // Through the environment as through the file.
        let c = Config::from_toml_with_env("", "t", env(&[("FLOODGATE_ESTIMATOR__BIN", "1h")])).unwrap();
        assert_eq!(c.lineage_window_in_bins(), 60);
        assert_eq!(c.forecast.horizon.ms(), 30 * 3_600_000);
    }

    #[test]
    fn a_set_key_that_conflicts_with_the_bin_is_named() {
        let daily = "[estimator]\nbin = \"1d\"\nwindow = 7\n[estimator.generation_interval]\nmean = \"5d\"\nsd = \"2d\"\n";
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("FLOODGATE_ESTIMATOR__LINEAGE_WINDOW", "1h")], "estimator.lineage_window"),
            (&[("FLOODGATE_ESTIMATOR__MAX_FUTURE", "1h")], "estimator.max_future"),
            (&[("FLOODGATE_FORECAST__HORIZON", "30m")], "forecast.horizon"),
            (&[("FLOODGATE_FORECAST__RESPONSE__MEAN", "30m"), ("FLOODGATE_FORECAST__RESPONSE__SD", "30m")], "forecast.response.mean"),
            (
                &[("FLOODGATE_ESTIMATOR__FORWARD__DELAY__MEAN", "7m"), ("FLOODGATE_ESTIMATOR__FORWARD__DELAY__SD", "6m")],
                "estimator.forward.delay.mean",
            ),
            (&[("FLOODGATE_LIMITS__IDLE_TIMEOUT", "6h")], "limits.idle_timeout"),
        ];
        assert!(Config::from_toml(daily).is_ok());
        for (vars, key) in cases {
            let err = Config::from_toml_with_env(daily, "t", env(vars)).unwrap_err().to_string();
            assert!(err.contains(key), "{vars:?}: {err}");
        }
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
            ("[kafka]\nmodel_topic = \"my model\"", "kafka.model_topic"),
            ("[kafka]\nmodel_topic = \"floodgate.signals\"", "kafka.model_topic"),
            ("[kafka]\ndemand_topic = \"floodgate.events\"", "kafka.demand_topic"),
            ("[kafka]\ndemand_topic = \"floodgate.model\"", "kafka.demand_topic"),
            ("[kafka]\nmodel_topic = \"floodgate.events\"", "kafka.model_topic"),
            ("[kafka]\nmodel_publish_interval = \"0s\"", "kafka.model_publish_interval"),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_model_topic_is_on_by_default_and_an_empty_one_turns_it_off() {
        let d = Config::default();
        assert_eq!((d.kafka.model_topic.as_str(), d.kafka.model_publish_interval.ms()), ("floodgate.model", 60_000));
        let c = Config::from_toml("[kafka]\nmodel_topic = \"\"\nmodel_publish_interval = \"5m\"").expect("valid");
        assert_eq!((c.kafka.model_topic.as_str(), c.kafka.model_publish_interval.ms()), ("", 300_000));
    }
}

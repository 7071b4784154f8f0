//! The engine's configuration sections (`[estimator]`, `[detector]`,
//! `[forecast]`, `[planner]`, `[targets.*]`, `[limits]`) as read from TOML,
//! their defaults, and the checks that name the key. The application's whole
//! configuration (with its Kafka, HTTP, output and log sections, the file and
//! the environment overrides) is the `floodgate` crate's `config::Config`;
//! it validates these sections through [`crate::engine::EngineConfig::new`].
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

use serde::{Deserialize, Deserializer, Serialize};

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

/// An [`ConfigError::Invalid`] for `key`.
pub fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
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

/// `[estimator]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EstimatorConfig {
    /// Width of an event-time bin. Default `1m`.
    pub bin: Duration,
    /// Sliding window of the renewal estimator (bins or duration). Default
    /// `10m`, or 10 bins when the bin is longer (the application's `Config::follow_bin`).
    pub window: Span,
    /// Cohort window of the lineage estimator: clickers of this recent span are
    /// followed (long enough to see most of their offspring: about 3.5 mean
    /// generation intervals). Default `60m`, or 60 bins when the bin is longer.
    pub lineage_window: Span,
    /// Prior mean of R (Gamma prior, as EpiEstim). Default 5.
    pub prior_mean: f64,
    /// Prior standard deviation of R. Default 5.
    pub prior_sd: f64,
    /// Learn the prior's mean per target from its campaigns' matured
    /// lineage cohorts (offspring per clicker; empirical Bayes, keeping the
    /// configured prior's shape: `engine/r_prior.rs`). `false` keeps the
    /// configured prior, and with it EpiEstim parity. Default true.
    pub learn_prior: bool,
    /// How late (in event time) an event may arrive and still be placed in its
    /// bin. Default `5m`.
    pub allowed_lateness: Duration,
    /// Events further than this ahead of the latest event time seen are
    /// rejected (reason `future`), so one bad clock cannot close every window.
    /// Default `1h`, or 60 bins when the bin is longer.
    pub max_future: Duration,
    /// `auto` (lineage when clicks carry `parent`, else renewal), `renewal` or `lineage`. Default `auto`.
    pub method: MethodChoice,
    /// Share of local clicks that must carry a known `parent` for `auto` to use
    /// the lineage estimator. Default 0.9.
    pub lineage_min_coverage: f64,
    /// Generation interval: click → offspring click, and how it is learned.
    pub generation_interval: GenerationIntervalConfig,
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
            learn_prior: true,
            allowed_lateness: Duration(300_000),
            max_future: Duration(3_600_000),
            method: MethodChoice::Auto,
            lineage_min_coverage: 0.9,
            generation_interval: GenerationIntervalConfig::default(),
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

/// `[estimator.generation_interval]`: the delay from a click to the clicks
/// of its offspring, configured (the prior) and learned per target from
/// parent → child delays (`engine/generation_learner.rs`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationIntervalConfig {
    /// Mean. Must exceed one bin. Default `17m`, or 17 bins when the bin is longer.
    pub mean: Duration,
    /// Standard deviation. Default `10m`, or 10 bins when the bin is longer.
    pub sd: Duration,
    /// Learn the interval per target from the delays between clicks and
    /// their parents' clicks (right truncation corrected), with the
    /// configured one as prior. `false` keeps the configured interval, and
    /// with it EpiEstim parity. Default true.
    pub learn: bool,
    /// Weight of the configured interval against the learned delays, in
    /// delays. Default 50.
    pub learn_weight: f64,
    /// How long a clicker is followed, so that its late offspring are still
    /// linked to it and the interval's long tail can be learned (the lineage
    /// estimate itself uses `lineage_window`). At least `lineage_window`.
    /// Default `24h`, or 1440 bins when the bin is longer.
    pub follow: Duration,
}

impl Default for GenerationIntervalConfig {
    fn default() -> Self {
        GenerationIntervalConfig {
            mean: Duration(1_020_000),
            sd: Duration(600_000),
            learn: true,
            learn_weight: 50.0,
            follow: Duration(24 * 3_600_000),
        }
    }
}

impl GenerationIntervalConfig {
    /// The configured interval's mean and sd.
    pub fn delay(&self) -> DelayConfig {
        DelayConfig { mean: self.mean, sd: self.sd }
    }
}

/// `[estimator.forward]`: how forwards sharpen early estimates.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardConfig {
    /// Use forwards at all. Default true.
    pub enabled: bool,
    /// Delay from a click to the clicker's forward. Default mean `7m`, sd `6m`
    /// (or 7 and 6 bins when the bin is longer, shortened below the generation
    /// interval when it would not fit: the application's `Config::follow_bin`).
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
    /// How far ahead demand is forecast. Default `30m`, or 30 bins when the bin is longer.
    pub horizon: Duration,
    /// Expected direct click-through of a send (clicks per recipient) before
    /// any click is seen. Default 0.05.
    pub click_through: f64,
    /// Weight of that prior, in recipients, when it is updated with the observed
    /// direct clicks. Default 2000.
    pub click_through_weight: f64,
    /// Delay from send to a direct click (response curve). Default mean `30m`,
    /// sd `30m`, or 30 bins each when the bin is longer.
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
    /// Learn each target's model error from how its campaigns' past
    /// predictive forecasts turned out, and widen the intervals of the
    /// estimates' forecasts by it (`engine/forecast_error.rs`; the means and
    /// the planner are unaffected). `false`: the intervals hold only the
    /// uncertainty within the model. Default true.
    pub learn_error: bool,
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
            learn_error: true,
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
    /// the reactive floor), as a fraction: fixed with `learn_headroom =
    /// false`, otherwise where the learned headroom starts. Default 0.1.
    pub headroom: f64,
    /// Learn the headroom from the overload the plan itself caused, aiming
    /// at `target_overload` (`engine/headroom.rs`). Default true.
    pub learn_headroom: bool,
    /// The overload the learned headroom aims at, when `learn_headroom` is
    /// on: the long-run mean, over the bins it learns from, of the share of
    /// each bin's requests over capacity (0.001 = 0.1 %). Weighted by
    /// requests, as the backtest counts, it comes out higher on bursty
    /// traffic (busy bins overload more). Default 0.001.
    pub target_overload: f64,
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
            headroom: 0.1,
            learn_headroom: true,
            target_overload: 0.001,
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
    /// See `planner.learn_headroom`.
    pub learn_headroom: Option<bool>,
    /// See `planner.target_overload`.
    pub target_overload: Option<f64>,
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
    /// A silent campaign is forgotten once the clicks the model still
    /// expects of it (direct wave and pass-along, `engine/lifetime.rs`) fall
    /// below this. Default 0.1.
    pub forget_below: f64,
    /// The longest a campaign with no event is kept, whatever the model
    /// expects. Default `7d`, or 10080 bins when the bin is longer, and at
    /// least `estimator.window`.
    pub idle_timeout: Duration,
    /// Event ids remembered for de-duplication (the open bins). Default 5000000.
    pub max_dedup_ids: u32,
    /// Audiences whose direct wave is learned per target (in order of first
    /// appearance); campaigns of further audiences use their target's.
    /// Default 64; 0 learns no audience.
    pub max_audiences_per_target: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_campaigns: 100_000,
            max_clickers_per_campaign: 200_000,
            max_targets: 100,
            max_event_bytes: 65_536,
            forget_below: 0.1,
            idle_timeout: Duration(7 * 24 * 3_600_000),
            max_dedup_ids: 5_000_000,
            max_audiences_per_target: 64,
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
            p.learn_headroom = o.learn_headroom.unwrap_or(p.learn_headroom);
            p.target_overload = o.target_overload.unwrap_or(p.target_overload);
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

pub(crate) fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} must be a positive number")))
    }
}

pub(crate) fn fraction(key: &str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} must be between 0 and 1")))
    }
}

pub(crate) fn open_fraction(key: &str, v: f64) -> Result<(), ConfigError> {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} must be strictly between 0 and 1")))
    }
}

pub(crate) fn delay(key: &str, d: DelayConfig, bin: i64) -> Result<(), ConfigError> {
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

pub(crate) fn planner(key: &str, p: &PlannerConfig) -> Result<(), ConfigError> {
    positive(&format!("{key}.requests_per_click"), p.requests_per_click)?;
    positive(&format!("{key}.capacity_per_replica"), p.capacity_per_replica)?;
    if !(p.headroom.is_finite() && p.headroom >= 0.0) {
        return Err(invalid(&format!("{key}.headroom"), "must be ≥ 0"));
    }
    if !(p.target_overload > 0.0 && p.target_overload < 0.5) {
        return Err(invalid(&format!("{key}.target_overload"), "must be in (0, 0.5)"));
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

/// A span as a duration, with bins of `bin_ms` (a number of bins is that
/// many bins long).
pub fn span_duration(span: Span, bin_ms: i64) -> Duration {
    match span {
        Span::Bins(n) => Duration(i64::from(n).saturating_mul(bin_ms)),
        Span::Time(d) => d,
    }
}

/// `span` in bins of `bin_ms`: a count of bins as given, or a duration that
/// must be a whole positive multiple of the bin (`key` names it in the error).
pub fn span_in_bins(key: &str, span: Span, bin_ms: i64) -> Result<u32, ConfigError> {
    match span {
        Span::Bins(n) => Ok(n),
        Span::Time(d) if d.ms() <= 0 || d.ms() % bin_ms != 0 => Err(invalid(
            key,
            format!("{} is not a whole positive multiple of estimator.bin ({})", format_duration_ms(d.ms()), format_duration_ms(bin_ms)),
        )),
        Span::Time(d) => Ok((d.ms() / bin_ms) as u32),
    }
}

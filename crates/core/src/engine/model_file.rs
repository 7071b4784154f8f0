//! Everything the engine learned, as a versioned JSON document, so that the
//! model outlives the process (`--model FILE` of `replay`, `backtest` and
//! `evaluate`; `floodgate model show`; one [`TargetRecord`] per target in
//! `floodgate run`'s model topic).
//!
//! ```json
//! {"format": "floodgate-model", "version": 1, "bin_ms": 60000,
//!  "targets": {"shop-web": {
//!     "direct": {"delays": {"in_bin": [57 numbers], "up_to_bin": [57 numbers], "observed": 1234.0},
//!                "click_through_pool": [{"direct_clicks": 310.0, "recipients": 20000.0, "age_ms": 21600000.0}, …]},
//!     "audiences": {"customers": {same shape as "direct"}, …},
//!     "generation_interval": {"in_bin": […], "up_to_bin": […], "observed": 5678.0},
//!     "r_prior": {"offspring": 812.0, "exposure": 4020.5},
//!     "headroom": 0.18}}}
//! ```
//!
//! What is stored is what the learners took from data, no more: per target
//! and per audience, the sums of the reverse-hazard estimator
//! ([`DelayLearner::sums`](super::delay_learner::DelayLearner::sums): `in_bin`
//! = `Σ n_{i,k}`, `up_to_bin` = `Σ N_{i,≤k}`, one value per delay bin of
//! [`delay_learner`](super::delay_learner), and `observed`, the delays that
//! entered them) and the click-through pool (the last
//! [`POOL`](super::direct_wave::POOL) campaigns' direct clicks, recipients
//! and age when last seen, oldest first). The priors are not stored: a
//! target's come from the loading engine's configuration
//! (`forecast.response`, `forecast.learn_weight`, `forecast.click_through`),
//! an audience's from its target's learned values. The learned curves and
//! click-throughs are recomputed from the sums on load
//! ([`DirectWave::load`](super::direct_wave::DirectWave::load)), so with the
//! same configuration the engine continues exactly where the saving one
//! stopped. `headroom` is the target's learned headroom
//! ([`headroom`](super::headroom)) itself, where its planner starts.
//!
//! **Versions.** `version` changes whenever the meaning of a field does (e.g.
//! other delay bins); a reader refuses versions it does not know
//! ([`ModelError::Version`]). Fields may be added within a version with a
//! default (older files then load): [`TargetModel`] is the place for more
//! learned state per target (e.g. a learned generation interval).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::delay_learner::BINS;
use super::direct_wave::POOL;
use super::headroom::{MAX_HEADROOM, MIN_HEADROOM};

/// The `format` of a model file.
pub const FORMAT: &str = "floodgate-model";
/// The `version` this build writes and reads.
pub const VERSION: u32 = 1;

/// Everything an engine learned ([`Engine::learned_model`](super::Engine::learned_model)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnedModel {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format's version ([`VERSION`]).
    pub version: u32,
    /// `estimator.bin` of the engine that learned it, ms (clicks are placed
    /// in delay bins at the middle of their event bin, so a model is only
    /// loaded by an engine with the same bin).
    pub bin_ms: i64,
    /// What was learned per target, by target name.
    pub targets: BTreeMap<String, TargetModel>,
}

/// What was learned for one target. New kinds of learned state per target
/// go here, as named fields with a serde default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetModel {
    /// Its direct wave, learned from all its campaigns.
    pub direct: DirectWaveModel,
    /// The direct wave of each audience named by its sends, by audience name
    /// (absent: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audiences: BTreeMap<String, DirectWaveModel>,
    /// Its generation interval: the delay sums of its parent → child delays
    /// (`generation_learner.rs`; delays in ms, a lag of Δ bins counted as
    /// Δ + ½ bins of `bin_ms`). Absent: nothing learned, or learning off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_interval: Option<DelaySums>,
    /// Its prior of R: what its matured lineage cohorts showed
    /// (`r_prior.rs`). Absent: nothing learned, or learning off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r_prior: Option<RPriorSums>,
    /// Its learned headroom (`headroom.rs`, `planner.learn_headroom`), where
    /// a planner of the target starts. Absent: learning off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<f64>,
}

/// What a target's prior of R learned from ([`RPriorLearner`](super::r_prior::RPriorLearner)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RPriorSums {
    /// Σ offspring of matured cohorts.
    pub offspring: f64,
    /// Σ clickers × F(age) of the same cohorts.
    pub exposure: f64,
}

/// One learned direct wave ([`DirectWave::to_model`](super::direct_wave::DirectWave::to_model)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectWaveModel {
    /// The send → direct click delay sums.
    pub delays: DelaySums,
    /// The click-through pool, oldest campaign first (at most
    /// [`POOL`](super::direct_wave::POOL)).
    pub click_through_pool: Vec<PoolCampaign>,
}

/// The sums of a [`DelayLearner`](super::delay_learner::DelayLearner).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelaySums {
    /// `Σ n_{i,k}`: delays in bin `k` of the campaigns whose bin `k` is
    /// complete, one value per delay bin (57).
    pub in_bin: Vec<f64>,
    /// `Σ N_{i,≤k}`: their delays in bins `0…k`, one value per delay bin (57).
    pub up_to_bin: Vec<f64>,
    /// Delays that entered the sums.
    pub observed: f64,
}

/// One campaign in a click-through pool.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolCampaign {
    /// Its direct clicks when last seen.
    pub direct_clicks: f64,
    /// Recipients of its sends.
    pub recipients: f64,
    /// Age of its first send when last seen, ms.
    pub age_ms: f64,
}

/// Why a model could not be read or loaded. Each names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not JSON, or not the shape of a model.
    #[error("not a valid model file: {0}")]
    Json(String),
    /// `format` is not [`FORMAT`].
    #[error("`format` is {found:?}, not {FORMAT:?}: not a floodgate model file")]
    Format {
        /// The `format` found (empty if missing).
        found: String,
    },
    /// A version this build does not know.
    #[error("`version` {found} is not known to this build (it reads version {VERSION})")]
    Version {
        /// The `version` found.
        found: u64,
    },
    /// Learned with another event bin.
    #[error("`bin_ms` is {model} but estimator.bin is {config} ms: a model is only loaded with the bin it was learned with")]
    Bin {
        /// The model's `bin_ms`.
        model: i64,
        /// The configuration's `estimator.bin`, ms.
        config: i64,
    },
    /// An array of the wrong length.
    #[error("`{field}` has {found} values, expected {expected}")]
    Length {
        /// Where, e.g. `targets.web.audiences.news.delays.in_bin`.
        field: String,
        /// Values found.
        found: usize,
        /// Values expected.
        expected: usize,
    },
    /// A value that cannot have been learned (negative, not finite, …).
    #[error("`{field}` is {value}: {reason}")]
    Value {
        /// Where, e.g. `targets.web.direct.click_through_pool[3].recipients`.
        field: String,
        /// The value.
        value: f64,
        /// What it must be.
        reason: &'static str,
    },
    /// More audiences for a target than `limits.max_audiences_per_target`.
    #[error("`targets.{target}.audiences` has {found} audiences; limits.max_audiences_per_target is {max}")]
    TooManyAudiences {
        /// The target.
        target: String,
        /// Audiences in the model.
        found: usize,
        /// The limit.
        max: u32,
    },
    /// The engine has already applied events (a model is loaded at start).
    #[error("a model can only be loaded into an engine that has not applied any event yet")]
    NotFresh,
}

impl LearnedModel {
    /// An empty model for an engine with `bin_ms` bins.
    pub fn empty(bin_ms: i64) -> Self {
        LearnedModel { format: FORMAT.to_string(), version: VERSION, bin_ms, targets: BTreeMap::new() }
    }

    /// Reads a model file's text: the format and version are checked first
    /// (a file of a later version is refused for its version, whatever its
    /// shape), then the shape and every value ([`check`](Self::check)).
    pub fn from_json(text: &str) -> Result<LearnedModel, ModelError> {
        parse_checked(text, LearnedModel::check)
    }

    /// The model as indented JSON (what [`from_json`](Self::from_json) reads).
    pub fn to_json_pretty(&self) -> String {
        // Plain data of strings, numbers and maps with string keys: cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the format, version and every array length and value; the
    /// error names the field.
    pub fn check(&self) -> Result<(), ModelError> {
        if self.format != FORMAT {
            return Err(ModelError::Format { found: self.format.clone() });
        }
        if self.version != VERSION {
            return Err(ModelError::Version { found: u64::from(self.version) });
        }
        if self.bin_ms <= 0 {
            return Err(ModelError::Value { field: "bin_ms".into(), value: self.bin_ms as f64, reason: "must be positive" });
        }
        for (name, t) in &self.targets {
            t.direct.check(&format!("targets.{name}.direct"))?;
            for (a, w) in &t.audiences {
                w.check(&format!("targets.{name}.audiences.{a}"))?;
            }
            if let Some(g) = &t.generation_interval {
                g.check(&format!("targets.{name}.generation_interval"))?;
            }
            if let Some(r) = &t.r_prior {
                count(&format!("targets.{name}.r_prior.offspring"), r.offspring)?;
                count(&format!("targets.{name}.r_prior.exposure"), r.exposure)?;
            }
            if let Some(h) = t.headroom {
                if !(h.is_finite() && (MIN_HEADROOM..=MAX_HEADROOM).contains(&h)) {
                    return Err(ModelError::Value {
                        field: format!("targets.{name}.headroom"),
                        value: h,
                        reason: "must be within the learned headroom's bounds, 0 to 1",
                    });
                }
            }
        }
        Ok(())
    }
}

/// Reads a `T` from `text`: its header (format, version) first, then its
/// shape, then `check` of every value.
fn parse_checked<T: serde::de::DeserializeOwned>(text: &str, check: impl FnOnce(&T) -> Result<(), ModelError>) -> Result<T, ModelError> {
    check_header(text)?;
    let v: T = serde_json::from_str(text).map_err(|e| ModelError::Json(e.to_string()))?;
    check(&v)?;
    Ok(v)
}

/// Checks the `format` and `version` of a model document (a file or a
/// [`TargetRecord`]) before its shape: a document of a later version is
/// refused for its version, whatever its shape.
fn check_header(text: &str) -> Result<(), ModelError> {
    /// What any version has.
    #[derive(Deserialize)]
    struct Header {
        /// `format`.
        format: Option<serde_json::Value>,
        /// `version`.
        version: Option<serde_json::Value>,
    }
    let header: Header = serde_json::from_str(text).map_err(|e| ModelError::Json(e.to_string()))?;
    match header.format.as_ref().and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        _ => return Err(ModelError::Format { found: header.format.map(|f| f.to_string()).unwrap_or_default() }),
    }
    match header.version.as_ref().and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => Ok(()),
        Some(v) => Err(ModelError::Version { found: v }),
        None => Err(ModelError::Json("`version` must be a non-negative integer".into())),
    }
}

/// What one target learned, as one record of `floodgate run`'s model topic
/// (`kafka.model_topic`, keyed by the target's name):
///
/// ```json
/// {"format": "floodgate-model", "version": 1, "bin_ms": 60000,
///  "target": "shop-web", "model": {"direct": {…}, "audiences": {…}, …}}
/// ```
///
/// `model` is the target's entry of a [`LearnedModel`]'s `targets`; the
/// format, version and checks are those of the model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format's version ([`VERSION`]).
    pub version: u32,
    /// `estimator.bin` of the engine that learned it, ms.
    pub bin_ms: i64,
    /// The target's name (also the record's key).
    pub target: String,
    /// What was learned for it.
    pub model: TargetModel,
}

impl TargetRecord {
    /// The record of `target`'s `model`, learned with `bin_ms` bins.
    pub fn new(bin_ms: i64, target: &str, model: TargetModel) -> TargetRecord {
        TargetRecord { format: FORMAT.to_string(), version: VERSION, bin_ms, target: target.to_string(), model }
    }

    /// Reads a record's value: the format and version first, then the shape
    /// and every value ([`check`](Self::check)). The bin is not compared
    /// with any configuration here (the reader does, with [`ModelError::Bin`]).
    pub fn from_json(bytes: &[u8]) -> Result<TargetRecord, ModelError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ModelError::Json(format!("not UTF-8: {e}")))?;
        parse_checked(text, TargetRecord::check)
    }

    /// The record as compact JSON (what [`from_json`](Self::from_json) reads).
    pub fn to_json(&self) -> String {
        // Plain data of strings, numbers and maps with string keys: cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The checks of [`LearnedModel::check`] for a model holding only this
    /// target (errors name `targets.<target>.…`), and a target name that is
    /// not empty.
    pub fn check(&self) -> Result<(), ModelError> {
        if self.target.is_empty() {
            return Err(ModelError::Json("`target` must not be empty".into()));
        }
        let mut m = LearnedModel { format: self.format.clone(), version: self.version, bin_ms: self.bin_ms, targets: BTreeMap::new() };
        m.targets.insert(self.target.clone(), self.model.clone());
        m.check()
    }
}

impl DirectWaveModel {
    /// [`LearnedModel::check`] of one wave at `at`.
    fn check(&self, at: &str) -> Result<(), ModelError> {
        self.delays.check(&format!("{at}.delays"))?;
        if self.click_through_pool.len() > POOL {
            return Err(ModelError::Length {
                field: format!("{at}.click_through_pool"),
                found: self.click_through_pool.len(),
                expected: POOL,
            });
        }
        for (i, e) in self.click_through_pool.iter().enumerate() {
            count(&format!("{at}.click_through_pool[{i}].direct_clicks"), e.direct_clicks)?;
            count(&format!("{at}.click_through_pool[{i}].recipients"), e.recipients)?;
            count(&format!("{at}.click_through_pool[{i}].age_ms"), e.age_ms)?;
        }
        Ok(())
    }
}

impl DelaySums {
    /// [`LearnedModel::check`] of one learner's sums at `at`.
    fn check(&self, at: &str) -> Result<(), ModelError> {
        for (name, v) in [("in_bin", &self.in_bin), ("up_to_bin", &self.up_to_bin)] {
            let field = || format!("{at}.{name}");
            if v.len() != BINS {
                return Err(ModelError::Length { field: field(), found: v.len(), expected: BINS });
            }
            for (k, &x) in v.iter().enumerate() {
                count(&format!("{}[{k}]", field()), x)?;
            }
        }
        count(&format!("{at}.observed"), self.observed)
    }
}

/// A count or a duration: finite and not negative.
fn count(field: &str, v: f64) -> Result<(), ModelError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ModelError::Value { field: field.to_string(), value: v, reason: "must be a finite number ≥ 0" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave() -> DirectWaveModel {
        DirectWaveModel {
            delays: DelaySums { in_bin: vec![1.0; BINS], up_to_bin: vec![2.0; BINS], observed: 57.0 },
            click_through_pool: vec![PoolCampaign { direct_clicks: 10.0, recipients: 1000.0, age_ms: 3_600_000.0 }],
        }
    }

    fn model() -> LearnedModel {
        let mut m = LearnedModel::empty(60_000);
        let mut audiences = BTreeMap::new();
        audiences.insert("news".to_string(), wave());
        m.targets.insert(
            "web".to_string(),
            TargetModel {
                direct: wave(),
                audiences,
                generation_interval: Some(wave().delays),
                r_prior: Some(RPriorSums { offspring: 12.0, exposure: 40.0 }),
                headroom: Some(0.3),
            },
        );
        m
    }

    #[test]
    fn json_round_trips() {
        let m = model();
        let back = LearnedModel::from_json(&m.to_json_pretty()).expect("reads what it wrote");
        assert_eq!(back, m);
    }

    #[test]
    fn a_target_record_round_trips_and_is_checked_like_a_model() {
        let m = model();
        let Some(web) = m.targets.get("web").cloned() else { panic!("web") };
        let r = TargetRecord::new(60_000, "web", web);
        let back = TargetRecord::from_json(r.to_json().as_bytes()).expect("reads what it wrote");
        assert_eq!(back, r);
        let mut bad = r.clone();
        bad.model.direct.delays.in_bin.pop();
        let e = TargetRecord::from_json(bad.to_json().as_bytes()).expect_err("short array");
        assert_eq!(e.to_string(), "`targets.web.direct.delays.in_bin` has 56 values, expected 57");
        let text = r.to_json().replacen("\"version\":1", "\"version\":2", 1);
        assert!(matches!(TargetRecord::from_json(text.as_bytes()), Err(ModelError::Version { found: 2 })));
        assert!(matches!(TargetRecord::from_json(b"garbage"), Err(ModelError::Json(_))));
        assert!(matches!(TargetRecord::from_json(&[0xff, 0xfe]), Err(ModelError::Json(_))));
        let text = r.to_json().replacen("\"target\":\"web\"", "\"target\":\"\"", 1);
        assert!(matches!(TargetRecord::from_json(text.as_bytes()), Err(ModelError::Json(_))));
    }

    #[test]
    fn errors_name_the_field() {
        let mut m = model();
        if let Some(t) = m.targets.get_mut("web") {
            if let Some(a) = t.audiences.get_mut("news") {
                a.delays.up_to_bin.pop();
            }
        }
        let e = LearnedModel::from_json(&m.to_json_pretty()).expect_err("short array");
        assert_eq!(e.to_string(), "`targets.web.audiences.news.delays.up_to_bin` has 56 values, expected 57");
        let mut m = model();
        if let Some(t) = m.targets.get_mut("web") {
            t.direct.click_through_pool[0].recipients = -1.0;
        }
        let e = LearnedModel::from_json(&m.to_json_pretty()).expect_err("negative");
        assert!(e.to_string().starts_with("`targets.web.direct.click_through_pool[0].recipients` is -1"), "{e}");
        let text = model().to_json_pretty().replacen("\"version\": 1", "\"version\": 7", 1);
        let e = LearnedModel::from_json(&text).expect_err("version");
        assert!(matches!(e, ModelError::Version { found: 7 }), "{e}");
        let e = LearnedModel::from_json(r#"{"format":"other","version":1}"#).expect_err("format");
        assert!(matches!(e, ModelError::Format { .. }), "{e}");
        assert!(matches!(LearnedModel::from_json("{\"format\":"), Err(ModelError::Json(_))));
        let mut bad = model();
        if let Some(t) = bad.targets.get_mut("web") {
            t.r_prior = Some(RPriorSums { offspring: f64::NAN, exposure: 1.0 });
        }
        let e = bad.check().expect_err("NaN offspring");
        assert!(e.to_string().starts_with("`targets.web.r_prior.offspring`"), "{e}");
        let mut bad = model();
        if let Some(t) = bad.targets.get_mut("web") {
            t.headroom = Some(4.0);
        }
        let e = bad.check().expect_err("headroom beyond its bound");
        assert!(e.to_string().starts_with("`targets.web.headroom`"), "{e}");
    }
}

//! What floodgate says: estimates, viral onset/subsided, and scale-ahead
//! decisions, written as CloudEvents 1.0 JSON (`schemas/signal.schema.json`).
//!
//! Ids are deterministic: a hash of the record's type, subject, event time and
//! the fields that make it unique (the episode number of an onset, the replica
//! count of a scale decision). A re-run over the same log therefore produces
//! the same ids, and a consumer (or the Kafka sink after a restart) can drop a
//! repeat by id.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::forecast::ForecastPath;
use crate::time::format_rfc3339_ms;

/// A posterior (or approximate posterior) summary of R.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RSummary {
    /// Posterior mean.
    pub mean: f64,
    /// Posterior standard deviation.
    pub sd: f64,
    /// 2.5% quantile.
    pub lo: f64,
    /// 97.5% quantile.
    pub hi: f64,
}

/// The realized reproduction number of an estimate's window's clickers —
/// the mean number of offspring clicks they will have had once all have
/// clicked — predicted: mean and 95 % interval (`engine/case_r.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CaseR {
    /// Predictive mean.
    pub mean: f64,
    /// 2.5 % predictive quantile.
    pub lo: f64,
    /// 97.5 % predictive quantile.
    pub hi: f64,
}

/// Which estimator produced an R.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    /// Cori et al. (2013) renewal equation on click incidence.
    #[serde(rename = "renewal")]
    Renewal,
    /// Offspring counting through `parent`, censoring-corrected.
    #[serde(rename = "lineage")]
    Lineage,
    /// Lineage, sharpened by forwards not yet clicked.
    #[serde(rename = "lineage+forward")]
    LineageForward,
}

impl Method {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Renewal => "renewal",
            Method::Lineage => "lineage",
            Method::LineageForward => "lineage+forward",
        }
    }
}

/// One campaign's estimate at the end of a window (`floodgate.estimate`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// Campaign.
    #[serde(skip)]
    pub campaign: Arc<str>,
    /// Target service of the campaign, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Arc<str>>,
    /// Window end (exclusive), epoch ms; the record's `time`.
    #[serde(skip)]
    pub time_ms: i64,
    /// Window start, RFC 3339.
    pub window_start: String,
    /// R summary.
    pub r: RSummary,
    /// The case R of the window's clickers, predicted (absent when the
    /// window holds no clicker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r_case: Option<CaseR>,
    /// Posterior P(R > 1).
    pub p_viral: f64,
    /// Local (generation ≥ 1) clicks in the window.
    pub local_cases: u64,
    /// Direct (generation-0) clicks in the window.
    pub imported_cases: u64,
    /// Which estimator.
    pub method: Method,
    /// Overdispersion factor applied to the interval (1 = Poisson).
    pub dispersion: f64,
    /// The campaign's click forecast over `forecast.horizon` from `time`.
    pub forecast: Forecast,
}

/// A predictive interval of a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CountInterval {
    /// Expected value.
    pub mean: f64,
    /// 5 % predictive quantile.
    pub lo: f64,
    /// 95 % predictive quantile.
    pub hi: f64,
}

/// A campaign's forecast in an estimate (`data.forecast`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Forecast {
    /// The horizon H (`forecast.horizon`), seconds: the forecast is for (time, time + H].
    pub horizon_s: f64,
    /// Clicks of the campaign in (time, time + H]: mean and 90 % predictive
    /// interval, with the uncertainty of R, of the click-through, the
    /// overdispersion of pass-along and the Poisson noise of the clicks.
    pub clicks: CountInterval,
    /// The peak request rate the planner plans for this campaign within the
    /// horizon (R at `forecast.r_quantile`; the `forecast_rps` of
    /// `scale_ahead.campaigns`), requests/s; 0 for a campaign without a target.
    pub peak_rps: f64,
    /// The whole predictive path, bin by bin (any horizon up to H; used by
    /// `floodgate evaluate`, not serialised).
    #[serde(skip)]
    pub path: Arc<ForecastPath>,
}

/// `floodgate.viral_onset` / `floodgate.viral_subsided`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Episode {
    /// Campaign.
    #[serde(skip)]
    pub campaign: Arc<str>,
    /// Target service, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Arc<str>>,
    /// Event time of the decision (end of the window that confirmed it), epoch ms.
    #[serde(skip)]
    pub time_ms: i64,
    /// 1 for the campaign's first viral episode, 2 for the next, …
    pub episode: u32,
    /// R at the decision.
    pub r: RSummary,
    /// P(R > 1) at the decision.
    pub p_viral: f64,
    /// Local clicks in the window.
    pub local_cases: u64,
    /// Which estimator.
    pub method: Method,
}

/// Why a replica count changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleReason {
    /// A send was applied: planned from recipients × click-through.
    Send,
    /// The forecast at a window step asked for more (or, after the cooldown, fewer).
    Forecast,
}

/// A campaign's share of a target's forecast.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignDemand {
    /// Campaign.
    pub campaign: Arc<str>,
    /// Its forecast peak requests/s within the horizon.
    pub forecast_rps: f64,
    /// R used for the projection (posterior quantile `forecast.r_quantile`), if estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r: Option<f64>,
}

/// `floodgate.scale_ahead`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleAhead {
    /// Target service.
    pub target: Arc<str>,
    /// Event time of the decision, epoch ms.
    #[serde(skip)]
    pub time_ms: i64,
    /// Replicas the target should run.
    pub desired_replicas: u32,
    /// What was asked for before.
    pub previous_replicas: u32,
    /// Highest forecast request rate, at the planner's `quantile`, of any
    /// minute within `horizon_s` (all campaigns + baseline).
    pub forecast_rps: f64,
    /// How far ahead the plan provides, seconds: the target's lead time
    /// (`startup` + decision delay + one bin; see `engine::planner`).
    pub horizon_s: f64,
    /// Replicas the target's observed request rate needs now (the reactive
    /// floor: the plan is never below it).
    pub floor_replicas: u32,
    /// The headroom the plan was made with (learned with
    /// `planner.learn_headroom`, else `planner.headroom`).
    pub headroom: f64,
    /// Why.
    pub reason: ScaleReason,
    /// The campaigns driving the forecast, largest first (at most 10).
    pub campaigns: Vec<CampaignDemand>,
}

/// Everything the engine emits.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    /// Per campaign per bin step (only when estimates are requested).
    Estimate(Estimate),
    /// P(R > 1) crossed the onset level with enough evidence.
    ViralOnset(Episode),
    /// P(R > 1) fell back below the subside level.
    ViralSubsided(Episode),
    /// A target's desired replica count changed.
    ScaleAhead(ScaleAhead),
}

impl Signal {
    /// CloudEvents `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Signal::Estimate(_) => "floodgate.estimate",
            Signal::ViralOnset(_) => "floodgate.viral_onset",
            Signal::ViralSubsided(_) => "floodgate.viral_subsided",
            Signal::ScaleAhead(_) => "floodgate.scale_ahead",
        }
    }

    /// CloudEvents `subject`: the campaign, or the target for scale decisions.
    pub fn subject(&self) -> &str {
        match self {
            Signal::Estimate(e) => &e.campaign,
            Signal::ViralOnset(e) | Signal::ViralSubsided(e) => &e.campaign,
            Signal::ScaleAhead(s) => &s.target,
        }
    }

    /// Event time of the record, epoch ms.
    pub fn time_ms(&self) -> i64 {
        match self {
            Signal::Estimate(e) => e.time_ms,
            Signal::ViralOnset(e) | Signal::ViralSubsided(e) => e.time_ms,
            Signal::ScaleAhead(s) => s.time_ms,
        }
    }

    /// The Kafka message key: the campaign, or the target of a scale decision.
    pub fn key(&self) -> &str {
        self.subject()
    }

    /// Deterministic CloudEvents id (32 hex digits).
    pub fn id(&self) -> String {
        let discriminator: u64 = match self {
            Signal::Estimate(_) => 0,
            Signal::ViralOnset(e) | Signal::ViralSubsided(e) => u64::from(e.episode),
            Signal::ScaleAhead(s) => u64::from(s.desired_replicas),
        };
        let mut buf = Vec::with_capacity(96);
        buf.extend_from_slice(self.kind().as_bytes());
        buf.push(0);
        buf.extend_from_slice(self.subject().as_bytes());
        buf.push(0);
        buf.extend_from_slice(&self.time_ms().to_le_bytes());
        buf.extend_from_slice(&discriminator.to_le_bytes());
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&buf))
    }

    /// Order used for output: by time, then onset/subsided before scale
    /// decisions before estimates, then subject. Makes the output independent
    /// of hash-map order and of arrival order within the allowed lateness.
    pub fn sort_key(&self) -> (i64, u8, &str) {
        let rank = match self {
            Signal::ViralSubsided(_) => 0,
            Signal::ViralOnset(_) => 1,
            Signal::ScaleAhead(_) => 2,
            Signal::Estimate(_) => 3,
        };
        (self.time_ms(), rank, self.subject())
    }

    /// Appends this record as one line of CloudEvents JSON (no newline).
    pub fn write_cloudevent(&self, source: &str, out: &mut String) {
        #[derive(Serialize)]
        struct Envelope<'a, D: Serialize> {
            specversion: &'static str,
            id: String,
            source: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            subject: &'a str,
            time: String,
            datacontenttype: &'static str,
            data: &'a D,
        }
        let mut time = String::with_capacity(24);
        format_rfc3339_ms(self.time_ms(), &mut time);
        fn write<D: Serialize>(s: &Signal, source: &str, time: String, data: &D, out: &mut String) {
            let env = Envelope {
                specversion: "1.0",
                id: s.id(),
                source,
                kind: s.kind(),
                subject: s.subject(),
                time,
                datacontenttype: "application/json",
                data,
            };
            // Serialising plain structs of numbers and strings cannot fail.
            if let Ok(text) = serde_json::to_string(&env) {
                out.push_str(&text);
            }
        }
        match self {
            Signal::Estimate(e) => write(self, source, time, e, out),
            Signal::ViralOnset(e) | Signal::ViralSubsided(e) => write(self, source, time, e, out),
            Signal::ScaleAhead(s) => write(self, source, time, s, out),
        }
    }

    /// One CloudEvents JSON line as a new string.
    pub fn to_cloudevent(&self, source: &str) -> String {
        let mut s = String::with_capacity(256);
        self.write_cloudevent(source, &mut s);
        s
    }

    /// A short human summary for `--format table`.
    pub fn summary(&self) -> String {
        fn r(r: &RSummary) -> String {
            format!("R {:.2} [{:.2}, {:.2}]", r.mean, r.lo, r.hi)
        }
        match self {
            Signal::Estimate(e) => {
                format!("{} P(R>1) {:.2} local {} ({})", r(&e.r), e.p_viral, e.local_cases, e.method.as_str())
            }
            Signal::ViralOnset(e) | Signal::ViralSubsided(e) => {
                format!("episode {} {} P(R>1) {:.2} local {}", e.episode, r(&e.r), e.p_viral, e.local_cases)
            }
            Signal::ScaleAhead(s) => format!(
                "{} -> {} replicas, {:.0} req/s within {:.0}m ({})",
                s.previous_replicas,
                s.desired_replicas,
                s.forecast_rps,
                s.horizon_s / 60.0,
                match s.reason {
                    ScaleReason::Send => "send",
                    ScaleReason::Forecast => "forecast",
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onset(time_ms: i64, episode: u32) -> Signal {
        Signal::ViralOnset(Episode {
            campaign: Arc::from("spring-sale"),
            target: Some(Arc::from("shop-web")),
            time_ms,
            episode,
            r: RSummary { mean: 1.5, sd: 0.1, lo: 1.3, hi: 1.7 },
            p_viral: 0.99,
            local_cases: 120,
            method: Method::Lineage,
        })
    }

    #[test]
    fn ids_are_deterministic_and_distinguish_episodes() {
        assert_eq!(onset(1000, 1).id(), onset(1000, 1).id());
        assert_ne!(onset(1000, 1).id(), onset(1000, 2).id());
        assert_ne!(onset(1000, 1).id(), onset(2000, 1).id());
        assert_eq!(onset(1000, 1).id().len(), 32);
    }

    #[test]
    fn cloudevent_has_the_required_attributes() {
        let v: serde_json::Value = serde_json::from_str(&onset(1_772_438_400_000, 1).to_cloudevent("urn:floodgate")).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "floodgate.viral_onset");
        assert_eq!(v["subject"], "spring-sale");
        assert_eq!(v["time"], "2026-03-02T08:00:00Z");
        assert_eq!(v["source"], "urn:floodgate");
        assert_eq!(v["data"]["r"]["mean"], 1.5);
        assert_eq!(v["data"]["episode"], 1);
        assert_eq!(v["data"]["method"], "lineage");
    }
}

//! The state of one campaign: its bins, pending lineage links, dedup ids,
//! lineage cohorts, detector, sends and last estimate.
//!
//! Events are *counted* into their bin as soon as they arrive (bins are only
//! read once closed, so arrival order inside the allowed lateness does not
//! matter). Links between clickers (offspring, forwards) are *held* until their
//! bin closes and then applied bin by bin, clicks before links, so the lineage
//! state is also independent of arrival order.

use std::sync::Arc;

use super::dedup::Dedup;
use super::detector::Detector;
use super::direct_wave::CampaignDelays;
use super::forecast::{Demand, SendRecord};
use super::forecast_error::PendingForecasts;
use super::gamma::Gamma;
use super::lineage::Lineage;
use super::window::{BinCounts, Bins};
use crate::signal::Method;

/// Pending work item for a not-yet-closed bin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub bin: i64,
    pub what: PendingKind,
    /// Person key (clicks, forwards).
    pub person: u64,
    /// Parent key (clicks) or addressees (forwards).
    pub other: u64,
}

/// What a pending item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PendingKind {
    /// A click; `person` valid when `has_person`, `other` is the parent when `has_parent`.
    Click { has_person: bool, has_parent: bool },
    /// A forward by `person` to `other` addressees.
    Forward,
}

/// The posterior and bookkeeping of one campaign at one bin step.
#[derive(Clone, Copy, Debug)]
pub struct CampaignEstimate {
    /// End of the bin step (event time, ms).
    pub time_ms: i64,
    /// Start of the estimation window (ms).
    pub window_start_ms: i64,
    /// Posterior of R.
    pub posterior: Gamma,
    /// P(R > 1) under the posterior.
    pub p_viral: f64,
    /// Local clicks in the renewal window.
    pub local_cases: u64,
    /// Imported (generation-0) clicks in the renewal window.
    pub imported_cases: u64,
    /// Which estimator produced it.
    pub method: Method,
    /// Overdispersion used (1 for the renewal estimator).
    pub dispersion: f64,
    /// Clickers of the window (lineage: of its cohorts; renewal: its
    /// clicks), for the estimate's `r_case` (`case_r.rs`).
    pub clickers: u64,
}

/// One campaign.
#[derive(Debug)]
pub(crate) struct Campaign {
    pub name: Arc<str>,
    /// The target named by the first event (in arrival order) that names one.
    pub target: Option<u32>,
    /// The earliest bin of an event naming a target: the signals of bins
    /// before it carry no target (see [`Campaign::target_at`]).
    pub target_since_bin: i64,
    pub bins: Bins<BinCounts>,
    pub pending: Vec<Pending>,
    pub dedup: Dedup,
    pub lineage: Lineage,
    /// Next bin this campaign has not closed.
    pub closed: i64,
    pub last_event_ms: i64,
    pub last_event_bin: i64,
    pub sends: Vec<SendRecord>,
    pub direct_clicks: u64,
    pub clicks: u64,
    pub detector: Detector,
    pub last: Option<CampaignEstimate>,
    pub demand: Demand,
    pub demand_rps: f64,
    /// Last closed bin with any click (Λ is zero a GI support after it).
    pub last_incidence_bin: i64,
    /// Direct clicks by delay since the first send, for the target's
    /// learned direct wave (from the first closed bin with a send before
    /// its end; boxed: most campaigns in a flood of ids never have one).
    pub delays: Option<Box<CampaignDelays>>,
    /// The audience (slot in its target's audiences) named by the first
    /// send (in arrival order) that names one, if it got a slot.
    pub audience: Option<u32>,
    /// The earliest bin of a send naming an audience (`i64::MAX`: none yet);
    /// see [`Campaign::audience_at`].
    pub audience_since_bin: i64,
    /// Its predictive forecasts whose horizon has not passed, for its
    /// target's learned model error (`forecast_error.rs`; boxed, made at the
    /// first one: only with estimates and `forecast.learn_error`).
    pub forecasts: Option<Box<PendingForecasts>>,
}

/// At most this many sends are remembered per campaign (the most recent).
pub(crate) const MAX_SENDS: usize = 64;

impl Campaign {
    pub fn new(name: Arc<str>, first_bin: i64, closed: i64, max_clickers: usize) -> Self {
        let start = first_bin.min(closed);
        Campaign {
            name,
            target: None,
            target_since_bin: i64::MAX,
            bins: Bins::starting_at(start),
            pending: Vec::new(),
            dedup: Dedup::default(),
            lineage: Lineage::new(start, max_clickers),
            closed,
            last_event_ms: i64::MIN,
            last_event_bin: i64::MIN,
            sends: Vec::new(),
            direct_clicks: 0,
            clicks: 0,
            detector: Detector::default(),
            last: None,
            demand: Demand::default(),
            demand_rps: 0.0,
            last_incidence_bin: i64::MIN,
            delays: None,
            audience: None,
            audience_since_bin: i64::MAX,
            forecasts: None,
        }
    }

    /// The campaign's target as known at the end of bin `b`: only if an
    /// event of bin ≤ `b` named it. Such an event has always arrived by the
    /// time `b` closes, so this does not depend on the order in which events
    /// inside the allowed lateness arrived (the plain `target` does: it is
    /// set by whichever event naming it arrives first, possibly one of a
    /// later, still open bin).
    pub fn target_at(&self, b: i64) -> Option<u32> {
        self.target.filter(|_| self.target_since_bin <= b)
    }

    /// The campaign's audience as known at the end of bin `b`: only if a
    /// send of bin ≤ `b` named it (as [`Campaign::target_at`]).
    pub fn audience_at(&self, b: i64) -> Option<u32> {
        self.audience.filter(|_| self.audience_since_bin <= b)
    }

    pub fn add_send(&mut self, s: SendRecord) {
        if self.sends.len() >= MAX_SENDS {
            self.sends.remove(0);
        }
        self.sends.push(s);
    }

    /// Applies the pending items of bin `b`: registers its clickers first,
    /// then links offspring and forwards. The cohort of each linked
    /// offspring's parent is appended to `parents` (what the generation
    /// interval is learned from).
    pub fn settle_bin(&mut self, b: i64, work: &mut Vec<Pending>, parents: &mut Vec<i64>) {
        work.clear();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].bin == b {
                work.push(self.pending.swap_remove(i));
            } else {
                i += 1;
            }
        }
        for p in work.iter() {
            if let PendingKind::Click { has_person: true, .. } = p.what {
                self.lineage.add_clicker(p.person, b);
            }
        }
        let mut linked = 0u32;
        for p in work.iter() {
            match p.what {
                PendingKind::Click { has_parent: true, .. } => {
                    if let Some(cohort) = self.lineage.add_offspring(p.other) {
                        linked += 1;
                        parents.push(cohort);
                    }
                }
                PendingKind::Forward => {
                    self.lineage.add_forward(p.person, p.other);
                }
                _ => {}
            }
        }
        if let Some(bc) = self.bins.get_mut(b) {
            bc.linked += linked;
        }
    }
}

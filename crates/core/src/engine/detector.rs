//! Viral onset / subsided detection with hysteresis.
//!
//! A campaign turns *viral* when the posterior probability P(R > 1) is at
//! least `onset_probability` with at least `min_local_cases` local clicks in
//! the window, for `confirm_bins` consecutive bin steps. It *subsides* when
//! P(R > 1) falls to `subside_probability` or below (again for `confirm_bins`
//! steps). The gap between the two levels is the hysteresis that keeps a
//! campaign hovering around R = 1 from flapping. Each onset opens a new
//! numbered *episode*; the number goes into the signal's deterministic id, so
//! a replayed onset has the same id and consumers can drop it.

use crate::config::DetectorConfig;

/// What a step of the detector decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// The campaign became viral: episode number.
    Onset(u32),
    /// The campaign stopped being viral: episode number.
    Subsided(u32),
}

/// Per-campaign detector state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Detector {
    viral: bool,
    streak: u32,
    episode: u32,
}

impl Detector {
    /// Whether the campaign is currently viral.
    pub fn is_viral(&self) -> bool {
        self.viral
    }

    /// Episodes opened so far.
    pub fn episodes(&self) -> u32 {
        self.episode
    }

    /// Feeds one bin step's posterior probability and evidence.
    pub fn step(&mut self, cfg: &DetectorConfig, p_viral: f64, local_cases: u64) -> Transition {
        let toward = if self.viral {
            p_viral <= cfg.subside_probability
        } else {
            p_viral >= cfg.onset_probability && local_cases >= u64::from(cfg.min_local_cases)
        };
        if !toward {
            self.streak = 0;
            return Transition::None;
        }
        self.streak += 1;
        if self.streak < cfg.confirm_bins.max(1) {
            return Transition::None;
        }
        self.streak = 0;
        self.viral = !self.viral;
        if self.viral {
            self.episode += 1;
            Transition::Onset(self.episode)
        } else {
            Transition::Subsided(self.episode)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DetectorConfig {
        DetectorConfig { onset_probability: 0.95, subside_probability: 0.5, min_local_cases: 20, confirm_bins: 2 }
    }

    #[test]
    fn onset_needs_confirmation_and_evidence() {
        let mut d = Detector::default();
        assert_eq!(d.step(&cfg(), 0.99, 10), Transition::None, "too few cases");
        assert_eq!(d.step(&cfg(), 0.99, 25), Transition::None, "first confirming step");
        assert_eq!(d.step(&cfg(), 0.99, 25), Transition::Onset(1));
        assert!(d.is_viral());
    }

    #[test]
    fn hysteresis_prevents_flapping() {
        let mut d = Detector::default();
        d.step(&cfg(), 0.99, 50);
        d.step(&cfg(), 0.99, 50);
        // Between the levels: stays viral however long.
        for _ in 0..10 {
            assert_eq!(d.step(&cfg(), 0.7, 50), Transition::None);
        }
        assert_eq!(d.step(&cfg(), 0.4, 50), Transition::None);
        assert_eq!(d.step(&cfg(), 0.6, 50), Transition::None, "streak broken");
        assert_eq!(d.step(&cfg(), 0.4, 50), Transition::None);
        assert_eq!(d.step(&cfg(), 0.3, 50), Transition::Subsided(1));
        d.step(&cfg(), 0.97, 50);
        assert_eq!(d.step(&cfg(), 0.97, 50), Transition::Onset(2), "second episode");
    }
}

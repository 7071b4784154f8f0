//! When a campaign is over: the clicks the model still expects of it.
//!
//! A silent campaign is forgotten when the learned model says little more
//! will come, not after a fixed idle time (`limits.forget_below`, with
//! `limits.idle_timeout` as the longest any silent campaign is kept). The
//! expected number of clicks still to come, at the end of the closed bins:
//!
//! ```text
//! λ = (D + R·E) / (1 − min(R, 0.95))
//! D = Σ_sends recipients · p · (1 − F_resp(age of the send))
//! E = Σ_cohorts n_c · (1 − F_GI(age of the cohort))
//! ```
//!
//! `D`: direct clicks still to come (`p` the campaign's click-through as the
//! forecast reads it, `F_resp` its target's learned response curve); `E`:
//! the share of their offspring the clickers still followed have not had
//! yet (`F_GI` the learned generation interval; for a campaign without
//! clicker ids, its recent clicks per bin stand for the cohorts); `R` the
//! mean of its latest estimate (or of its target's prior of R). Every future
//! click has on average `1/(1 − R)` clicks in its whole line of descent for
//! R < 1; R is capped at 0.95 there so that a super-critical campaign is
//! kept (λ large), not divided by zero.

/// Cap on R in the descendants factor `1/(1 − R)`.
const R_CAP: f64 = 0.95;

/// What is still to come of one campaign.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Remaining {
    /// Direct clicks still expected (`D`).
    pub direct: f64,
    /// Clickers' offspring exposure still to come (`E`, clickers × (1 − F)).
    pub exposure: f64,
}

impl Remaining {
    /// Expected clicks still to come at reproduction number `r` (`λ`).
    pub fn expected_clicks(&self, r: f64) -> f64 {
        let r = r.max(0.0);
        (self.direct + r * self.exposure) / (1.0 - r.min(R_CAP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: 2 direct clicks and an exposure of 10 at R = 0.5 →
    /// (2 + 5) / 0.5 = 14; at R = 3 the factor is capped: (2 + 30) / 0.05.
    #[test]
    fn expected_clicks_by_hand() {
        let r = Remaining { direct: 2.0, exposure: 10.0 };
        assert!((r.expected_clicks(0.5) - 14.0).abs() < 1e-12);
        assert!((r.expected_clicks(3.0) - 640.0).abs() < 1e-9);
        assert_eq!(Remaining::default().expected_clicks(0.8), 0.0);
    }
}

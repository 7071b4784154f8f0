//! What a forecast made at the end of a bin may know of its campaign.
//!
//! Events are counted into their bin as soon as they arrive, so when bin `b`
//! closes a campaign already holds events of later, still-open bins (anything
//! up to the watermark + the allowed lateness). Which of those have arrived
//! depends on the order of arrival. A forecast made at the end of `b` must
//! not see them, or it would change with that order while R, P(R>1) and the
//! case counts do not (`tests/properties.rs` checks all of them). [`Known`]
//! copies exactly what the end of `b` may know: the click history of the
//! bins up to `b`, the sends before a cut-off time and the direct clicks of
//! the bins up to `b`. One rule for both forecasts the engine makes (the
//! planner's and the estimate's predictive one).

use super::campaign::Campaign;
use super::forecast::{ForecastInput, ResponseCurve, SendRecord};

/// Reusable buffers holding what a forecast may know of one campaign.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Clicks (local + imported) per bin, ending at the last known bin.
    history: Vec<f64>,
    /// The sends made before the cut-off.
    sends: Vec<SendRecord>,
    /// Generation-0 clicks in the known bins.
    direct_clicks: u64,
}

/// The fixed parts of a [`ForecastInput`]: from the configuration, the same
/// for every campaign.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    /// Bin width, ms.
    pub bin_ms: i64,
    /// The generation interval the forecast projects with, discretised
    /// (`w[0] = 0`) and cut where its mass reaches `1 − forecast::GI_TAIL`.
    pub gi: Vec<f64>,
    /// Forecast horizon in bins.
    pub horizon_bins: usize,
    /// The configured response curve.
    pub curve: ResponseCurve,
    /// The configured prior click-through and its weight (recipients).
    pub click_through: (f64, f64),
}

impl Known {
    /// Refills the buffers for campaign `c` with what is known at the end
    /// of `last_bin`: `history_len` bins of click history (0 when no
    /// pass-along is projected), the direct clicks of bins ≤ `last_bin`, and
    /// the sends with `ts < sends_before_ms`.
    ///
    /// Direct clicks are the campaign's running total minus those counted
    /// in bins after `last_bin` (every counted click sits in a held bin).
    pub fn fill(&mut self, c: &Campaign, last_bin: i64, history_len: usize, sends_before_ms: i64) {
        self.history.clear();
        if history_len > 0 {
            let from = last_bin - history_len as i64 + 1;
            for (t, x) in c.bins.iter_range(from, last_bin) {
                self.history.resize((t - from) as usize, 0.0);
                self.history.push(x.incidence());
            }
            self.history.resize(history_len, 0.0);
        }
        let later: u64 = c.bins.iter_range(last_bin + 1, i64::MAX).map(|(_, x)| u64::from(x.imported)).sum();
        self.direct_clicks = c.direct_clicks.saturating_sub(later);
        self.sends.clear();
        self.sends.extend(c.sends.iter().copied().filter(|s| s.ts_ms < sends_before_ms));
        // In time order, not arrival order: sums over the sends then come
        // out the same to the last bit.
        self.sends.sort_unstable_by_key(|s| (s.ts_ms, s.recipients));
    }

    /// The projection's input at `now_ms`, starting after `last_bin`, with
    /// pass-along projected at `r` (0: none) and the click-through prior
    /// `(mean, weight)`: the configured one, or the target's learned one.
    /// `gi`: the generation interval projected with (the configured one,
    /// `model.gi`, or the target's learned one).
    #[allow(clippy::too_many_arguments)]
    pub fn input<'a>(
        &'a self,
        model: &'a Model,
        gi: &'a [f64],
        now_ms: i64,
        last_bin: i64,
        r: f64,
        click_through: (f64, f64),
    ) -> ForecastInput<'a> {
        ForecastInput {
            now_ms,
            bin_ms: model.bin_ms,
            last_bin,
            history: &self.history,
            sends: &self.sends,
            direct_clicks: self.direct_clicks,
            r,
            gi,
            horizon_bins: model.horizon_bins,
            click_through: click_through.0,
            click_through_weight: click_through.1,
            fresh_bins: 0,
            r_fit: 0.0,
            level_bins: 0,
        }
    }
}

//! The log the learning tests share (`tests/learning.rs`,
//! `tests/kafka_model.rs`): eight campaigns of target `web`, one every 12 h,
//! whose direct clicks come hours after the send (lognormal delay, median
//! 3 h) with a stable 1 % click-through — both far from the configured
//! priors (30 min, 5 %).
#![allow(dead_code)]

use floodgate::simulate::Rng;

pub const START: i64 = 1_772_409_600_000;
pub const HOUR: f64 = 3_600_000.0;
/// True median delay (send → direct click), and the sd of its log.
pub const MEDIAN_MS: f64 = 3.0 * HOUR;
pub const SIGMA: f64 = 1.0;
pub const RECIPIENTS: u64 = 20_000;
/// True click-through.
pub const CLICK_THROUGH: f64 = 0.01;

/// The eight campaigns from `start`, each direct click drawn from the
/// lognormal delay; the log ends 2 days after the last send. NDJSON lines
/// in time order.
pub fn learning_lines(seed: u64, start: i64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut events: Vec<(i64, String)> = Vec::new();
    let end = start + 7 * 12 * HOUR as i64 + 48 * HOUR as i64;
    for c in 0..8 {
        let send = start + c * 12 * HOUR as i64;
        events.push((send, format!(r#"{{"type":"send","campaign":"c{c}","ts":{send},"recipients":{RECIPIENTS},"target":"web"}}"#)));
        for i in 0..RECIPIENTS {
            if rng.uniform() >= CLICK_THROUGH {
                continue;
            }
            let ts = send + (MEDIAN_MS * (SIGMA * rng.normal()).exp()) as i64;
            if ts < end {
                events.push((ts, format!(r#"{{"type":"click","campaign":"c{c}","ts":{ts},"id":"{i}","person":"p{i}"}}"#)));
            }
        }
    }
    events.sort();
    events.into_iter().map(|(_, l)| l).collect()
}

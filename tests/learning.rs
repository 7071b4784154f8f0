//! The learned direct wave (`forecast.learn`), end to end through replay:
//! campaigns of one target whose clicks come hours after the send, with a
//! stable click-through, teach the target its response curve and
//! click-through; the configured constants (30 min, 5 %) are only the prior.

use floodgate::config::Config;
use floodgate::engine::Engine;
use floodgate::replay::replay_bytes;
use floodgate::simulate::Rng;

#[path = "common/learning_log.rs"]
mod learning_log;

use learning_log::*;

/// [`learning_lines`] at [`START`], as one log.
fn log(seed: u64) -> Vec<u8> {
    learning_lines(seed, START).into_iter().flat_map(|l| (l + "\n").into_bytes()).collect()
}

/// The tails of these campaigns leave gaps of hours between events: the
/// far-future guard is widened so that no event is held back as a typo.
fn engine(toml: &str) -> Engine {
    let toml = format!("[estimator]\nmax_future = \"1d\"\n{toml}");
    Engine::new(Config::from_toml(&toml).expect("config")).expect("engine")
}

#[test]
fn a_target_learns_its_response_curve_and_click_through() {
    let data = log(5);
    let mut e = engine("");
    let (_, report, errors) = replay_bytes(&data, &mut e);
    assert!(errors.is_empty(), "{:?}", errors.first());
    assert!(report.accepted > 1000, "{}", report.accepted);
    let targets = e.targets();
    let web = targets.iter().find(|t| t.target == "web").expect("target web");
    let w = web.direct_wave.as_ref().expect("learning is on by default");
    let median_s = MEDIAN_MS / 1000.0;
    assert!((w.response_median_s / median_s - 1.0).abs() < 0.15, "median {} s vs {median_s} s", w.response_median_s);
    // Lognormal 90th percentile: median · e^{1.2816 σ}.
    let p90_s = median_s * (1.2816 * SIGMA).exp();
    assert!((w.response_p90_s / p90_s - 1.0).abs() < 0.25, "p90 {} s vs {p90_s} s", w.response_p90_s);
    assert!(w.campaigns >= 3, "{} campaigns pooled", w.campaigns);
    assert!((w.click_through / CLICK_THROUGH - 1.0).abs() < 0.2, "click-through {}", w.click_through);
}

#[test]
fn with_learning_off_the_constants_stay() {
    let data = log(5);
    let mut e = engine("[forecast]\nlearn = false\n");
    let _ = replay_bytes(&data, &mut e);
    let targets = e.targets();
    let web = targets.iter().find(|t| t.target == "web").expect("target web");
    assert!(web.direct_wave.is_none());
}

/// What the learning buys: the first estimate after the last send, at t,
/// forecasts the direct clicks of (t, t + 30 min] with the learned curve and
/// click-through, within a factor 2 of their true expectation
/// `20 000 · 1 % · (F(t + 30 min − send) − F(t − send))`; the constants (5 %,
/// exponential with mean 30 min; already pulled toward the campaign's first
/// clicks by its click-through posterior and by the forecast's level check)
/// are off by more than a factor 2, and further off than the learned curve.
/// (Before the level check, session 14, they were off by more than 4.)
#[test]
fn the_send_time_forecast_uses_what_was_learned() {
    let data = log(5);
    let first_forecast = |toml: &str| {
        let mut e = engine(toml).with_estimates(true);
        let (signals, _, _) = replay_bytes(&data, &mut e);
        signals
            .iter()
            .find_map(|s| match s {
                floodgate::signal::Signal::Estimate(x) if &*x.campaign == "c7" => Some((x.time_ms, x.forecast.clicks.mean)),
                _ => None,
            })
            .expect("an estimate of c7")
    };
    let (t, learned) = first_forecast("");
    let (_, constant) = first_forecast("[forecast]\nlearn = false\n");
    let send = START + 7 * 12 * HOUR as i64;
    let cdf = |ms: f64| 0.5 * (1.0 + erf((ms / MEDIAN_MS).ln() / SIGMA / std::f64::consts::SQRT_2));
    let since = (t - send) as f64;
    let expected = RECIPIENTS as f64 * CLICK_THROUGH * (cdf(since + 0.5 * HOUR) - cdf(since));
    assert!((learned / expected).ln().abs() < 2f64.ln(), "learned {learned} vs expected {expected} at {since} ms");
    assert!((constant / expected).ln().abs() > 2f64.ln(), "constant {constant} vs expected {expected}");
    assert!(
        (constant / expected).ln().abs() > (learned / expected).ln().abs(),
        "the constants ({constant}) should miss {expected} by more than the learned model ({learned})"
    );
}

/// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y =
        1.0 - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592) * t * (-x * x).exp();
    y.copysign(x)
}

/// #16's goal for the learned generation interval: on the heavy-tailed
/// scenario (click → forward → click, both lognormal with an sd above the
/// mean), a target's learned median and 90th percentile come within 10 %
/// of the true ones. The truth is the sum of the two delays, by Monte Carlo;
/// the configured prior (17 min, sd 10 min) is far from it. The scenario's
/// logs stop 6 h after each send, which cuts the interval's tail off (no
/// learner can see a delay the log does not hold); here each campaign's log
/// runs 24 h, and the two super-critical campaigns, which would grow for
/// all of those hours, are left out.
#[test]
fn the_heavy_tailed_generation_interval_is_learned() {
    use floodgate::simulate::{heavy_tailed_scenarios, simulate};
    let mut spec = heavy_tailed_scenarios(3, START);
    spec.campaigns.retain(|c| c.r < 1.0);
    for c in &mut spec.campaigns {
        c.duration_ms = 24 * HOUR as i64;
    }
    let delays = spec.campaigns[0].lognormal.expect("heavy-tailed delays");
    let mut rng = Rng::new(11);
    let mut truth: Vec<f64> = (0..200_000).map(|_| rng.lognormal(delays.forward) + rng.lognormal(delays.response)).collect();
    truth.sort_by(f64::total_cmp);
    let quantile = |q: f64| truth[(q * truth.len() as f64) as usize] / 1000.0;
    let (median_s, p90_s) = (quantile(0.5), quantile(0.9));
    let data: Vec<u8> = simulate(&spec).into_iter().flat_map(|e| (e.line + "\n").into_bytes()).collect();
    let mut e = engine("");
    let (_, _, errors) = replay_bytes(&data, &mut e);
    assert!(errors.is_empty(), "{:?}", errors.first());
    for t in e.targets() {
        let g = t.generation_interval.as_ref().expect("learning is on by default");
        eprintln!("{}: median {} s (true {median_s}), p90 {} s (true {p90_s}), {} delays", t.target, g.median_s, g.p90_s, g.delays);
        assert!((g.median_s / median_s - 1.0).abs() < 0.10, "{}: median {} s vs {median_s} s", t.target, g.median_s);
        assert!((g.p90_s / p90_s - 1.0).abs() < 0.10, "{}: p90 {} s vs {p90_s} s", t.target, g.p90_s);
    }
}

/// Two audiences of target `web`: (name, click-through, median delay).
/// Their click-throughs differ ×5, their delays ×4.
const AUDIENCES: [(&str, f64, f64); 2] = [("low", 0.005, 2.0 * HOUR), ("high", 0.025, 0.5 * HOUR)];
/// Campaigns per audience before the one whose forecast is checked.
const PAST: i64 = 5;
/// Hours between sends.
const EVERY_H: i64 = 8;

/// `PAST + 1` campaigns per audience, alternating (`low-0`, `high-0`,
/// `low-1`, …), one every `EVERY_H` hours, lognormal delays (sd of the log
/// 1); the sends name their audience when `named`.
fn audience_log(seed: u64, named: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut events: Vec<(i64, String)> = Vec::new();
    let n = 2 * (PAST + 1);
    let end = START + (n - 1) * EVERY_H * HOUR as i64 + 24 * HOUR as i64;
    for i in 0..n {
        let (audience, click_through, median) = AUDIENCES[(i % 2) as usize];
        let c = format!("{audience}-{}", i / 2);
        let send = START + i * EVERY_H * HOUR as i64;
        let named = if named { format!(r#","audience":"{audience}""#) } else { String::new() };
        events.push((send, format!(r#"{{"type":"send","campaign":"{c}","ts":{send},"recipients":{RECIPIENTS},"target":"web"{named}}}"#)));
        for k in 0..RECIPIENTS {
            if rng.uniform() >= click_through {
                continue;
            }
            let ts = send + (median * (SIGMA * rng.normal()).exp()) as i64;
            if ts < end {
                events.push((ts, format!(r#"{{"type":"click","campaign":"{c}","ts":{ts},"id":"{k}","person":"p{k}"}}"#)));
            }
        }
    }
    events.sort();
    events.into_iter().flat_map(|(_, l)| (l + "\n").into_bytes()).collect()
}

/// The first estimate of `campaign`: its time and the forecast mean of its
/// clicks in the next 30 min.
fn first_forecast(data: &[u8], campaign: &str) -> (i64, f64) {
    let mut e = engine("[forecast]\nhorizon = \"30m\"\n").with_estimates(true);
    let (signals, _, errors) = replay_bytes(data, &mut e);
    assert!(errors.is_empty(), "{:?}", errors.first());
    signals
        .iter()
        .find_map(|s| match s {
            floodgate::signal::Signal::Estimate(x) if &*x.campaign == campaign => Some((x.time_ms, x.forecast.clicks.mean)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("an estimate of {campaign}"))
}

/// Hierarchical learning: after five campaigns each, the forecast of each
/// audience's next campaign made at its first estimate is within ×1.5 of its
/// true expectation `20 000 · p_a · (F_a(t + 30 min − send) − F_a(t − send))`;
/// the same log without `audience` (one model for the target, a blend of
/// the two) is off by more than ×1.5 for at least one of them.
#[test]
fn each_audience_forecasts_with_its_own_direct_wave() {
    let named = audience_log(11, true);
    let blended = audience_log(11, false);
    let mut blend_off = 0;
    for (i, &(audience, click_through, median)) in AUDIENCES.iter().enumerate() {
        let campaign = format!("{audience}-{PAST}");
        let send = START + (2 * PAST + i as i64) * EVERY_H * HOUR as i64;
        let (t, learned) = first_forecast(&named, &campaign);
        let (t_blend, blend) = first_forecast(&blended, &campaign);
        assert_eq!(t, t_blend, "the same first estimate");
        let cdf = |ms: f64| 0.5 * (1.0 + erf((ms / median).ln() / SIGMA / std::f64::consts::SQRT_2));
        let since = (t - send) as f64;
        let expected = RECIPIENTS as f64 * click_through * (cdf(since + 0.5 * HOUR) - cdf(since));
        assert!((learned / expected).ln().abs() < 1.5f64.ln(), "{audience}: learned {learned} vs expected {expected} at {since} ms");
        if (blend / expected).ln().abs() > 1.5f64.ln() {
            blend_off += 1;
        }
        eprintln!("{audience}: expected {expected:.1}, per audience {learned:.1}, target blend {blend:.1}");
    }
    assert!(blend_off >= 1, "the target-level blend is within ×1.5 for both audiences");
}

/// A new audience of a known target starts from the target's learned curve
/// and click-through, not from the configured constants (30 min, 5 %).
#[test]
fn a_new_audience_starts_from_its_target() {
    let mut data = log(5);
    // When the log ends (2 days after the last campaign's send).
    let send = START + 7 * 12 * HOUR as i64 + 48 * HOUR as i64;
    data.extend_from_slice(
        format!(r#"{{"type":"send","campaign":"new","ts":{send},"recipients":{RECIPIENTS},"target":"web","audience":"fresh"}}"#).as_bytes(),
    );
    let mut e = engine("");
    let (_, _, errors) = replay_bytes(&data, &mut e);
    assert!(errors.is_empty(), "{:?}", errors.first());
    let targets = e.targets();
    let web = targets.iter().find(|t| t.target == "web").expect("target web");
    let target = web.direct_wave.as_ref().expect("learning is on by default");
    let fresh = &web.audiences.iter().find(|a| a.audience == "fresh").expect("audience fresh").direct_wave;
    assert_eq!(fresh.campaigns, 0);
    assert_eq!(fresh.delays, 0.0);
    assert_eq!((fresh.click_through, fresh.click_through_weight), (target.click_through, target.click_through_weight));
    assert!(
        (fresh.response_median_s / target.response_median_s - 1.0).abs() < 1e-9,
        "{} vs {}",
        fresh.response_median_s,
        target.response_median_s
    );
    assert!((fresh.response_p90_s / target.response_p90_s - 1.0).abs() < 1e-9);
    // … which are the learned ones, far from the configured constants.
    assert!((fresh.click_through / CLICK_THROUGH - 1.0).abs() < 0.2, "{}", fresh.click_through);
    assert!(fresh.response_median_s > 2.0 * 3600.0, "{}", fresh.response_median_s);
}

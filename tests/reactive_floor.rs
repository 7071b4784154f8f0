//! The planner's reactive floor sees the load that has already arrived,
//! not only the bins the watermark has made final: a burst of clicks in
//! the last minutes raises `floor_replicas` of the next `scale_ahead`
//! although none of its bins is final yet (`allowed_lateness` = 5 min).

use floodgate::config::Config;
use floodgate::engine::Engine;
use floodgate::signal::Signal;

fn line(kind: &str, ts_s: i64, i: usize) -> String {
    let ts = floodgate::time::rfc3339(1_772_438_400_000 + ts_s * 1000);
    match kind {
        "send" => format!(r#"{{"type":"send","campaign":"c","ts":"{ts}","recipients":1000,"target":"web","id":"s"}}"#),
        _ => format!(r#"{{"type":"click","campaign":"c","ts":"{ts}","id":"k{i}","person":"p{i}","target":"web"}}"#),
    }
}

#[test]
fn a_burst_raises_the_floor_before_its_bins_are_final() {
    let mut lines = vec![line("send", 0, 0)];
    // A trickle for 10 minutes, then 3 000 clicks a minute in minutes 10-12,
    // then a trickle until 14:30 (the watermark reaches 9:30).
    let mut i = 0;
    for s in (0..600).step_by(30) {
        i += 1;
        lines.push(line("click", s, i));
    }
    for k in 0..9_000 {
        i += 1;
        lines.push(line("click", 600 + k * 180 / 9_000, i));
    }
    for s in (780..870).step_by(30) {
        i += 1;
        lines.push(line("click", s, i));
    }
    let cfg = Config::default();
    let mut engine = Engine::new(cfg.clone()).expect("engine");
    let (signals, _, errors) = floodgate::replay::replay_bytes(lines.join("\n").as_bytes(), &mut engine);
    assert!(errors.is_empty(), "{errors:?}");
    // The burst's 3 000 clicks a minute at 10 requests each: 500 req/s,
    // × (1 + the headroom the plan used) / 50 per replica (11 replicas at
    // the default start of 0.1).
    let floor = signals.iter().find_map(|s| match s {
        Signal::ScaleAhead(a) if a.floor_replicas > cfg.planner.min_replicas => Some((a.time_ms, a.floor_replicas, a.headroom)),
        _ => None,
    });
    let (time_ms, floor, headroom) = floor.expect("a scale_ahead with a raised floor");
    assert_eq!(floor, (500.0 * (1.0 + headroom) / 50.0).ceil() as u32, "headroom {headroom}");
    assert!(floor >= 11);
    // The burst's first minute has elapsed once the events reach 11:00,
    // when the watermark (5 min behind) makes the bin of 5:00-6:00 final:
    // the floor rises at that step (6:00), long before the burst's own bins
    // are final (from 11:00 on; with the floor on final bins, the old rule,
    // it rose at 11:00).
    assert!(time_ms <= 1_772_438_400_000 + 480_000, "the floor rose at {}", floodgate::time::rfc3339(time_ms));
}

//! Dirty input (issue #2 acceptance): the same simulated log shuffled up to
//! 2 minutes out of order, with duplicated lines and malformed lines mixed in.
//! Every malformed line is rejected and counted, duplicates are counted once,
//! and the estimates stay within 5 % of the clean log's.

use std::collections::BTreeMap;

use floodgate::config::Config;
use floodgate::engine::Engine;
use floodgate::replay::replay_bytes;
use floodgate::signal::Signal;
use floodgate::simulate::{demo_scenario, simulate, Rng};

const START: i64 = 1_772_438_400_000;

fn estimates(signals: &[Signal]) -> BTreeMap<(String, i64), (f64, u64)> {
    signals
        .iter()
        .filter_map(|s| match s {
            Signal::Estimate(e) => Some(((e.campaign.to_string(), e.time_ms), (e.r.mean, e.local_cases))),
            _ => None,
        })
        .collect()
}

fn engine() -> Engine {
    Engine::new(Config::default()).expect("defaults").with_estimates(true)
}

const MALFORMED: [&str; 8] = [
    "{not json",
    r#"{"type":"click","campaign":"spring-sale"}"#,
    r#"{"type":"click","campaign":"spring-sale","ts":"yesterday"}"#,
    r#"{"type":"teleport","campaign":"spring-sale","ts":"2026-03-02T08:30:00Z"}"#,
    r#"{"type":"send","campaign":"spring-sale","ts":"2026-03-02T08:30:00Z","recipients":-5,"target":"x"}"#,
    r#"{"type":"click","campaign":"","ts":"2026-03-02T08:30:00Z"}"#,
    "\u{0}\u{1}\u{2}",
    r#"["an","array"]"#,
];

#[test]
fn shuffled_duplicated_and_malformed_log_gives_the_same_estimates() {
    let events = simulate(&demo_scenario(5, START));
    let clean: Vec<&str> = events.iter().map(|e| e.line.as_str()).collect();

    // Dirty copy: each line displaced by up to ±60 s of event time (so any two
    // lines are at most 2 min out of order), 3 % duplicated, a malformed line
    // every 500 lines.
    let mut rng = Rng::new(99);
    let mut keyed: Vec<(f64, String)> = Vec::new();
    let mut malformed = 0u64;
    let mut duplicated = 0u64;
    for (i, e) in events.iter().enumerate() {
        let jitter = (rng.uniform() - 0.5) * 120_000.0;
        keyed.push((e.ts_ms as f64 + jitter, e.line.clone()));
        if e.line.contains("\"id\"") && rng.chance(0.03) {
            keyed.push((e.ts_ms as f64 + (rng.uniform() - 0.5) * 120_000.0, e.line.clone()));
            duplicated += 1;
        }
        if i % 500 == 0 {
            keyed.push((e.ts_ms as f64, MALFORMED[(i / 500) % MALFORMED.len()].to_string()));
            malformed += 1;
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let dirty: Vec<String> = keyed.into_iter().map(|(_, l)| l).collect();

    let (clean_signals, clean_report, clean_errors) = replay_bytes((clean.join("\n") + "\n").as_bytes(), &mut engine());
    assert!(clean_errors.is_empty());
    let (dirty_signals, report, errors) = replay_bytes((dirty.join("\n") + "\n").as_bytes(), &mut engine());

    assert_eq!(report.rejected, malformed, "every malformed line rejected");
    assert_eq!(errors.len() as u64, malformed);
    assert!(errors.iter().all(|e| e.line > 0 && !e.rejection.detail.is_empty()));
    assert_eq!(report.duplicates, duplicated, "duplicates counted once");
    assert_eq!(report.late, 0, "2 min disorder is within the 5 min allowed lateness");
    assert_eq!(report.accepted, clean_report.accepted, "no valid event lost");

    let a = estimates(&clean_signals);
    let b = estimates(&dirty_signals);
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f64;
    for (k, (ra, _)) in &a {
        let (rb, _) = b[k];
        worst = worst.max((ra - rb).abs() / ra.max(1e-9));
    }
    eprintln!("worst relative difference of R over {} estimates: {worst:e}", a.len());
    assert!(worst <= 0.05, "estimates moved by {worst}");
    // Onsets are the same too.
    let onsets = |s: &[Signal]| s.iter().filter(|x| matches!(x, Signal::ViralOnset(_))).map(Signal::id).collect::<Vec<_>>();
    assert_eq!(onsets(&clean_signals), onsets(&dirty_signals));
}

#[test]
fn events_beyond_the_allowed_lateness_are_counted_late_not_applied() {
    let log = [
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:00:00Z","generation":0}"#,
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:20:00Z","generation":0}"#,
        // 20 min behind the latest event: beyond the 5 min lateness.
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:00:30Z","generation":0}"#,
        // 4 min behind: still placed in its bin.
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:16:00Z","generation":0}"#,
    ]
    .join("\n");
    let (_, report, errors) = replay_bytes(log.as_bytes(), &mut engine());
    assert!(errors.is_empty());
    assert_eq!(report.late, 1);
    assert_eq!(report.accepted, 3);
}

#[test]
fn far_future_events_are_rejected_and_do_not_close_windows() {
    let log = [
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:00:00Z","generation":0}"#,
        r#"{"type":"click","campaign":"a","ts":"2031-01-01T00:00:00Z","generation":0}"#,
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:01:00Z","generation":0}"#,
    ]
    .join("\n");
    let (_, report, errors) = replay_bytes(log.as_bytes(), &mut engine());
    assert_eq!(report.rejected, 1);
    assert_eq!(errors[0].line, 2);
    assert_eq!(errors[0].rejection.reason.as_str(), "future");
    assert_eq!(report.accepted, 2, "the event after the bad clock is still on time");
    assert_eq!(report.late, 0);
}

#[test]
fn a_real_gap_in_the_log_is_not_mistaken_for_a_bad_clock() {
    // Four quiet hours between two bursts: the first event after the gap is
    // held until the next one confirms the jump; nothing is rejected.
    let log = [
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:00:00Z","generation":0}"#,
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T12:00:00Z","generation":0}"#,
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T12:00:05Z","generation":0}"#,
        r#"{"type":"click","campaign":"b","ts":"2026-03-02T12:01:00Z","generation":0}"#,
    ]
    .join("\n");
    let (_, report, errors) = replay_bytes(log.as_bytes(), &mut engine());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(report.accepted, 4);
}

#[test]
fn a_lone_far_future_line_at_the_end_is_rejected_with_its_line_number() {
    let log = [
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:00:00Z","generation":0}"#,
        r#"{"type":"click","campaign":"a","ts":"2026-03-02T08:00:01Z","generation":0}"#,
        r#"{"type":"click","campaign":"a","ts":"2029-01-01T00:00:00Z","generation":0}"#,
    ]
    .join("\n");
    let (_, report, errors) = replay_bytes(log.as_bytes(), &mut engine());
    assert_eq!(report.accepted, 2);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 3);
    assert!(errors[0].rejection.detail.contains("max_future"), "{}", errors[0].rejection.detail);
}

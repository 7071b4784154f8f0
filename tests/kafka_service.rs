//! `floodgate run` against the real broker on 127.0.0.1:9092 (start it with
//! `scripts/kafka-up`; without it these tests fail, they are never skipped).
//!
//! Consumer contract for signals: at-least-once; a repeat carries the same
//! CloudEvents id, so consumers deduplicate by id. What must never happen is
//! a second onset for an episode with a *different* id, or a lost onset.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use floodgate::signal::Signal;

fn onset_ids(signals: &[Signal]) -> BTreeSet<String> {
    signals.iter().filter(|s| matches!(s, Signal::ViralOnset(_))).map(Signal::id).collect()
}

fn viral_campaigns(signals: &[Signal]) -> BTreeSet<String> {
    signals
        .iter()
        .filter_map(|s| match s {
            Signal::ViralOnset(e) if e.episode == 1 => Some(e.campaign.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn kafka_end_to_end_matches_replay() {
    require_broker();
    let t0 = Instant::now();
    let name = unique("e2e");
    let input = format!("{name}.in");
    let lines = demo_lines(1);
    produce(&input, 1, &lines);
    let expected = replay_signals(&lines);
    let dir = tempdir();
    let svc = Service::start(&name, &input, &name, &dir, "run");
    svc.wait_ready(Duration::from_secs(20));
    svc.wait_for("every event applied", Duration::from_secs(30), |s| s.events_applied() >= lines.len() as f64);
    let records = read_topic(&format!("{name}.sig"), Duration::from_secs(2));
    let run_ids: BTreeSet<String> = records.iter().map(|r| r.header("ce_id").unwrap()).collect();
    let replay_ids: BTreeSet<String> = expected.iter().map(Signal::id).collect();
    // Same ids as replay; replay additionally flushes the windows still open at end of input.
    assert!(
        run_ids.is_subset(&replay_ids),
        "run emitted signals replay did not: {:?}",
        run_ids.difference(&replay_ids).collect::<Vec<_>>()
    );
    let missing: Vec<_> = replay_ids.difference(&run_ids).collect();
    assert!(missing.len() <= 3, "run misses more than the flushed windows: {missing:?}");
    let run_onsets: BTreeSet<String> = records
        .iter()
        .filter(|r| r.header("ce_type").as_deref() == Some("floodgate.viral_onset"))
        .map(|r| r.header("ce_id").unwrap())
        .collect();
    assert_eq!(run_onsets, onset_ids(&expected));
    assert_eq!(run_onsets.len(), 2, "the demo has two viral campaigns");
    // Records: keyed by campaign/target, CloudEvents JSON body with the same id.
    for r in &records {
        let v = r.json();
        assert_eq!(v["id"].as_str(), r.header("ce_id").as_deref());
        assert_eq!(r.key.as_deref(), v["subject"].as_str().map(str::as_bytes));
    }
    // Metrics: desired replicas of the viral campaign's target, signals by type.
    let (_, metrics) = svc.get("/metrics").unwrap();
    assert!(metrics.contains("floodgate_target_desired_replicas{target=\"shop-web\"}"), "{metrics}");
    assert_eq!(svc.metric("floodgate_signals_total{type=\"floodgate.viral_onset\"}"), 2.0);
    assert_eq!(svc.metric("floodgate_ready"), 1.0);
    assert!(metrics.contains("floodgate_build_info{version="));
    let (status, api) = svc.get("/api/campaigns").unwrap();
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["campaigns"].as_array().unwrap().len(), 3, "{api}");
    assert!(api["targets"].as_array().unwrap().iter().any(|t| t["target"] == "shop-web"));
    eprintln!("end-to-end: {} events, {} signals in {:?}", lines.len(), records.len(), t0.elapsed());
}

#[test]
fn kafka_bad_messages_go_to_the_dead_letter_topic() {
    require_broker();
    let name = unique("dlq");
    let input = format!("{name}.in");
    let good = demo_lines(2);
    let huge =
        format!("{{\"type\":\"click\",\"campaign\":\"spring-sale\",\"ts\":\"2026-03-02T08:30:00Z\",\"pad\":\"{}\"}}", "x".repeat(70_000));
    let bad = [
        "this is not json".to_string(),
        r#"{"type":"click","ts":"2026-03-02T08:30:00Z"}"#.to_string(),
        r#"{"type":"bounce","campaign":"spring-sale","ts":"2026-03-02T08:30:00Z"}"#.to_string(),
        r#"{"type":"send","campaign":"spring-sale","ts":"yesterday","recipients":5}"#.to_string(),
        huge,
    ];
    let mut lines = Vec::new();
    let step = good.len() / (bad.len() + 1);
    let mut b = bad.iter();
    for (i, l) in good.iter().enumerate() {
        if i > 0 && i % step == 0 {
            if let Some(x) = b.next() {
                lines.push(x.clone());
            }
        }
        lines.push(l.clone());
    }
    produce(&input, 1, &lines);
    let dir = tempdir();
    let svc = Service::start(&name, &input, &name, &dir, "run");
    svc.wait_ready(Duration::from_secs(20));
    svc.wait_for("every valid event applied", Duration::from_secs(30), |s| s.events_applied() >= good.len() as f64);
    svc.wait_for("dead letters counted", Duration::from_secs(10), |s| s.metric("floodgate_dead_letter_total") >= bad.len() as f64);
    assert_eq!(svc.events_applied(), good.len() as f64, "every valid event is applied once");
    let dead = read_topic(&format!("{name}.dlq"), Duration::from_secs(2));
    assert_eq!(dead.len(), bad.len(), "one dead letter per bad message");
    let payloads: BTreeSet<Vec<u8>> = dead.iter().map(|r| r.payload.clone()).collect();
    let originals: BTreeSet<Vec<u8>> = bad.iter().map(|l| l.as_bytes().to_vec()).collect();
    assert_eq!(payloads, originals, "dead letters carry the original bytes");
    let reasons: BTreeSet<String> = dead.iter().map(|r| r.header("floodgate.reason").unwrap()).collect();
    assert_eq!(reasons, ["json", "missing_field", "unknown_type", "timestamp", "too_large"].iter().map(|s| s.to_string()).collect());
    for r in &dead {
        assert_eq!(r.header("floodgate.source.topic").as_deref(), Some(input.as_str()));
        assert_eq!(r.header("floodgate.source.partition").as_deref(), Some("0"));
        assert!(r.header("floodgate.source.offset").unwrap().parse::<i64>().is_ok());
        assert!(!r.header("floodgate.detail").unwrap().is_empty());
    }
    assert_eq!(svc.metric("floodgate_events_rejected_total{reason=\"json\"}"), 1.0);
    assert_eq!(svc.metric("floodgate_events_rejected_total{"), bad.len() as f64);
    // The unkeyed (malformed) lines were published without a key, and counted as such only if decodable.
    assert_eq!(svc.metric("floodgate_unkeyed_events_total"), 0.0);
}

/// Two input topics: every message is applied, and a dead letter names the
/// topic it came from (an instance reading one topic skips asking each
/// message for its topic name; one reading several must ask).
#[test]
fn kafka_reads_every_input_topic() {
    require_broker();
    let name = unique("topics");
    let (first, second) = (format!("{name}.a"), format!("{name}.b"));
    let lines = demo_lines(4);
    let campaigns: BTreeSet<&str> = lines.iter().filter_map(|l| floodgate::source::kafka::campaign_of(l.as_bytes())).collect();
    let one = campaigns.iter().next().copied().unwrap();
    let (mut a, mut b): (Vec<String>, Vec<String>) =
        lines.iter().cloned().partition(|l| floodgate::source::kafka::campaign_of(l.as_bytes()) == Some(one));
    assert!(!a.is_empty() && !b.is_empty(), "both topics get events");
    a.insert(a.len() / 2, "not json (first topic)".to_string());
    b.insert(b.len() / 2, "not json (second topic)".to_string());
    produce(&first, 1, &a);
    produce(&second, 1, &b);
    let dir = tempdir();
    let svc = Service::start(&name, &format!("{first},{second}"), &name, &dir, "run");
    svc.wait_ready(Duration::from_secs(20));
    svc.wait_for("every valid event applied", Duration::from_secs(30), |s| s.events_applied() >= lines.len() as f64);
    svc.wait_for("dead letters counted", Duration::from_secs(10), |s| s.metric("floodgate_dead_letter_total") >= 2.0);
    assert_eq!(svc.events_applied(), lines.len() as f64, "every valid event of both topics is applied once");
    let dead = read_topic(&format!("{name}.dlq"), Duration::from_secs(2));
    let sources: BTreeSet<(String, Vec<u8>)> =
        dead.iter().map(|r| (r.header("floodgate.source.topic").unwrap_or_default(), r.payload.clone())).collect();
    let expected: BTreeSet<(String, Vec<u8>)> =
        [(first.clone(), b"not json (first topic)".to_vec()), (second.clone(), b"not json (second topic)".to_vec())].into_iter().collect();
    assert_eq!(sources, expected, "each dead letter names its own source topic");
    let records = read_topic(&format!("{name}.sig"), Duration::from_secs(2));
    let run_onsets: BTreeSet<String> = records
        .iter()
        .filter(|r| r.header("ce_type").as_deref() == Some("floodgate.viral_onset"))
        .filter_map(|r| r.header("ce_id"))
        .collect();
    let replay_onsets = onset_ids(&replay_signals(&lines));
    assert!(!run_onsets.is_empty(), "the demo's viral campaigns are detected");
    assert!(run_onsets.is_subset(&replay_onsets), "run {run_onsets:?} against replay {replay_onsets:?}");
}

/// A log of many campaigns, some viral, for the group tests.
fn group_lines() -> Vec<String> {
    standard_lines(2_500)
}

fn assert_exactly_once(records: &[Record], expected: &[Signal]) {
    let on = onsets(records);
    for ((campaign, episode), ids) in &on {
        assert_eq!(ids.len(), 1, "{campaign} episode {episode} signalled with different ids: {ids:?}");
    }
    let got: BTreeSet<String> = on.keys().filter(|(_, e)| *e == 1).map(|(c, _)| c.clone()).collect();
    assert_eq!(got, viral_campaigns(expected), "viral campaigns signalled");
}

#[test]
fn kafka_two_instances_one_killed_mid_stream_and_replaced() {
    require_broker();
    let t0 = Instant::now();
    let name = unique("group");
    let input = format!("{name}.in");
    let lines = group_lines();
    let expected = replay_signals(&lines);
    assert!(viral_campaigns(&expected).len() >= 3, "the scenario has several viral campaigns");
    let half = lines.len() / 2;
    produce(&input, 3, &lines[..half]);
    let dir = tempdir();
    let a = Service::start(&name, &input, &name, &dir, "a");
    let mut b = Service::start(&name, &input, &name, &dir, "b");
    a.wait_for("both instances assigned", Duration::from_secs(30), |a| {
        a.metric("floodgate_partitions_assigned") >= 1.0 && b.metric("floodgate_partitions_assigned") >= 1.0
    });
    a.wait_for("the first half applied", Duration::from_secs(30), |a| a.events_applied() + b.events_applied() >= half as f64);
    b.kill9();
    produce(&input, 3, &lines[half..]);
    // Tansu 0.6 rebalances after the session timeout but keeps assigning the
    // dead member's partitions to it, so (as an orchestrator would) a
    // replacement instance joins; it rebuilds the partitions it gets from
    // their committed offsets.
    // The replacement joins once the dead member's session (6 s here) has
    // expired: a member joining while the dead one is still in its session
    // lets Tansu hand the dead member its partitions again.
    std::thread::sleep(Duration::from_secs(8));
    let c = Service::start(&name, &input, &name, &dir, "c");
    a.wait_for("all partitions owned by live instances", Duration::from_secs(40), |a| {
        a.metric("floodgate_partitions_assigned") + c.metric("floodgate_partitions_assigned") >= 3.0
    });
    a.wait_ready(Duration::from_secs(30));
    c.wait_ready(Duration::from_secs(30));
    let sig = format!("{name}.sig");
    let want = viral_campaigns(&expected);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = read_topic(&sig, Duration::from_secs(1));
    while Instant::now() < deadline {
        let got: BTreeSet<String> = onsets(&records).keys().map(|(c, _)| c.clone()).collect();
        if want.is_subset(&got) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        records = read_topic(&sig, Duration::from_secs(1));
    }
    assert_exactly_once(&records, &expected);
    eprintln!("two instances, one killed: {} signals in {:?}", records.len(), t0.elapsed());
}

#[test]
fn kafka_restart_does_not_duplicate_onsets() {
    require_broker();
    let t0 = Instant::now();
    let name = unique("restart");
    let input = format!("{name}.in");
    let lines = demo_lines(4);
    let expected = replay_signals(&lines);
    let thirds = [0, lines.len() / 3, 2 * lines.len() / 3, lines.len()];
    let dir = tempdir();
    produce(&input, 1, &lines[thirds[0]..thirds[1]]);
    // 1: consume a third, stop with SIGTERM (commit, leave the group).
    let mut s1 = Service::start(&name, &input, &name, &dir, "s1");
    s1.wait_for("first third applied", Duration::from_secs(30), |s| s.events_applied() >= thirds[1] as f64);
    s1.sigterm();
    assert!(s1.log_text().contains("shutdown: offsets committed"), "{}", s1.log_text());
    // 2: restart, consume the second third, die with kill -9 right away.
    produce(&input, 1, &lines[thirds[1]..thirds[2]]);
    let mut s2 = Service::start(&name, &input, &name, &dir, "s2");
    s2.wait_ready(Duration::from_secs(30));
    s2.wait_for("second third applied", Duration::from_secs(30), |s| s.events_applied() >= (thirds[2] - thirds[1]) as f64);
    s2.kill9();
    // 3: restart again and finish.
    produce(&input, 1, &lines[thirds[2]..]);
    let s3 = Service::start(&name, &input, &name, &dir, "s3");
    s3.wait_ready(Duration::from_secs(30));
    assert!(s3.log_text().contains("partition rebuilt"), "{}", s3.log_text());
    let records = read_topic(&format!("{name}.sig"), Duration::from_secs(3));
    assert_exactly_once(&records, &expected);
    // And the onsets are exactly replay's (same ids).
    let ids: BTreeSet<String> = onsets(&records).values().flatten().cloned().collect();
    assert_eq!(ids, onset_ids(&expected));
    // Every signal is one replay emits (repeats by id are allowed, new ids are not).
    let replay_ids: BTreeSet<String> = expected.iter().map(Signal::id).collect();
    for r in &records {
        assert!(replay_ids.contains(&r.header("ce_id").unwrap()), "unexpected signal {}", String::from_utf8_lossy(&r.payload));
    }
    eprintln!("restarts: {} signal records in {:?}", records.len(), t0.elapsed());
}

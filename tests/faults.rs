//! Broker faults, crash recovery, privacy and Kafka client security of
//! `floodgate run`, against real Tansu brokers (issue #7 items 4–6):
//!
//! * the memory broker of `scripts/kafka-up` on 127.0.0.1:9092 (these tests
//!   fail, never skip, without it), and
//! * for the broker restart, a durable broker of the test's own
//!   (`scripts/kafka-up --durable` on a free port, SQLite storage in a
//!   temporary directory), stopped for 30 s and started again.
//!
//! Reference signals: [`common::run_reference`] is the engine of `replay`
//! fed one partition's records in offset order without the end-of-input
//! flush — exactly what an uninterrupted `run` emits (idle-partition closes
//! are off: `kafka.idle_partition_timeout = 1h` in these tests).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use floodgate::signal::Signal;

/// Index of the first line after whose processing `run` has a signal to send.
fn first_signal_index(lines: &[String]) -> usize {
    (1..=lines.len())
        .find(|&n| {
            let prefix: Vec<Vec<u8>> = lines[..n].iter().map(|l| l.as_bytes().to_vec()).collect();
            !run_reference(&prefix).is_empty()
        })
        .expect("the log causes a signal")
        - 1
}

/// Onsets by (campaign, episode): each must have exactly one id.
fn assert_one_id_per_onset(records: &[Record]) {
    for ((campaign, episode), ids) in onsets(records) {
        assert_eq!(ids.len(), 1, "{campaign} episode {episode} signalled with different ids: {ids:?}");
    }
}

/// The signal topic's records, deduplicated by id, equal the reference,
/// record for record (ids and CloudEvents bodies).
fn assert_signals_equal(records: &[Record], reference: &[Signal]) {
    let got = dedup_by_id(records);
    let want = by_id(reference);
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "signals differ from the uninterrupted run: missing {missing:?}, extra {extra:?}");
    assert_eq!(got, want, "same ids, same CloudEvents bodies");
    // And by content: (type, subject, time) as a set.
    let content = |m: &BTreeMap<String, String>| -> BTreeSet<(String, String, String)> {
        m.values()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                (v["type"].as_str().unwrap().into(), v["subject"].as_str().unwrap().into(), v["time"].as_str().unwrap().into())
            })
            .collect()
    };
    assert_eq!(content(&got), content(&want));
}

#[test]
fn faults_signal_topic_unavailable_pauses_input_and_retries_in_order() {
    require_broker();
    let t0 = Instant::now();
    let name = unique("nosig");
    let (input, sig, dlq) = (format!("{name}.in"), format!("{name}.sig"), format!("{name}.dlq"));
    let lines = demo_lines(5);
    let k = first_signal_index(&lines);
    let split = (k + 2000).min(lines.len() - 1000);
    // The input and dead-letter topics exist, the signal topic does not, and
    // floodgate may not create it (kafka.create_topics = false).
    produce(&input, 1, &lines[..split]);
    create_topic(BROKER, &dlq, 1);
    let dir = tempdir();
    let opts = Opts::new(&name, &input, &name)
        .env("FLOODGATE_KAFKA__CREATE_TOPICS", "false")
        // Fail records for the missing topic after 1 s (default 30 s).
        .env("FLOODGATE_KAFKA__PROPERTIES__TOPIC_METADATA_PROPAGATION_MAX_MS", "1000");
    let svc = Service::start_with(&opts, &dir, "run");
    svc.wait_for("the output to be reported blocked", Duration::from_secs(30), |s| {
        s.get("/readyz").is_some_and(|(code, body)| code == 503 && body.contains("output blocked"))
    });
    // While blocked: more input arrives, but none of it is consumed, and no
    // offset at or past the first unsent signal's cause is committed.
    produce(&input, 1, &lines[split..]);
    let applied = svc.events_applied();
    assert!(applied < lines.len() as f64);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(400));
        let c = committed_offset(BROKER, &name, &input, 0).unwrap_or(0);
        assert!(c <= k as i64, "committed offset {c} is past the first unsent signal's cause (offset {k})");
        assert_eq!(svc.events_applied(), applied, "input consumed while the output is blocked");
    }
    assert!(svc.log_text().contains("output unavailable"), "{}", svc.log_text());
    // The topic appears: every signal arrives, in order, once.
    create_topic(BROKER, &sig, 1);
    svc.wait_for("every event applied", Duration::from_secs(60), |s| s.events_applied() >= lines.len() as f64);
    wait_until("the committed offset to reach the end", Duration::from_secs(30), || {
        committed_offset(BROKER, &name, &input, 0) == Some(lines.len() as i64)
    });
    svc.wait_ready(Duration::from_secs(10));
    let records = read_topic(&sig, Duration::from_secs(2));
    let reference = run_reference(&lines.iter().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>());
    assert_signals_equal(&records, &reference);
    assert_eq!(records.len(), reference.len(), "no signal sent twice");
    let order: Vec<String> = records.iter().map(|r| r.header("ce_id").unwrap()).collect();
    let want: Vec<String> = reference.iter().map(Signal::id).collect();
    assert_eq!(order, want, "signals on the topic in the order of the uninterrupted run");
    assert!(svc.log_text().contains("output recovered"), "{}", svc.log_text());
    eprintln!("signal topic unavailable: {} signals after recovery in {:?}", records.len(), t0.elapsed());
}

/// A log of 11 campaigns, 7 of them going viral (about 36 000 events).
fn group_lines() -> Vec<String> {
    standard_lines(500)
}

/// Per partition: the end offset of `input` (records read back).
fn end_offsets(input: &[Record]) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for r in input {
        let e = m.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    m
}

/// Waits until `group` has committed the end of every partition of `input`.
fn wait_committed_to_end(broker: &str, group: &str, topic: &str, ends: &BTreeMap<i32, i64>, timeout: Duration, svc: &Service) {
    let t0 = Instant::now();
    loop {
        let behind: Vec<(i32, Option<i64>, i64)> = ends
            .iter()
            .map(|(&p, &end)| (p, committed_offset(broker, group, topic, p), end))
            .filter(|(_, c, end)| *c != Some(*end))
            .collect();
        if behind.is_empty() {
            return;
        }
        if t0.elapsed() > timeout {
            panic!("not committed to the end after {timeout:?}: (partition, committed, end) {behind:?}; log:\n{}", svc.log_text());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Clicks per target of an uninterrupted run (engines per partition, summed).
fn reference_clicks(input: &[Record]) -> BTreeMap<String, u64> {
    let cfg = std::sync::Arc::new(floodgate::config::Config::default());
    let mut by_partition: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for r in input {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut clicks = BTreeMap::new();
    for (_, mut recs) in by_partition {
        recs.sort_by_key(|r| r.offset);
        let mut engine = floodgate::engine::Engine::new(&*cfg).unwrap().with_estimates(false);
        let mut out = Vec::new();
        for r in recs {
            if let Ok(ev) = floodgate::decode::decode(&r.payload) {
                let _ = engine.apply(&ev, &mut out);
            }
            if let Some(wm) = engine.natural_watermark() {
                engine.advance_to(wm, &mut out);
            }
        }
        for t in engine.targets() {
            *clicks.entry(t.target).or_insert(0) += t.clicks;
        }
    }
    clicks
}

/// Clicks per target of the running service (all its partition engines).
fn service_clicks(svc: &Service) -> BTreeMap<String, u64> {
    let (_, body) = svc.get("/api/campaigns").expect("/api/campaigns");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["targets"].as_array().unwrap().iter().map(|t| (t["target"].as_str().unwrap().to_string(), t["clicks"].as_u64().unwrap())).collect()
}

#[test]
fn faults_broker_restart_after_30s_loses_nothing_and_duplicates_no_onset() {
    let t0 = Instant::now();
    let broker = DurableBroker::start();
    let name = unique("brokerdown");
    let (input, sig) = (format!("{name}.in"), format!("{name}.sig"));
    let lines = group_lines();
    let n = lines.len();
    let (a, b) = (n / 3, 2 * n / 3);
    produce_to(&broker.addr, &input, 3, &lines[..a]);
    let dir = tempdir();
    let mut opts = Opts::new(&name, &input, &name);
    opts.broker = broker.addr.clone();
    let svc = Service::start_with(&opts, &dir, "run");
    svc.wait_ready(Duration::from_secs(30));
    svc.wait_for("the first third applied", Duration::from_secs(30), |s| s.events_applied() >= a as f64);
    // The second third is published, and the broker dies (SIGKILL) while
    // floodgate is still consuming it; it stays down for 30 s.
    produce_to(&broker.addr, &input, 3, &lines[a..b]);
    broker.down(true);
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    assert!(svc.get("/healthz").is_some_and(|(c, _)| c == 200), "the service survives the outage");
    broker.up();
    eprintln!("broker down for {:?}", down_at.elapsed());
    produce_to(&broker.addr, &input, 3, &lines[b..]);
    let records_in = read_topic_from(&broker.addr, &input, Duration::from_secs(5));
    assert_eq!(records_in.len(), n, "the durable broker kept every input record");
    let ends = end_offsets(&records_in);
    wait_committed_to_end(&broker.addr, &name, &input, &ends, Duration::from_secs(90), &svc);
    svc.wait_ready(Duration::from_secs(30));
    // Every event applied exactly once in the final state: clicks per target
    // equal the uninterrupted run's.
    svc.wait_for("the API view to settle", Duration::from_secs(10), |s| service_clicks(s) == reference_clicks(&records_in));
    let records = read_topic_from(&broker.addr, &sig, Duration::from_secs(5));
    let reference = run_reference_of_topic(&records_in);
    assert!(reference.iter().filter(|s| matches!(s, Signal::ViralOnset(_))).count() >= 3, "several viral campaigns");
    assert_signals_equal(&records, &reference);
    assert_one_id_per_onset(&records);
    let log = svc.log_text();
    assert!(log.contains("partition rebuilt"), "{log}");
    eprintln!(
        "broker restart: {} events, {} signal records ({} distinct), {} rebalances logged, in {:?}",
        n,
        records.len(),
        dedup_by_id(&records).len(),
        log.matches("rebalance: partition assigned").count(),
        t0.elapsed()
    );
}

/// Bad lines mixed into the kill -9 log: each must end up in the dead-letter topic.
fn bad_lines() -> Vec<String> {
    vec![
        "not json at all".to_string(),
        r#"{"type":"click","ts":"2026-03-02T08:30:00Z"}"#.to_string(),
        r#"{"type":"bounce","campaign":"c-0","ts":"2026-03-02T08:31:00Z"}"#.to_string(),
        r#"{"type":"send","campaign":"c-0","ts":"last tuesday","recipients":5,"target":"x"}"#.to_string(),
        r#"{"type":"forward","campaign":"c-1","ts":"2026-03-02T08:40:00Z","recipients":-3,"person":"p"}"#.to_string(),
    ]
}

#[test]
fn faults_kill9_at_random_points_matches_an_uninterrupted_run() {
    require_broker();
    let t0 = Instant::now();
    let seed: u64 = std::env::var("FLOODGATE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000);
    eprintln!("kill -9 test seed: {seed} (rerun with FLOODGATE_FAULT_SEED={seed})");
    let mut rng = floodgate::simulate::Rng::new(seed);
    let mut lines = group_lines();
    for bad in bad_lines() {
        let at = (rng.uniform() * lines.len() as f64) as usize;
        lines.insert(at, bad);
    }
    let name = unique("kill9");
    let (input, sig, dlq) = (format!("{name}.in"), format!("{name}.sig"), format!("{name}.dlq"));
    const CHUNKS: usize = 12;
    let chunk = lines.len().div_ceil(CHUNKS);
    // 2 or 3 kills, during distinct chunks, each once a random fraction of
    // the chunk is applied (while it is being consumed, signals in flight).
    let kills = 2 + (rng.uniform() * 2.0) as usize;
    let mut kill_after = BTreeSet::new();
    while kill_after.len() < kills {
        kill_after.insert(1 + (rng.uniform() * (CHUNKS - 2) as f64) as usize);
    }
    let fractions: Vec<f64> = (0..kills).map(|_| 0.05 + 0.9 * rng.uniform()).collect();
    eprintln!("kill -9 during chunks {kill_after:?} (of {CHUNKS}), once these fractions of them are applied: {fractions:.2?}");
    let dir = tempdir();
    create_topic(BROKER, &input, 3);
    let opts = Opts::new(&name, &input, &name);
    let mut svc = Service::start_with(&opts, &dir, "run-0");
    let mut restarts = 0;
    let owns_all = |s: &Service| s.metric("floodgate_partitions_assigned") >= 3.0 && s.get("/readyz").is_some_and(|(c, _)| c == 200);
    svc.wait_for("all partitions assigned", Duration::from_secs(30), owns_all);
    for (i, part) in lines.chunks(chunk).enumerate() {
        let base = svc.events_applied();
        let (topic, owned) = (input.clone(), part.to_vec());
        let producer = std::thread::spawn(move || produce(&topic, 3, &owned));
        if kill_after.contains(&i) {
            let target = base + fractions[restarts] * part.len() as f64;
            let t = Instant::now();
            while svc.events_applied() < target && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(2));
            }
            let applied = svc.events_applied();
            eprintln!("waited {:?} for {target} (base {base})", t.elapsed());
            svc.kill9();
            restarts += 1;
            eprintln!("kill -9 #{restarts} during chunk {i}: the instance had applied {applied} events");
            // The replacement starts once the dead member's session (6 s
            // here) has expired, as an orchestrator's restart delay would:
            // Tansu 0.6 hands a dead member its partitions again in a
            // rebalance that starts within its session (see README). It must
            // own every partition before the next kill.
            std::thread::sleep(Duration::from_secs(8));
            svc = Service::start_with(&opts, &dir, &format!("run-{restarts}"));
            svc.wait_for("the replacement to own every partition", Duration::from_secs(45), owns_all);
        }
        producer.join().expect("produce");
    }
    let records_in = read_topic(&input, Duration::from_secs(2));
    assert_eq!(records_in.len(), lines.len());
    let ends = end_offsets(&records_in);
    wait_committed_to_end(BROKER, &name, &input, &ends, Duration::from_secs(120), &svc);
    svc.wait_ready(Duration::from_secs(30));
    // Every good event applied (exactly once in the final state) ...
    svc.wait_for("the API view to settle", Duration::from_secs(10), |s| service_clicks(s) == reference_clicks(&records_in));
    // ... and every bad one dead-lettered (at least once; dedup by source offset).
    let bad: BTreeSet<(i32, i64)> =
        records_in.iter().filter(|r| floodgate::decode::decode(&r.payload).is_err()).map(|r| (r.partition, r.offset)).collect();
    assert_eq!(bad.len(), bad_lines().len());
    let dead = read_topic(&dlq, Duration::from_secs(2));
    let dead_at: BTreeSet<(i32, i64)> = dead
        .iter()
        .map(|r| {
            (
                r.header("floodgate.source.partition").unwrap().parse().unwrap(),
                r.header("floodgate.source.offset").unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(dead_at, bad, "every bad input record is in the dead-letter topic, nothing else");
    // Signals: the uninterrupted run's, by id and by content; one id per onset.
    let records = read_topic(&sig, Duration::from_secs(2));
    let reference = run_reference_of_topic(&records_in);
    assert!(reference.iter().filter(|s| matches!(s, Signal::ViralOnset(_))).count() >= 3, "several viral campaigns");
    assert_signals_equal(&records, &reference);
    assert_one_id_per_onset(&records);
    eprintln!(
        "kill -9 ×{restarts}: {} events, {} signal records ({} distinct), {} dead letters ({} distinct) in {:?}",
        lines.len(),
        records.len(),
        dedup_by_id(&records).len(),
        dead.len(),
        dead_at.len(),
        t0.elapsed()
    );
}

/// A recognisable person id: every `person`/`parent` in the log becomes one.
const PID: &str = "pid-q7x";

#[test]
fn faults_no_person_ids_in_logs_metrics_api_signals_or_dead_letter_headers() {
    require_broker();
    let name = unique("privacy");
    let (input, sig, dlq) = (format!("{name}.in"), format!("{name}.sig"), format!("{name}.dlq"));
    let mut lines: Vec<String> = demo_lines(6).into_iter().map(|l| l.replace("\"p-", &format!("\"{PID}-"))).collect();
    assert!(
        lines.iter().any(|l| l.contains(&format!("\"person\":\"{PID}")))
            && lines.iter().any(|l| l.contains(&format!("\"parent\":\"{PID}")))
    );
    // Bad lines with person ids where rejection details would quote them.
    let bad = [
        format!(r#"{{"type":"{PID}-in-type","campaign":"spring-sale","ts":"2026-03-02T08:30:00Z","person":"{PID}-1"}}"#),
        format!(r#"{{"type":"click","campaign":"spring-sale","ts":"{PID}-in-ts","person":"{PID}-2"}}"#),
        format!(r#"{{"type":"click","campaign":"spring-sale","ts":"2026-03-02T08:30:00Z","generation":"{PID}-in-generation"}}"#),
        r#"{"type":"forward","campaign":"spring-sale","ts":"2026-03-02T08:30:00Z","recipients":2,"person":98765432101}"#.to_string(),
    ];
    for (i, b) in bad.iter().enumerate() {
        lines.insert(1000 * (i + 1), b.clone());
    }
    produce(&input, 1, &lines);
    let dir = tempdir();
    let mut opts = Opts::new(&name, &input, &name);
    opts.log_level = "info,floodgate=debug".into();
    let svc = Service::start_with(&opts, &dir, "run");
    svc.wait_ready(Duration::from_secs(20));
    let good = lines.len() - bad.len();
    svc.wait_for("every event applied", Duration::from_secs(30), |s| s.events_applied() >= good as f64);
    svc.wait_for("dead letters", Duration::from_secs(10), |s| s.metric("floodgate_dead_letter_total") >= bad.len() as f64);
    std::thread::sleep(Duration::from_secs(2)); // a metrics/API refresh after the last event
    let secrets = [PID, "98765432101"];
    let mut places: Vec<(String, String)> = Vec::new();
    for path in ["/metrics", "/api/campaigns", "/readyz", "/healthz"] {
        let (_, body) = svc.get(path).unwrap();
        places.push((format!("GET {path}"), body));
    }
    let signals = read_topic(&sig, Duration::from_secs(2));
    assert!(!signals.is_empty());
    for r in &signals {
        places.push(("signal".into(), format!("{} {:?} {:?}", String::from_utf8_lossy(&r.payload), r.key, r.headers)));
    }
    let dead = read_topic(&dlq, Duration::from_secs(2));
    assert_eq!(dead.len(), bad.len());
    for r in &dead {
        let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v))).collect();
        places.push(("dead-letter headers and key".into(), format!("{headers:?} {:?}", r.key.as_deref().map(String::from_utf8_lossy))));
        // The payload is the original bytes: the one place person ids stay (documented).
        assert!(secrets.iter().any(|s| String::from_utf8_lossy(&r.payload).contains(s)));
    }
    places.push(("service log".into(), svc.log_text()));
    assert!(svc.log_text().contains("dead letter"), "the debug log covers dead letters");
    for (place, text) in &places {
        for s in secrets {
            assert!(
                !text.contains(s),
                "person id `{s}` found in {place}:\n{}",
                text.lines().filter(|l| l.contains(s)).take(3).collect::<Vec<_>>().join("\n")
            );
        }
    }
    // The running service's HTTP API is read-only.
    let port = svc.port;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, b"POST /api/campaigns HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}").unwrap();
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut resp);
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    // Header names are case-insensitive (RFC 9110 §5.1); hyper writes them in lower case.
    assert!(resp.to_ascii_lowercase().contains("\r\nallow: get, head\r\n"), "{resp}");
}

/// `floodgate run` with `extra` environment: its exit status and stderr
/// (it must stop by itself within 20 s).
fn run_failing(extra: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempdir();
    let log = dir.path().join("run.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_floodgate"));
    cmd.arg("run")
        .env("FLOODGATE_KAFKA__BROKERS", BROKER)
        .env("FLOODGATE_KAFKA__INPUT_TOPICS", unique("props"))
        .env("FLOODGATE_HTTP__LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("floodgate run did not stop on a bad property: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn faults_kafka_properties_reach_librdkafka() {
    require_broker();
    // Every `kafka.properties` entry is handed to librdkafka unchanged (this
    // is how SASL and TLS are configured): an invalid value stops `run` at
    // start with librdkafka's message naming the property.
    let (status, err) = run_failing(&[("FLOODGATE_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "bogus")]);
    assert!(!status.success());
    assert!(err.contains("security.protocol") && err.contains("bogus"), "{err}");
}

/// SASL/SCRAM-SHA-256 (the mechanism Tansu 0.6 offers; librdkafka is built
/// with OpenSSL for it): `run` configured only through `kafka.properties`
/// (env `FLOODGATE_KAFKA__PROPERTIES__*`) authenticates, consumes and
/// publishes; with a wrong password it is refused by the broker, takes
/// nothing, is not ready, and says why in its log.
#[test]
fn faults_sasl_scram_authenticates_and_a_wrong_password_is_refused() {
    let broker = DurableBroker::start();
    broker.create_scram_user("floodgate", "s3cret-pw");
    broker.down(false);
    broker.up_authenticated();
    let sasl = |password: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "floodgate"),
            ("sasl.password", password),
        ]
    };
    let name = unique("sasl");
    let (input, sig) = (format!("{name}.in"), format!("{name}.sig"));
    let lines = demo_lines(7);
    produce_with(&broker.addr, &sasl("s3cret-pw"), &input, 1, &lines);
    let env_of = |props: &[(&str, &str)]| -> Vec<(String, String)> {
        props.iter().map(|(k, v)| (format!("FLOODGATE_KAFKA__PROPERTIES__{}", k.replace('.', "_").to_uppercase()), v.to_string())).collect()
    };
    let dir = tempdir();

    // A wrong password: refused, nothing consumed, not ready, a clear log line.
    let mut bad = Opts::new(&name, &input, &format!("{name}-bad"));
    bad.broker = broker.addr.clone();
    bad.env = env_of(&sasl("wrong-pw"));
    let svc = Service::start_with(&bad, &dir, "run-bad");
    svc.wait_for("an authentication error in the log", Duration::from_secs(30), |s| s.log_text().to_lowercase().contains("authentication"));
    assert_eq!(svc.events_applied(), 0.0);
    assert!(svc.get("/readyz").is_some_and(|(c, _)| c == 503), "ready without authenticating");
    assert!(!svc.log_text().contains("wrong-pw"), "the password must not be logged");
    drop(svc);

    // The right one: every event applied, the uninterrupted run's signals published.
    let mut good = Opts::new(&name, &input, &name);
    good.broker = broker.addr.clone();
    good.env = env_of(&sasl("s3cret-pw"));
    let svc = Service::start_with(&good, &dir, "run-good");
    svc.wait_ready(Duration::from_secs(30));
    svc.wait_for("every event applied", Duration::from_secs(60), |s| s.events_applied() >= lines.len() as f64);
    let reference = run_reference(&lines.iter().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>());
    assert!(!reference.is_empty());
    let mut records = Vec::new();
    wait_until("the signals on the topic", Duration::from_secs(30), || {
        records = read_topic_with(&broker.addr, &sasl("s3cret-pw"), &sig, Duration::from_secs(2));
        records.len() >= reference.len()
    });
    assert_signals_equal(&records, &reference);
    // Without credentials the authenticated broker gives nothing away.
    let mut plain = Opts::new(&name, &input, &format!("{name}-plain"));
    plain.broker = broker.addr.clone();
    let svc = Service::start_with(&plain, &dir, "run-plain");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(svc.events_applied(), 0.0, "consumed from an authenticating broker without credentials");
    assert!(!svc.log_text().contains("s3cret-pw"));
}

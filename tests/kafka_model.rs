//! The model topic (`kafka.model_topic`) of `floodgate run` against the
//! real broker on 127.0.0.1:9092 (start it with `scripts/kafka-up`; without
//! it these tests fail, they are never skipped): an instance that learned a
//! target publishes its model at graceful shutdown, and an instance started
//! later on other input starts from it; bad records on the topic are
//! skipped and counted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use floodgate::engine::model_file::{LearnedModel, TargetRecord};
use floodgate::engine::Engine;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

#[path = "common/learning_log.rs"]
mod learning_log;

use learning_log::*;

/// [`learning_lines`] at [`START`].
fn log(seed: u64) -> Vec<String> {
    learning_lines(seed, START)
}

/// One send of target `web` and nothing else: the instance sees the target,
/// but no click of it.
fn one_send() -> Vec<String> {
    let ts = START + 30 * 24 * HOUR as i64;
    vec![format!(r#"{{"type":"send","campaign":"fresh","ts":{ts},"recipients":{RECIPIENTS},"target":"web"}}"#)]
}

/// `floodgate run` options for `input` with the model topic `model` and a
/// publish interval of `interval` (the tails of these campaigns leave gaps
/// of hours between events: the far-future guard is widened).
fn opts(prefix: &str, input: &str, group: &str, model: &str, interval: &str) -> Opts {
    Opts::new(prefix, input, group)
        .env("FLOODGATE_KAFKA__MODEL_TOPIC", model)
        .env("FLOODGATE_KAFKA__MODEL_PUBLISH_INTERVAL", interval)
        .env("FLOODGATE_ESTIMATOR__MAX_FUTURE", "1d")
}

/// The direct wave `/api/campaigns` shows for `target`, once it shows one.
fn api_wave(svc: &Service, target: &str) -> Option<Value> {
    let (status, body) = svc.get("/api/campaigns")?;
    if status != 200 && status != 503 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["targets"].as_array()?.iter().find(|t| t["target"] == target).map(|t| t["direct_wave"].clone()).filter(|w| !w.is_null())
}

/// (response median in s, click-through) an engine of this test's
/// configuration shows for `web` after loading `record`.
fn learned_from(record: &TargetRecord) -> (f64, f64) {
    let cfg = floodgate::config::Config::from_toml("[estimator]\nmax_future = \"1d\"\n").unwrap();
    let mut engine = Engine::new(cfg).unwrap();
    let mut m = LearnedModel::empty(record.bin_ms);
    m.targets.insert(record.target.clone(), record.model.clone());
    engine.load_model(&m).unwrap();
    let views = engine.learned_views();
    let web = views.iter().find(|v| v.target == "web").unwrap();
    (web.direct_wave.response_median_s, web.direct_wave.click_through)
}

fn within(got: f64, want: f64, rel: f64) -> bool {
    (got / want - 1.0).abs() < rel
}

/// Waits until `svc` shows a direct wave for `web` (it has applied the send).
fn wait_wave(svc: &Service) -> Value {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if let Some(w) = api_wave(svc, "web") {
            return w;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no direct wave of web in /api/campaigns; log:\n{}", svc.log_text());
}

/// Publishes raw records (`None` value: a tombstone) to `topic`, created first.
fn produce_raw(topic: &str, records: &[(&str, Option<Vec<u8>>)]) {
    create_topic(BROKER, topic, 1);
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", BROKER).create().unwrap();
    rt().block_on(async {
        for (key, value) in records {
            let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(*key);
            if let Some(v) = value {
                r = r.payload(v.as_slice());
            }
            producer.send(r, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
        }
    });
}

#[test]
fn kafka_a_new_instance_starts_from_what_another_published_at_shutdown() {
    require_broker();
    let t0 = Instant::now();
    let name = unique("model");
    let model_topic = format!("{name}.model");
    let dir = tempdir();

    // A learns `web` from eight campaigns; its interval (1 h) never comes, so
    // only the graceful shutdown publishes.
    let lines = log(5);
    let input_a = format!("{name}.a");
    produce(&input_a, 1, &lines);
    let mut a = Service::start_with(&opts(&name, &input_a, &format!("{name}.ga"), &model_topic, "1h"), &dir, "a");
    a.wait_ready(Duration::from_secs(30));
    a.wait_for("every event applied", Duration::from_secs(60), |s| s.events_applied() >= lines.len() as f64);
    a.wait_for("web learned", Duration::from_secs(20), |s| api_wave(s, "web").is_some_and(|w| w["delays"].as_f64() > Some(500.0)));
    assert_eq!(a.metric("floodgate_model_records_published_total"), 0.0, "nothing is published before the interval");
    a.sigterm();
    let a_log = a.log_text();
    assert!(a_log.contains("learned model published"), "{a_log}");
    assert!(!a_log.contains("could not create the model topic"), "{a_log}");

    // The topic holds web's record, keyed by the target.
    let records = read_topic(&model_topic, Duration::from_secs(2));
    let web: Vec<&Record> = records.iter().filter(|r| r.key.as_deref() == Some(b"web".as_slice())).collect();
    assert_eq!(web.len(), 1, "one record for web: {records:?}");
    let record = TargetRecord::from_json(&web[0].payload).expect("a valid target record");
    assert_eq!((record.target.as_str(), record.bin_ms), ("web", 60_000));
    let (median_s, click_through) = learned_from(&record);
    // Distinctive: the truth (3 h, 1 %), not the configured priors (30 min, 5 %).
    assert!(within(median_s, MEDIAN_MS / 1000.0, 0.3), "published median {median_s} s");
    assert!(within(click_through, CLICK_THROUGH, 0.3), "published click-through {click_through}");

    // B: another group on an input holding one send of web and nothing else.
    let input_b = format!("{name}.b");
    produce(&input_b, 1, &one_send());
    let b = Service::start_with(&opts(&name, &input_b, &format!("{name}.gb"), &model_topic, "1h"), &dir, "b");
    b.wait_for("the model topic read", Duration::from_secs(30), |s| s.metric("floodgate_model_targets_loaded") >= 1.0);
    let w = wait_wave(&b);
    assert_eq!(b.events_applied(), 1.0, "B saw one send of web and no click");
    let got_median = w["response_median_s"].as_f64().unwrap();
    let got_ct = w["click_through"].as_f64().unwrap();
    assert!(within(got_median, median_s, 0.01), "B's median {got_median} s vs A's {median_s} s");
    assert!(within(got_ct, click_through, 0.01), "B's click-through {got_ct} vs A's {click_through}");
    assert_eq!(b.metric("floodgate_model_records_rejected_total{"), 0.0);
    eprintln!("model topic: A learned web, B started from it in {:?}", t0.elapsed());
}

#[test]
fn kafka_bad_model_records_are_skipped_and_counted() {
    require_broker();
    let name = unique("badmodel");
    let model_topic = format!("{name}.model");
    // A good record of web, learned in-process from the log.
    let cfg = floodgate::config::Config::from_toml("[estimator]\nmax_future = \"1d\"\n").unwrap();
    let mut engine = Engine::new(cfg).unwrap();
    let data = log(7).join("\n");
    let _ = floodgate::replay::replay_bytes(data.as_bytes(), &mut engine);
    let learned = engine.learned_model();
    let good = TargetRecord::new(learned.bin_ms, "web", learned.targets["web"].clone());
    let (median_s, click_through) = learned_from(&good);
    assert!(within(click_through, CLICK_THROUGH, 0.3) && within(median_s, MEDIAN_MS / 1000.0, 0.3), "{median_s} s, {click_through}");
    let good_json = good.to_json();
    let wrong_version = good_json.replacen("\"version\":1", "\"version\":2", 1);
    assert_ne!(wrong_version, good_json);
    let other_bin = TargetRecord::new(300_000, "api", learned.targets["web"].clone()).to_json();
    let gone = TargetRecord::new(learned.bin_ms, "gone", learned.targets["web"].clone()).to_json();
    // The good record comes first: a reader that took the last record per
    // key without checking it would end with garbage for web.
    produce_raw(
        &model_topic,
        &[
            ("web", Some(good_json.into_bytes())),
            ("gone", Some(gone.into_bytes())),
            ("web", Some(b"not a model".to_vec())),
            ("web", Some(wrong_version.into_bytes())),
            ("api", Some(other_bin.into_bytes())),
            ("gone", None),
        ],
    );
    let dir = tempdir();
    let input = format!("{name}.in");
    produce(&input, 1, &one_send());
    let b = Service::start_with(&opts(&name, &input, &name, &model_topic, "1s"), &dir, "b");
    b.wait_for("the model topic read", Duration::from_secs(30), |s| s.metric("floodgate_model_records_rejected_total{") >= 3.0);
    let w = wait_wave(&b);
    assert_eq!(b.metric("floodgate_model_records_rejected_total{reason=\"json\"}"), 1.0);
    assert_eq!(b.metric("floodgate_model_records_rejected_total{reason=\"version\"}"), 1.0);
    assert_eq!(b.metric("floodgate_model_records_rejected_total{reason=\"bin\"}"), 1.0);
    assert_eq!(b.metric("floodgate_model_records_rejected_total{"), 3.0);
    assert_eq!(b.metric("floodgate_model_targets_loaded"), 1.0, "web only: api has another bin, gone was deleted");
    let log = b.log_text();
    assert_eq!(log.matches("model record skipped").count(), 3, "{log}");
    assert!(log.contains(&model_topic), "{log}");
    let got_median = w["response_median_s"].as_f64().unwrap();
    let got_ct = w["click_through"].as_f64().unwrap();
    assert!(within(got_median, median_s, 0.01), "B's median {got_median} s vs the record's {median_s} s");
    assert!(within(got_ct, click_through, 0.01), "B's click-through {got_ct} vs the record's {click_through}");

    // Published every second, but only what changed: B learned nothing
    // yet, so nothing is published (three intervals).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        assert_eq!(b.metric("floodgate_model_records_published_total"), 0.0, "web is unchanged: {}", b.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Eight more campaigns of web, later: B learns from them on top of
    // the record and publishes within an interval or two.
    let more = learning_lines(9, START + 31 * 24 * HOUR as i64);
    produce(&input, 1, &more);
    b.wait_for("the new campaigns applied", Duration::from_secs(60), |s| s.events_applied() >= (1 + more.len()) as f64);
    b.wait_for("web published", Duration::from_secs(20), |s| s.metric("floodgate_model_records_published_total") >= 1.0);
    let records = read_topic(&model_topic, Duration::from_secs(2));
    let last_web = records.iter().rfind(|r| r.key.as_deref() == Some(b"web".as_slice())).expect("web records");
    let published = TargetRecord::from_json(&last_web.payload).expect("B publishes valid records");
    assert!(
        published.model.direct.delays.observed > good.model.direct.delays.observed,
        "B's record learned on top of the loaded one: {} vs {}",
        published.model.direct.delays.observed,
        good.model.direct.delays.observed
    );
    // Only web changed: the skipped and deleted targets are not published.
    let count = |key: &[u8]| records.iter().filter(|r| r.key.as_deref() == Some(key)).count();
    assert_eq!((count(b"api"), count(b"gone")), (1, 2), "{records:?}");
}

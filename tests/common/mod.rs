//! Helpers for the Kafka integration tests: they run against the real broker
//! that `scripts/kafka-up` starts on 127.0.0.1:9092 and fail (never skip)
//! when it is not there.
#![allow(dead_code)]

pub mod prometheus;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

pub const BROKER: &str = "127.0.0.1:9092";

/// Panics with instructions when no broker answers.
pub fn require_broker() {
    let addr = BROKER.parse().unwrap();
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!("no Kafka broker on {BROKER}: run `scripts/kafka-up` first (these tests need a real broker; they are not skipped)");
    }
}

/// A topic/group name unique to this test run.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t-{name}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

pub fn kafka_cfg() -> floodgate::config::KafkaConfig {
    floodgate::config::KafkaConfig { brokers: BROKER.into(), ..Default::default() }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Creates `topic` with `partitions` and publishes `lines` (keyed by campaign).
pub fn produce(topic: &str, partitions: i32, lines: &[String]) {
    let cfg = kafka_cfg();
    let data = lines.join("\n");
    rt().block_on(async {
        floodgate::source::kafka::ensure_topic(&cfg, topic, partitions).await.expect("create topic");
        floodgate::source::kafka::produce_ndjson(&cfg, topic, data.as_bytes()).await.expect("produce");
    });
}

/// The demo scenario's log (three campaigns, two of them going viral).
pub fn demo_lines(seed: u64) -> Vec<String> {
    let start = floodgate::time::parse_rfc3339_ms("2026-03-02T08:00:00Z").unwrap();
    let spec = floodgate::simulate::demo_scenario(seed, start);
    floodgate::simulate::simulate(&spec).into_iter().map(|e| e.line).collect()
}

/// The simulator's standard scenario (seed 3: 11 campaigns, several going
/// viral) with every send capped at `max_recipients`, as NDJSON lines.
pub fn standard_lines(max_recipients: u64) -> Vec<String> {
    let start = floodgate::time::parse_rfc3339_ms("2026-03-02T08:00:00Z").unwrap();
    let mut spec = floodgate::simulate::standard_scenarios(3, start);
    for c in &mut spec.campaigns {
        c.recipients = c.recipients.min(max_recipients);
    }
    floodgate::simulate::simulate(&spec).into_iter().map(|e| e.line).collect()
}

/// Signals `replay` produces for `lines` with the default configuration.
pub fn replay_signals(lines: &[String]) -> Vec<floodgate::signal::Signal> {
    let cfg = floodgate::config::Config::default();
    let mut engine = floodgate::engine::Engine::new(cfg).unwrap();
    let data = lines.join("\n");
    floodgate::replay::replay_bytes(data.as_bytes(), &mut engine).0
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// How to start a `floodgate run` child process.
#[derive(Clone, Debug)]
pub struct Opts {
    pub prefix: String,
    pub input: String,
    pub group: String,
    pub broker: String,
    /// Extra lines of the `[kafka]` section.
    pub kafka_toml: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    pub log_level: String,
}

impl Opts {
    pub fn new(prefix: &str, input: &str, group: &str) -> Opts {
        Opts {
            prefix: prefix.into(),
            input: input.into(),
            group: group.into(),
            broker: BROKER.into(),
            kafka_toml: String::new(),
            env: Vec::new(),
            log_level: "info".into(),
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Opts {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// A `floodgate run` child process.
pub struct Service {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

impl Service {
    /// Starts `floodgate run` consuming `input` into `prefix.sig` / `prefix.dlq`.
    pub fn start(prefix: &str, input: &str, group: &str, dir: &Arc<tempfile::TempDir>, name: &str) -> Service {
        Service::start_with(&Opts::new(prefix, input, group), dir, name)
    }

    /// Starts `floodgate run` with the options `o`.
    pub fn start_with(o: &Opts, dir: &Arc<tempfile::TempDir>, name: &str) -> Service {
        let port = free_port();
        let log = dir.path().join(format!("{name}.log"));
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("[kafka]\nidle_partition_timeout = \"1h\"\ncommit_interval = \"200ms\"\nshutdown_timeout = \"5s\"\n{}", o.kafka_toml),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floodgate"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .env("FLOODGATE_KAFKA__BROKERS", &o.broker)
            .env("FLOODGATE_KAFKA__INPUT_TOPICS", &o.input)
            .env("FLOODGATE_KAFKA__SIGNAL_TOPIC", format!("{}.sig", o.prefix))
            .env("FLOODGATE_KAFKA__DEAD_LETTER_TOPIC", format!("{}.dlq", o.prefix))
            .env("FLOODGATE_KAFKA__GROUP", &o.group)
            .env("FLOODGATE_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("FLOODGATE_KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
            .env("FLOODGATE_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            // The model topic is off unless a test sets it (tests/kafka_model.rs):
            // `run` matches `replay` only when neither starts from a learned
            // model, and the default topic would carry models between tests.
            // (tests/kafka_service.rs also passed with `{prefix}.model` here.)
            .env("FLOODGATE_KAFKA__MODEL_TOPIC", "")
            // Instances of one test share their demand (each test its own
            // topic: the default one would mix targets of earlier tests).
            .env("FLOODGATE_KAFKA__DEMAND_TOPIC", format!("{}.demand", o.prefix))
            .env("RUST_LOG", &o.log_level)
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap());
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn floodgate run");
        Service { child, port, log, _dir: dir.clone() }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// Sum of a metric's samples whose line starts with `prefix`.
    pub fn metric(&self, prefix: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics") else { return 0.0 };
        body.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())).sum()
    }

    pub fn events_applied(&self) -> f64 {
        self.metric("floodgate_events_total{")
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Some((200, _)) = self.get("/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("service not ready within {timeout:?}; log:\n{}", self.log_text());
    }

    /// Waits until `f` holds, polling.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Service) -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sigterm(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("floodgate run did not stop on SIGTERM; log:\n{}", self.log_text());
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// A record read back from a topic.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Record {
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers.get(k).map(|v| String::from_utf8_lossy(v).into_owned())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap()
    }
}

/// Reads every record of `topic` (all partitions, from the start) until
/// nothing new arrives for `quiet`.
pub fn read_topic(topic: &str, quiet: Duration) -> Vec<Record> {
    read_topic_from(BROKER, topic, quiet)
}

/// [`read_topic`] on the broker at `broker`.
pub fn read_topic_from(broker: &str, topic: &str, quiet: Duration) -> Vec<Record> {
    read_topic_with(broker, &[], topic, quiet)
}

/// [`read_topic_from`] with extra librdkafka `properties` (e.g. SASL).
pub fn read_topic_with(broker: &str, properties: &[(&str, &str)], topic: &str, quiet: Duration) -> Vec<Record> {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", broker).set("group.id", unique("reader")).set("enable.auto.commit", "false");
    for (k, v) in properties {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts = md.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for x in h.iter() {
                        headers.insert(x.key.to_string(), x.value.unwrap_or_default().to_vec());
                    }
                }
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
                last = Instant::now();
            }
        }
    }
    out
}

/// (campaign, episode) → distinct onset ids seen.
pub fn onsets(records: &[Record]) -> BTreeMap<(String, u64), std::collections::BTreeSet<String>> {
    let mut m: BTreeMap<(String, u64), std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in records {
        let v = r.json();
        if v["type"] == "floodgate.viral_onset" {
            let campaign = v["subject"].as_str().unwrap().to_string();
            let episode = v["data"]["episode"].as_u64().unwrap();
            m.entry((campaign, episode)).or_default().insert(v["id"].as_str().unwrap().to_string());
        }
    }
    m
}

pub fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().unwrap())
}

/// [`produce`] to the broker at `broker`.
pub fn produce_to(broker: &str, topic: &str, partitions: i32, lines: &[String]) {
    produce_with(broker, &[], topic, partitions, lines)
}

/// [`produce_to`] with extra librdkafka `properties` (e.g. SASL).
pub fn produce_with(broker: &str, properties: &[(&str, &str)], topic: &str, partitions: i32, lines: &[String]) {
    let cfg = floodgate::config::KafkaConfig {
        brokers: broker.into(),
        properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let data = lines.join("\n");
    rt().block_on(async {
        floodgate::source::kafka::ensure_topic(&cfg, topic, partitions).await.expect("create topic");
        floodgate::source::kafka::produce_ndjson(&cfg, topic, data.as_bytes()).await.expect("produce");
    });
}

/// Creates `topic` (if missing) on `broker`.
pub fn create_topic(broker: &str, topic: &str, partitions: i32) {
    let cfg = floodgate::config::KafkaConfig { brokers: broker.into(), ..Default::default() };
    rt().block_on(floodgate::source::kafka::ensure_topic(&cfg, topic, partitions)).expect("create topic");
}

/// The committed offset of `group` for `topic`/`partition` (`None`: nothing committed).
/// The reader is leaked on purpose (dropping a consumer after `committed()` can hang).
pub fn committed_offset(broker: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let r = consumer.committed_offsets(tpl, Duration::from_secs(10));
    std::mem::forget(consumer);
    match r.ok()?.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// The signals `floodgate run` emits for one partition holding `lines` in
/// this order, without interruption: the engine of `replay`, but windows
/// still open at the end are *not* flushed (`run` never flushes), and no
/// estimates (no estimate topic). Dead letters (bad lines) have no effect.
pub fn run_reference(lines: &[Vec<u8>]) -> Vec<floodgate::signal::Signal> {
    let cfg = floodgate::config::Config::default();
    let mut engine = floodgate::engine::Engine::new(cfg).unwrap().with_estimates(false);
    let mut out = Vec::new();
    for line in lines {
        if let Ok(ev) = floodgate::decode::decode(line) {
            let _ = engine.apply(&ev, &mut out);
        }
        if let Some(wm) = engine.natural_watermark() {
            engine.advance_to(wm, &mut out);
        }
    }
    out.retain(|s| !matches!(s, floodgate::signal::Signal::Estimate(_)));
    out
}

/// [`run_reference`] per partition of the input topic as it is on the
/// broker (records by partition, in offset order), all partitions together.
pub fn run_reference_of_topic(input: &[Record]) -> Vec<floodgate::signal::Signal> {
    let mut by_partition: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for r in input {
        by_partition.entry(r.partition).or_default().push((r.offset, r.payload.clone()));
    }
    let mut all = Vec::new();
    for (_, mut recs) in by_partition {
        recs.sort_by_key(|(o, _)| *o);
        recs.dedup_by_key(|(o, _)| *o);
        let lines: Vec<Vec<u8>> = recs.into_iter().map(|(_, p)| p).collect();
        all.extend(run_reference(&lines));
    }
    all
}

/// Signal records deduplicated by CloudEvents id: id → payload. Panics if
/// one id carries two different payloads.
pub fn dedup_by_id(records: &[Record]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for r in records {
        let id = r.header("ce_id").expect("ce_id header");
        let body = String::from_utf8(r.payload.clone()).unwrap();
        if let Some(prev) = m.insert(id.clone(), body.clone()) {
            assert_eq!(prev, body, "one id, two payloads");
        }
    }
    m
}

/// Reference signals as id → CloudEvents JSON (the default `output.source`).
pub fn by_id(signals: &[floodgate::signal::Signal]) -> BTreeMap<String, String> {
    let source = floodgate::config::Config::default().output.source;
    signals.iter().map(|s| (s.id(), s.to_cloudevent(&source))).collect()
}

/// Polls `f` every 200 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A durable Tansu broker of its own (SQLite storage in a temporary
/// directory, a free port), started and stopped with `scripts/kafka-up
/// --durable` / `scripts/kafka-down`. Stopped on drop.
pub struct DurableBroker {
    pub port: u16,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl DurableBroker {
    pub fn start() -> DurableBroker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let b = DurableBroker { port, addr: format!("127.0.0.1:{port}"), dir };
        b.up();
        b
    }

    fn script(&self, name: &str) -> Command {
        let mut c = Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name));
        c.env("FLOODGATE_KAFKA_STATE", self.dir.path().join("state")).arg("--port").arg(self.port.to_string());
        c
    }

    /// Starts the broker (again) on the same data; returns once it answers.
    pub fn up(&self) {
        let out = self
            .script("kafka-up")
            .arg("--durable")
            .arg("--data")
            .arg(self.dir.path().join("data"))
            .output()
            .expect("run scripts/kafka-up");
        assert!(
            out.status.success(),
            "scripts/kafka-up --durable failed (it needs the Tansu binary with the libsql feature; run `scripts/kafka-up --install-only`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the broker (again) on the same data, requiring SASL/SCRAM
    /// authentication of every client.
    pub fn up_authenticated(&self) {
        let out = self
            .script("kafka-up")
            .arg("--durable")
            .arg("--authentication")
            .arg("--data")
            .arg(self.dir.path().join("data"))
            .output()
            .expect("run scripts/kafka-up");
        assert!(out.status.success(), "scripts/kafka-up --durable --authentication failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Creates a SCRAM-SHA-256 user with the Tansu CLI (on a broker that
    /// does not require authentication yet: Tansu 0.6 has no other way to
    /// create the first user).
    pub fn create_scram_user(&self, name: &str, password: &str) {
        let cache = std::env::var("FLOODGATE_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache").join("floodgate"));
        let tansu = cache.join("tansu-0.6.0").join("bin").join("tansu");
        let out = Command::new(&tansu)
            .args(["user", "create", "--mechanism", "scram256", "--broker"])
            .arg(format!("tcp://{}", self.addr))
            .args([name, password])
            .output()
            .unwrap_or_else(|e| panic!("run {} (scripts/kafka-up --install-only builds it): {e}", tansu.display()));
        assert!(out.status.success(), "tansu user create failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the broker: SIGKILL (a crash) if `kill`, else SIGTERM.
    pub fn down(&self, kill: bool) {
        let mut c = self.script("kafka-down");
        if kill {
            c.arg("--kill");
        }
        let out = c.output().expect("run scripts/kafka-down");
        assert!(out.status.success(), "scripts/kafka-down failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state").join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        let _ = self.script("kafka-down").arg("--kill").output();
    }
}

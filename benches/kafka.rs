//! Kafka end to end: `floodgate run` against the local broker, compared in the
//! same run with a bare rdkafka consumer that only counts the same topic's
//! messages (the floor any consumer pays).
//!
//! One topic with one partition receives the simulated log (default 1 000 000
//! events, `FLOODGATE_BENCH_KAFKA_EVENTS`). Then, one after the other:
//! 1. a bare `BaseConsumer` (same librdkafka settings as floodgate's, fresh
//!    group, from the earliest offset) polls and counts every message;
//! 2. `floodgate run` (the release binary) consumes it in a fresh group; its
//!    progress is read from `floodgate_events_total` on `/metrics`.
//!
//! Both are timed from their first consumed event to the last (start-up and
//! the group join are excluded); CPU is the process's user + system time over
//! the same span (`/proc/<pid>/stat`, all threads). Reported: events/s,
//! events per consumer CPU-second, and floodgate's rate as a fraction of the
//! bare consumer's.
//!
//! Needs the broker of `scripts/kafka-up` on `FLOODGATE_BENCH_BROKERS`
//! (default 127.0.0.1:9092); without it, says so and records
//! `"status":"broker not running"`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use floodgate::config::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

mod common;

/// CPU seconds (user + system, all threads) of process `pid` so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after `)`.
    // Clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn events_total(port: u16) -> Option<f64> {
    let body = http_get(port, "/metrics")?;
    Some(
        body.lines()
            // Every consumed message is counted once: applied, a duplicate,
            // late, or rejected.
            .filter(|l| {
                l.starts_with("floodgate_events_total{")
                    || l.starts_with("floodgate_events_duplicate_total ")
                    || l.starts_with("floodgate_events_late_total ")
                    || l.starts_with("floodgate_events_rejected_total{")
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum(),
    )
}

struct Run {
    events: u64,
    secs: f64,
    cpu: f64,
}

impl Run {
    fn json(&self) -> String {
        format!(
            r#"{{"events":{},"seconds":{},"cpu_seconds":{},"events_per_s":{},"events_per_cpu_s":{}}}"#,
            self.events,
            self.secs,
            self.cpu,
            self.events as f64 / self.secs,
            self.events as f64 / self.cpu.max(0.01)
        )
    }
}

fn bare_consumer(brokers: &str, topic: &str, n: u64) -> Run {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("bare consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let pid = std::process::id();
    let mut count = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut t0, mut c0) = (Instant::now(), 0.0);
    while count < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                if count == 0 {
                    t0 = Instant::now();
                    c0 = cpu_secs(pid);
                }
                count += 1;
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    Run { events: count, secs: t0.elapsed().as_secs_f64(), cpu: cpu_secs(pid) - c0 }
}

fn floodgate_run(brokers: &str, topic: &str, n: u64) -> Result<Run, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let log = common::out_dir().join("kafka-run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .arg("run")
        .env("FLOODGATE_KAFKA__BROKERS", brokers)
        .env("FLOODGATE_KAFKA__INPUT_TOPICS", topic)
        .env("FLOODGATE_KAFKA__SIGNAL_TOPIC", format!("{topic}.sig"))
        .env("FLOODGATE_KAFKA__DEAD_LETTER_TOPIC", format!("{topic}.dlq"))
        .env("FLOODGATE_KAFKA__GROUP", format!("{topic}.floodgate"))
        .env("FLOODGATE_KAFKA__IDLE_PARTITION_TIMEOUT", "1h")
        .env("FLOODGATE_LIMITS__MAX_CAMPAIGNS", "100000")
        .env("FLOODGATE_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start floodgate run: {e}"))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, f64, f64)> = None;
    let result = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("floodgate run exited ({status}); see {}", log.display()));
        }
        if Instant::now() > deadline {
            break Err(format!("floodgate run did not consume {n} events in time; see {}", log.display()));
        }
        let seen = events_total(port).unwrap_or(0.0);
        if seen > 0.0 && first.is_none() {
            first = Some((Instant::now(), cpu_secs(pid), seen));
        }
        if seen >= n as f64 {
            let (t0, c0, e0) = first.unwrap_or((Instant::now(), cpu_secs(pid), 0.0));
            break Ok(Run { events: (seen - e0) as u64, secs: t0.elapsed().as_secs_f64(), cpu: cpu_secs(pid) - c0 });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let stop = Instant::now();
    while stop.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !args.is_empty() && !args.iter().any(|a| "kafka".contains(a.as_str())) {
        return;
    }
    let brokers = std::env::var("FLOODGATE_BENCH_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let reachable = brokers
        .split(',')
        .filter_map(|b| std::net::ToSocketAddrs::to_socket_addrs(b).ok().and_then(|mut a| a.next()))
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !reachable {
        println!("kafka: broker not running on {brokers} (start one with scripts/kafka-up); skipped");
        common::write_result("kafka", r#"{"status":"broker not running"}"#);
        return;
    }
    let n: u64 = std::env::var("FLOODGATE_BENCH_KAFKA_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let (path, lines) = common::big_log(n);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() % 1_000_000_000);
    let topic = format!("bench-{}-{nanos}", std::process::id());
    let cfg = KafkaConfig { brokers: brokers.clone(), ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let t = Instant::now();
    rt.block_on(async {
        floodgate::source::kafka::ensure_topic(&cfg, &topic, 1).await.expect("create topic");
        let f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&path).expect("open log"));
        floodgate::source::kafka::produce_ndjson(&cfg, &topic, f).await.expect("produce");
    });
    eprintln!("produced {lines} events to {topic} in {:.1} s", t.elapsed().as_secs_f64());

    let bare = bare_consumer(&brokers, &topic, lines);
    println!(
        "bare rdkafka consumer: {} events in {:.2} s: {:.0} events/s, {:.0} events per CPU-second",
        bare.events,
        bare.secs,
        bare.events as f64 / bare.secs,
        bare.events as f64 / bare.cpu.max(0.01)
    );
    match floodgate_run(&brokers, &topic, lines) {
        Ok(run) => {
            let ratio = (run.events as f64 / run.secs) / (bare.events as f64 / bare.secs);
            println!(
                "floodgate run: {} events in {:.2} s: {:.0} events/s, {:.0} events per CPU-second; {ratio:.2} × the bare consumer",
                run.events,
                run.secs,
                run.events as f64 / run.secs,
                run.events as f64 / run.cpu.max(0.01)
            );
            common::write_result(
                "kafka",
                &format!(r#"{{"status":"ok","topic":"{topic}","bare":{},"floodgate":{},"ratio":{ratio}}}"#, bare.json(), run.json()),
            );
        }
        Err(e) => {
            println!("floodgate run: {e}");
            common::write_result("kafka", &format!(r#"{{"status":"floodgate run failed","bare":{}}}"#, bare.json()));
        }
    }
}

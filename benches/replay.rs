//! End-to-end replay: a simulated NDJSON log of at least 5 million events
//! (generated once into `target/bench/`), read from the file, decoded, applied,
//! and every signal written as CloudEvents JSON to a sink — what
//! `floodgate replay FILE > /dev/null` does, without `--estimates`.
//!
//! `cargo bench --bench replay` runs it three times and reports events/s of
//! the fastest run (the machine is shared; the fastest run is the least
//! disturbed). `scripts/bench` also times the release binary on the same file.
//!
//! Environment: `FLOODGATE_BENCH_EVENTS` (default 5000000) sets the log size;
//! `FLOODGATE_BENCH_RUNS` (default 3) the number of runs. `scripts/bench` runs
//! this binary under callgrind on a smaller log to count instructions per event.

use std::fs::File;
use std::io::{BufReader, Write};
use std::time::Instant;

use floodgate::engine::Engine;
use floodgate::replay::replay;
use floodgate::signal::Signal;

mod common;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not match skips us.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !args.is_empty() && !args.iter().any(|a| "replay".contains(a.as_str())) {
        return;
    }
    let min_events = env_u64("FLOODGATE_BENCH_EVENTS", 5_000_000);
    let runs = env_u64("FLOODGATE_BENCH_RUNS", 3).max(1);
    let (path, lines) = common::big_log(min_events);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut best = f64::INFINITY;
    let mut signals = 0u64;
    for run in 0..runs {
        let cfg = common::config(100_000);
        let source = cfg.output.source.clone();
        let mut engine = Engine::new(cfg).expect("engine");
        let input = BufReader::with_capacity(1 << 16, File::open(&path).expect("open log"));
        let mut sink = std::io::sink();
        let mut line = String::with_capacity(512);
        let t = Instant::now();
        let report = replay(
            input,
            &mut engine,
            |s: &Signal| {
                line.clear();
                s.write_cloudevent(&source, &mut line);
                line.push('\n');
                sink.write_all(line.as_bytes())
            },
            |_| {},
        )
        .expect("replay");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.lines, lines);
        signals = report.signals;
        eprintln!("run {run}: {lines} events in {secs:.3} s = {:.0} events/s ({} signals)", lines as f64 / secs, report.signals);
        best = best.min(secs);
    }
    let eps = lines as f64 / best;
    println!(
        "replay: {lines} events ({:.0} MB) in {best:.3} s: {eps:.0} events/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / best
    );
    common::write_result(
        &format!("replay-{min_events}"),
        &format!(r#"{{"events":{lines},"bytes":{bytes},"seconds":{best},"events_per_s":{eps},"signals":{signals}}}"#),
    );
}

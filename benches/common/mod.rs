//! Shared by the benchmark binaries: the large simulated log, the bench
//! configuration and the JSON result files `scripts/bench` turns into the
//! README table. Not every bench uses every helper.
#![allow(dead_code)]

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use floodgate::config::Config;
use floodgate::simulate::{simulate, CampaignSpec, SimSpec};

/// 2026-03-02T08:00:00Z.
pub const START: i64 = 1_772_438_400_000;
const MINUTE: i64 = 60_000;

/// Where results and generated data go (never committed).
pub fn out_dir() -> PathBuf {
    let dir = std::env::var_os("FLOODGATE_BENCH_DIR").map_or_else(|| target_dir().join("bench"), PathBuf::from);
    fs::create_dir_all(&dir).expect("create bench dir");
    dir
}

fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// Writes `target/bench/<name>.json` for `scripts/bench`.
pub fn write_result(name: &str, json: &str) {
    let path = out_dir().join(format!("{name}.json"));
    fs::write(&path, json).expect("write result");
    eprintln!("wrote {}", path.display());
}

/// The default configuration with room for `campaigns` campaigns.
pub fn config(campaigns: u32) -> Config {
    Config::from_toml(&format!("[limits]\nmax_campaigns = {campaigns}\n")).expect("bench config")
}

/// One group of concurrent mailings: `n` campaigns sent 15 s apart, R cycling
/// from 0.3 to 1.5, 20 000 recipients each, logs of 3 h. Groups are placed one
/// after the other in time so that concatenating them keeps the log ordered.
pub fn group_spec(seed: u64, group: usize, n: usize) -> SimSpec {
    const RS: [f64; 7] = [0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5];
    let group_start = START + group as i64 * 5 * 60 * MINUTE;
    let campaigns = (0..n)
        .map(|i| {
            let r = RS[(i + group) % RS.len()];
            CampaignSpec {
                campaign: format!("mailing-{group}-{i}"),
                target: format!("web-{}", i % 8),
                audience: None,
                start_ms: group_start + i as i64 * 15_000,
                recipients: if r >= 1.3 { 8_000 } else { 20_000 },
                click_through: 0.05,
                r,
                r_after: None,
                jump_after_ms: None,
                addressees: 4.0,
                forward_click_through: 0.35,
                duration_ms: 180 * MINUTE,
                lognormal: None,
            }
        })
        .collect();
    SimSpec { seed: seed + group as u64, campaigns, duplicate_rate: 0.001 }
}

/// Simulated NDJSON log of exactly `min_events` events (groups of 100
/// concurrent campaigns; the last group is cut short), cached under
/// `target/bench/`. Returns the path and the number of lines.
pub fn big_log(min_events: u64) -> (PathBuf, u64) {
    let path = out_dir().join(format!("sim-{min_events}.ndjson"));
    let count_path = path.with_extension("count");
    if let (true, Ok(n)) = (path.exists(), fs::read_to_string(&count_path)) {
        if let Ok(n) = n.trim().parse() {
            return (path, n);
        }
    }
    eprintln!("generating {} (≥ {min_events} events)…", path.display());
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(&tmp).expect("create log"));
    let mut n = 0u64;
    let mut group = 0;
    while n < min_events {
        for e in simulate(&group_spec(7, group, 100)).into_iter().take((min_events - n) as usize) {
            w.write_all(e.line.as_bytes()).expect("write log");
            w.write_all(b"\n").expect("write log");
            n += 1;
        }
        group += 1;
    }
    w.flush().expect("flush log");
    drop(w);
    fs::rename(&tmp, &path).expect("rename log");
    fs::write(&count_path, n.to_string()).expect("write count");
    (path, n)
}

/// The machine, for the result files.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// The NDJSON lines of group `group` of the big log.
pub fn simulate_group_lines(group: usize) -> Vec<String> {
    simulate(&group_spec(7, group, 100)).into_iter().map(|e| e.line).collect()
}

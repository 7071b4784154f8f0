//! `floodgate replay --threads N` gives the `--threads 1` output byte for
//! byte: signals (estimates included), stderr (rejected lines with their
//! line numbers and byte offsets, the summary) and `--stats`, on the standard
//! scenario, the shipped example and a messy log, from a file and from stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_floodgate"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Everything a replay writes.
#[derive(Debug, PartialEq)]
struct Outputs {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stats: Vec<u8>,
}

/// `floodgate replay LOG --estimates --stats … --max-errors 1000 --threads N`
/// (`LOG` = `-`: the bytes of `stdin`).
fn replay(log: &Path, threads: u32, stdin: Option<&[u8]>) -> Outputs {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("stats.json");
    let mut child = bin()
        .arg("replay")
        .arg(log)
        .args(["--estimates", "--max-errors", "1000", "--threads", &threads.to_string(), "--stats"])
        .arg(&stats)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floodgate");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.unwrap_or_default().to_vec();
    // Written from another thread: the child writes its output while it
    // reads, and would block on a full stdout pipe otherwise.
    let writer = std::thread::spawn(move || input.write_all(&bytes));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread").expect("write stdin");
    assert!(out.status.success(), "--threads {threads}: {}", String::from_utf8_lossy(&out.stderr));
    Outputs { stdout: out.stdout, stderr: out.stderr, stats: std::fs::read(&stats).expect("stats written") }
}

/// The one-thread output, then the same for 2 and 3 threads.
fn same_for_every_thread_count(log: &Path) -> Outputs {
    let one = replay(log, 1, None);
    for threads in [2, 3] {
        let many = replay(log, threads, None);
        assert!(many.stdout == one.stdout, "{}: signals differ with --threads {threads}", log.display());
        assert_eq!(String::from_utf8_lossy(&many.stderr), String::from_utf8_lossy(&one.stderr), "--threads {threads}");
        assert_eq!(String::from_utf8_lossy(&many.stats), String::from_utf8_lossy(&one.stats), "--threads {threads}");
    }
    one
}

#[test]
fn the_standard_scenario_replays_the_same_on_every_thread_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("standard.ndjson");
    let sim = bin().args(["simulate", "--scenario", "standard", "--seed", "1"]).output().expect("simulate");
    assert!(sim.status.success());
    std::fs::write(&log, &sim.stdout).expect("write log");
    let one = same_for_every_thread_count(&log);
    let stdout = String::from_utf8_lossy(&one.stdout);
    for kind in ["floodgate.estimate", "floodgate.viral_onset", "floodgate.scale_ahead"] {
        assert!(stdout.contains(kind), "the comparison covers {kind}");
    }
    // From stdin too (the reader thread reads a pipe).
    let piped = replay(Path::new("-"), 2, Some(&sim.stdout));
    assert!(piped.stdout == one.stdout, "stdin, --threads 2: signals differ");
}

#[test]
fn the_shipped_example_replays_the_same_on_every_thread_count() {
    let one = same_for_every_thread_count(&repo("examples/viral-mailing.ndjson"));
    assert!(String::from_utf8_lossy(&one.stdout).contains("floodgate.viral_onset"));
}

/// Duplicates, undecodable lines, a line over `limits.max_event_bytes`,
/// blank and CRLF lines, a lone far-future line (rejected), two agreeing
/// far-future lines (a confirmed jump, applied), late lines after it, and a
/// last line without a newline.
#[test]
fn a_messy_log_replays_the_same_on_every_thread_count() {
    let sim = bin().args(["simulate", "--seed", "2"]).output().expect("simulate");
    assert!(sim.status.success());
    let lines: Vec<&[u8]> = sim.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let n = lines.len();
    assert!(n > 1000, "{n} simulated lines");
    let mut data = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        data.extend_from_slice(line);
        data.extend_from_slice(if i % 13 == 0 { b"\r\n" } else { b"\n" });
        if i % 89 == 0 {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        if i % 401 == 0 {
            data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\n\n   \n");
            data.extend_from_slice(format!("{{\"type\":\"click\",\"campaign\":\"c\",\"pad\":\"{}\"}}\n", "x".repeat(70_000)).as_bytes());
        }
        if i == n / 3 {
            data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"clock\",\"ts\":\"2027-01-01T00:00:00Z\"}\n");
        }
        if i == n - 20 {
            data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"jump\",\"ts\":\"2026-03-09T00:00:00Z\"}\n");
            data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"jump\",\"ts\":\"2026-03-09T00:00:01Z\"}\n");
        }
    }
    data.extend_from_slice(br#"{"type":"click","campaign":"last","ts":"2026-03-09T00:00:02Z"}"#);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("messy.ndjson");
    std::fs::write(&log, &data).expect("write log");
    let one = same_for_every_thread_count(&log);
    let stderr = String::from_utf8_lossy(&one.stderr);
    for reason in ["[future]", "[json]", "[too_large]"] {
        assert!(stderr.contains(reason), "the comparison covers {reason}: {stderr}");
    }
    let stats: serde_json::Value = serde_json::from_slice(&one.stats).expect("stats are JSON");
    for counter in ["duplicates", "late"] {
        assert!(stats[counter].as_u64().is_some_and(|c| c > 0), "{counter} in {stats}");
    }
    assert_eq!(stats["rejected_by_reason"]["future"].as_u64(), Some(1), "only the lone far-future line: the jump is confirmed");
}

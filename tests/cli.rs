//! End-to-end tests of the `floodgate` binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_floodgate"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn floodgate");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[test]
fn replay_of_the_shipped_example_emits_cloudevents_and_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("stats.json");
    let example = repo("examples/viral-mailing.ndjson");
    let out = bin()
        .arg("replay")
        .arg(&example)
        .arg("--config")
        .arg(repo("examples/floodgate.toml"))
        .arg("--stats")
        .arg(&stats)
        .output()
        .expect("run replay");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let signals: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    assert!(!signals.is_empty());
    for s in &signals {
        for key in ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"] {
            assert!(s.get(key).is_some(), "CloudEvent without {key}: {s}");
        }
        assert_eq!(s["specversion"], "1.0");
        assert_eq!(s["id"].as_str().map(str::len), Some(32));
    }
    let onsets: Vec<&str> = signals.iter().filter(|s| s["type"] == "floodgate.viral_onset").filter_map(|s| s["subject"].as_str()).collect();
    assert!(onsets.contains(&"spring-sale"), "{onsets:?}");
    assert!(onsets.contains(&"webinar-invite"), "{onsets:?}");
    assert!(!onsets.contains(&"weekly-newsletter"), "{onsets:?}");

    // A scale_ahead for each send's target at the send, before its first click.
    let log = std::fs::read_to_string(&example).expect("example");
    let events: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    for send in events.iter().filter(|e| e["type"] == "send") {
        let campaign = send["campaign"].as_str().expect("campaign");
        let target = send["target"].as_str().expect("target");
        let first_click = events
            .iter()
            .filter(|e| e["type"] == "click" && e["campaign"] == campaign)
            .filter_map(|e| floodgate::time::parse_rfc3339_ms(e["ts"].as_str()?))
            .min()
            .expect("clicks");
        let send_ts = floodgate::time::parse_rfc3339_ms(send["ts"].as_str().expect("ts")).expect("rfc3339");
        let planned = signals.iter().any(|s| {
            s["type"] == "floodgate.scale_ahead"
                && s["subject"] == target
                && s["data"]["reason"] == "send"
                && floodgate::time::parse_rfc3339_ms(s["time"].as_str().unwrap_or("")) == Some(send_ts)
        });
        assert!(planned, "no scale_ahead for {target} at the send of {campaign}");
        assert!(send_ts < first_click);
    }

    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats written")).expect("stats JSON");
    for key in ["accepted", "rejected", "duplicates", "late", "campaigns", "signals"] {
        assert!(stats[key].is_u64(), "stats lacks {key}: {stats}");
    }
    assert_eq!(stats["accepted"].as_u64(), Some(log.lines().count() as u64));
    assert_eq!(stats["signals"].as_u64(), Some(signals.len() as u64));
    assert_eq!(stats["campaigns"].as_u64(), Some(3));
}

#[test]
fn table_format_is_for_people() {
    let out = bin()
        .args(["replay", "--format", "table", "--config"])
        .arg(repo("examples/floodgate.toml"))
        .arg(repo("examples/viral-mailing.ndjson"))
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let first = text.lines().next().unwrap_or("");
    assert!(first.starts_with("time") && first.contains("signal") && first.contains("subject"), "{first}");
    assert!(text.contains("viral_onset      spring-sale"), "{text}");
}

#[test]
fn bad_lines_are_reported_with_line_numbers_and_do_not_stop_the_run() {
    let input = [
        r#"{"type":"send","campaign":"c","ts":"2026-03-02T08:00:00Z","recipients":100,"target":"web"}"#,
        r#"{"type":"click","campaign":"c","ts":"2026-03-02T08:01:00Z"}"#,
        r#"{"type":"click","campaign":"c","ts":"not a time"}"#,
        "garbage",
        r#"{"type":"click","campaign":"c","ts":"2026-03-02T08:02:00Z","extra":"ignored"}"#,
    ]
    .join("\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("s.json");
    let out = run_with_stdin(&["replay", "-", "--stats", stats.to_str().expect("path")], &input);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("ts"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("json");
    assert_eq!(stats["accepted"], 3);
    assert_eq!(stats["rejected"], 2);
    assert_eq!(stats["rejected_by_reason"]["timestamp"], 1);
    assert_eq!(stats["rejected_by_reason"]["json"], 1);
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[estimator]\nprior_sd = -1\n").expect("write");
    let out = bin().args(["replay", "--config"]).arg(&cfg).arg(repo("examples/viral-mailing.ndjson")).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("estimator.prior_sd"), "{err}");

    std::fs::write(&cfg, "[estimator]\nbin = \"90 parsecs\"\n").expect("write");
    let out = bin().args(["replay", "--config"]).arg(&cfg).arg(repo("examples/viral-mailing.ndjson")).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bin"), "{}", String::from_utf8_lossy(&out.stderr));

    // Env overrides are validated the same way.
    let out = bin()
        .args(["replay"])
        .arg(repo("examples/viral-mailing.ndjson"))
        .env("FLOODGATE_DETECTOR__ONSET_PROBABILITY", "1.5")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("detector.onset_probability"));
}

#[test]
fn missing_input_file_says_what_to_do() {
    let out = bin().args(["replay", "/nonexistent/events.ndjson"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/events.ndjson") && err.contains("NDJSON"), "{err}");
}

#[test]
fn simulate_is_deterministic_and_replayable() {
    let a = bin().args(["simulate", "--seed", "4"]).output().expect("run");
    let b = bin().args(["simulate", "--seed", "4"]).output().expect("run");
    let c = bin().args(["simulate", "--seed", "5"]).output().expect("run");
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
    let out = run_with_stdin(&["replay", "-"], &String::from_utf8_lossy(&a.stdout));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 rejected"));
}

/// A daily-incidence user sets `bin`, `window`, the prior and the generation
/// interval and nothing else: `floodgate config` prints the duration keys at
/// values that follow the bin, and `replay --estimates` of a daily log
/// estimates R day by day.
#[test]
fn daily_bins_work_with_only_bin_window_prior_and_generation_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("daily.toml");
    std::fs::write(
        &cfg,
        "[estimator]\nbin = \"1d\"\nwindow = 7\nprior_mean = 5.0\nprior_sd = 5.0\n\
         generation_interval = { mean = \"5d\", sd = \"2d\" }\n",
    )
    .expect("write");
    let out = bin().arg("config").arg("--config").arg(&cfg).output().expect("run config");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("config prints TOML");
    let key = |section: &str, k: &str| printed[section][k].as_str().map(str::to_string);
    assert_eq!(key("estimator", "lineage_window").as_deref(), Some("60d"));
    assert_eq!(key("estimator", "max_future").as_deref(), Some("60d"));
    assert_eq!(key("forecast", "horizon").as_deref(), Some("30d"));
    assert_eq!(key("planner", "cooldown").as_deref(), Some("0s"), "no cooldown by default, whatever the bin");
    assert_eq!(key("limits", "idle_timeout").as_deref(), Some("10080d"));

    // 40 days of one campaign: a send, then daily clicks without parents
    // (incidence only) growing by about 20 % a day.
    let day_ms: i64 = 86_400_000;
    let start = 1_772_409_600_000_i64; // 2026-03-02T00:00:00Z
    let mut log =
        format!("{{\"type\":\"send\",\"campaign\":\"daily\",\"ts\":{start},\"recipients\":1000,\"target\":\"web\",\"id\":\"s\"}}\n");
    let mut n = 0;
    for d in 0..40_i64 {
        let clicks = (3.0 * 1.2f64.powi(d as i32)).round() as i64;
        for k in 0..clicks {
            n += 1;
            let ts = start + d * day_ms + 3_600_000 + k * 1000;
            let generation = if d == 0 { 0 } else { 1 };
            log.push_str(&format!(
                "{{\"type\":\"click\",\"campaign\":\"daily\",\"ts\":{ts},\"id\":\"c-{n}\",\"generation\":{generation},\"target\":\"web\"}}\n"
            ));
        }
    }
    let events = dir.path().join("daily.ndjson");
    std::fs::write(&events, &log).expect("write log");
    let out = bin().arg("replay").arg(&events).arg("--config").arg(&cfg).arg("--estimates").output().expect("run replay");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let estimates: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter(|s| s["type"] == "floodgate.estimate")
        .collect();
    assert!(estimates.len() >= 30, "one estimate per day expected, got {}: {stdout}", estimates.len());
    let last = &estimates[estimates.len() - 1]["data"];
    let r = last["r"]["mean"].as_f64().unwrap_or_else(|| panic!("estimate without r.mean: {last}"));
    // Growth of 20 % a day with a 5-day generation interval: R ≈ 1.2^5 ≈ 2.5.
    assert!(r > 1.5 && r < 4.0, "daily R {r}: {last}");
}

/// Every signal of the shipped example (estimates included) has the data
/// fields `schemas/signal.schema.json` requires for its type, and no field
/// the schema does not declare (so the schema cannot fall behind a new
/// field such as `r_case`).
#[test]
fn signals_match_the_published_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("schemas/signal.schema.json")).expect("schema")).expect("schema is JSON");
    let out = bin()
        .arg("replay")
        .arg(repo("examples/viral-mailing.ndjson"))
        .arg("--config")
        .arg(repo("examples/floodgate.toml"))
        .arg("--estimates")
        .output()
        .expect("run replay");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let rules = schema["allOf"].as_array().expect("allOf");
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for line in String::from_utf8(out.stdout).expect("utf-8").lines() {
        let s: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let ty = s["type"].as_str().expect("type").to_string();
        let names = |r: &serde_json::Value| {
            let t = &r["if"]["properties"]["type"];
            let mut v: Vec<String> =
                t["enum"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
            v.extend(t["const"].as_str().map(String::from));
            v
        };
        let rule = rules.iter().find(|r| names(r).contains(&ty)).unwrap_or_else(|| panic!("the schema has no rule for {ty}"));
        let data_rule = &rule["then"]["properties"]["data"];
        let declared = data_rule["properties"].as_object().expect("declared data properties");
        let data = s["data"].as_object().expect("data is an object");
        for key in data_rule["required"].as_array().expect("required").iter().filter_map(|k| k.as_str()) {
            assert!(data.contains_key(key), "{ty} lacks required `{key}`: {line}");
        }
        for key in data.keys() {
            assert!(declared.contains_key(key), "{ty} has `{key}`, which the schema does not declare");
        }
        *seen.entry(ty).or_default() += 1;
    }
    for ty in ["floodgate.estimate", "floodgate.viral_onset", "floodgate.scale_ahead"] {
        assert!(seen.get(ty).copied().unwrap_or(0) > 0, "the example emits {ty}: {seen:?}");
    }
    let estimates = bin().args(["replay", "--estimates"]).arg(repo("examples/viral-mailing.ndjson")).output().expect("run replay");
    assert!(String::from_utf8_lossy(&estimates.stdout).contains("\"r_case\":{"), "estimates carry r_case");
}

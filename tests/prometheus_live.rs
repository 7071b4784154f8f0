//! The ops kit against a real Prometheus server (issue #4, item 5): a real
//! `floodgate run` consumes the demo scenario (two campaigns going viral, one
//! of them subsiding again) through the real broker on 127.0.0.1:9092
//! (`scripts/kafka-up`), and Debian's `prometheus` scrapes it with a
//! configuration derived from `deploy/prometheus/prometheus.yml` (scrape target
//! replaced by the service's port, rule files by absolute paths) and the
//! production rules of `deploy/prometheus/floodgate.rules.yml`, unchanged.
//! Through Prometheus' HTTP API the test checks that
//!
//! * the floodgate target is up;
//! * every line of `python3 deploy/check.py --queries` (every dashboard panel
//!   query and annotation, Grafana variables filled in, and every recording
//!   rule) returns data;
//! * every series selector of `python3 deploy/check.py --selectors` (all that
//!   the dashboard, its variables and the rules — alert expressions included —
//!   select) matches a series floodgate exports, with those labels;
//! * every rule evaluates without error;
//! * FloodgateCampaignViral fires for the campaign that is viral at the end of
//!   the log, with R and the busiest targets in its description, and for no
//!   other campaign. Its `for: 1m` is the production setting; the test waits
//!   for it.
//!
//! Instant queries are repeated every 2 s until each has returned data once:
//! the annotation queries (`increase(...[1m]) > 0`) mark events and are
//! non-empty only in the minute after them, as a Grafana annotation shows a
//! marker only around its event. For the rebalance marker Prometheus must have
//! scraped floodgate before its first partition assignment, so the input topic
//! is created only after the first scrape (floodgate waits for it, polling
//! topic metadata every second).
//!
//! Needs the broker and `prometheus` (Debian package `prometheus`); without
//! either the test fails, it is never skipped.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::*;
use floodgate::signal::Signal;
use serde_json::Value;

/// The viral campaign alert, as named in deploy/prometheus/floodgate.rules.yml.
const VIRAL_ALERT: &str = "FloodgateCampaignViral";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a query result holds data (a non-empty vector or matrix, or a scalar).
fn has_data(result: &Value) -> bool {
    match result {
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    }
}

/// Lines printed by `deploy/check.py` with `flag`.
fn check_py(flag: &str) -> Vec<String> {
    let python = std::env::var("FLOODGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(root().join("deploy").join("check.py"))
        .arg(flag)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} deploy/check.py {flag}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "deploy/check.py {flag} failed:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    assert!(!lines.is_empty(), "deploy/check.py {flag} printed nothing");
    lines
}

/// deploy/prometheus/prometheus.yml with the scrape target replaced by
/// `127.0.0.1:<port>` and every rule file by its absolute path. Fails if the
/// file no longer has the shape this relies on, or if a rule file in
/// deploy/prometheus is not loaded by it.
fn prometheus_config(port: u16) -> String {
    let dir = root().join("deploy").join("prometheus");
    let text = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    let target = "\"127.0.0.1:9898\"";
    let targets = text.lines().filter(|l| !l.trim_start().starts_with('#') && l.contains(target)).count();
    assert_eq!(targets, 1, "deploy/prometheus/prometheus.yml: expected one scrape target {target}");
    assert!(text.contains("job_name: floodgate"), "deploy/prometheus/prometheus.yml: the rules select job=\"floodgate\"");
    let mut out = String::new();
    let mut in_rule_files = false;
    let mut loaded = BTreeSet::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.trim().is_empty() {
            in_rule_files = line.trim_end() == "rule_files:";
        }
        match line.trim().strip_prefix("- ") {
            Some(file) if in_rule_files => {
                let file = file.trim_matches(|c| c == '"' || c == '\'');
                let path = dir.join(file);
                assert!(path.is_file(), "rule file {file} of prometheus.yml does not exist");
                loaded.insert(file.to_string());
                out.push_str(&format!("  - \"{}\"\n", path.display()));
            }
            _ if line.trim_start().starts_with('#') => {}
            _ => {
                out.push_str(&line.replace(target, &format!("\"127.0.0.1:{port}\"")));
                out.push('\n');
            }
        }
    }
    let mut rule_files = BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".rules.yml") {
            rule_files.insert(name);
        }
    }
    assert_eq!(loaded, rule_files, "prometheus.yml must load every rule file (alerts and recording rules) of deploy/prometheus");
    out
}

/// `floodgate run` on a free port (`common::Service`), consuming `input`
/// (which need not exist yet), with one configured target.
fn start_floodgate(name: &str, input: &str, dir: &std::sync::Arc<tempfile::TempDir>) -> Service {
    let mut opts = Opts::new(name, input, name)
        // The input topic is created after Prometheus' first scrape; notice it within a second.
        .env("FLOODGATE_KAFKA__PROPERTIES__TOPIC_METADATA_REFRESH_INTERVAL_MS", "1000");
    opts.kafka_toml = "\n# a configured target: exported (with its ceiling) before any campaign uses it\n\
                       [targets.checkout-api]\nmin_replicas = 3\nmax_replicas = 40\n"
        .into();
    Service::start_with(&opts, dir, "floodgate")
}

/// Campaigns whose last detector signal in `signals` is a viral onset.
fn still_viral(signals: &[Signal]) -> BTreeSet<String> {
    let mut viral = BTreeSet::new();
    for s in signals {
        match s {
            Signal::ViralOnset(e) => {
                viral.insert(e.campaign.to_string());
            }
            Signal::ViralSubsided(e) => {
                viral.remove(&*e.campaign);
            }
            _ => {}
        }
    }
    viral
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>, context: impl Fn() -> String) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_scrapes_floodgate_every_query_has_data_and_the_viral_alert_fires() {
    require_broker();
    let t0 = Instant::now();
    let queries = check_py("--queries");
    let selectors = check_py("--selectors");
    let name = unique("prom");
    let input = format!("{name}.in");
    let lines = demo_lines(1);
    let expected_viral = still_viral(&replay_signals(&lines));
    assert!(!expected_viral.is_empty(), "the demo scenario ends with a viral campaign");

    let dir = tempdir();
    let svc = start_floodgate(&name, &input, &dir);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, prometheus_config(svc.port)).unwrap();
    let prom = Prometheus::start(&config, dir.path());
    let logs = || {
        let p = prom.log_text();
        let p: Vec<&str> = p.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        format!("--- prometheus log (tail):\n{}\n--- floodgate log:\n{}", p.join("\n"), svc.log_text())
    };
    wait_until("Prometheus ready", Duration::from_secs(30), || prom.get("/-/ready").ok(), logs);

    // 1. The floodgate target is up (scraped before the input topic exists, so
    //    before the first partition assignment).
    wait_until(
        "the floodgate target up in /api/v1/targets",
        Duration::from_secs(30),
        || {
            let t = prom.get("/api/v1/targets").ok()?;
            t["activeTargets"]
                .as_array()?
                .iter()
                .any(|t| {
                    t["labels"]["job"] == "floodgate"
                        && t["health"] == "up"
                        && t["scrapeUrl"].as_str().is_some_and(|u| u.contains(&format!(":{}/", svc.port)))
                })
                .then_some(())
        },
        logs,
    );
    let before = wait_until(
        "a scrape of floodgate_rebalances_total",
        Duration::from_secs(20),
        || prom.query("floodgate_rebalances_total{job=\"floodgate\"}").ok().filter(has_data),
        logs,
    );
    eprintln!("prometheus_live: target up after {:?}; rebalances before the topic exists: {before}", t0.elapsed());

    // 2. The demo's events through the broker (this creates the input topic).
    produce(&input, 1, &lines);
    let produced = Instant::now();
    wait_until(
        "every event applied",
        Duration::from_secs(60),
        || (svc.metric("floodgate_events_total{") >= lines.len() as f64).then_some(()),
        logs,
    );
    eprintln!("prometheus_live: {} events applied {:?} after producing", lines.len(), produced.elapsed());

    // 3. Poll until every query has returned data and the viral alert fires.
    let mut pending_queries: Vec<&String> = queries.iter().collect();
    let mut pending_selectors: Vec<&String> = selectors.iter().collect();
    let mut fired: Option<Vec<Value>> = None;
    let mut last_alerts = Value::Null;
    let mut errors: Vec<String> = Vec::new();
    let deadline = produced + Duration::from_secs(150);
    while Instant::now() < deadline && !(pending_queries.is_empty() && pending_selectors.is_empty() && fired.is_some()) {
        errors.clear();
        pending_queries.retain(|q| match prom.query(q) {
            Ok(r) => !has_data(&r),
            Err(e) => {
                errors.push(format!("{q}: {e}"));
                true
            }
        });
        pending_selectors.retain(|s| match prom.query(&format!("count({s})")) {
            Ok(r) => !has_data(&r),
            Err(e) => {
                errors.push(format!("count({s}): {e}"));
                true
            }
        });
        if fired.is_none() {
            if let Ok(a) = prom.get("/api/v1/alerts") {
                let viral: Vec<Value> =
                    a["alerts"].as_array().into_iter().flatten().filter(|x| x["labels"]["alertname"] == VIRAL_ALERT).cloned().collect();
                let firing: BTreeSet<String> = viral
                    .iter()
                    .filter(|x| x["state"] == "firing")
                    .filter_map(|x| x["labels"]["campaign"].as_str().map(String::from))
                    .collect();
                if expected_viral.is_subset(&firing) {
                    eprintln!("prometheus_live: {VIRAL_ALERT} firing for {firing:?} {:?} after producing", produced.elapsed());
                    fired = Some(viral);
                }
                last_alerts = a;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    let mut problems = Vec::new();
    // "<n> of <total> <what>:" and the ones left, one per line.
    let mut left_over = |left: &[&String], total: usize, what: &str| {
        if !left.is_empty() {
            let list = left.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ");
            problems.push(format!("{} of {total} {what}:\n  {list}", left.len()));
        }
    };
    left_over(&pending_queries, queries.len(), "dashboard/recording-rule queries (deploy/check.py --queries) never returned data");
    left_over(
        &pending_selectors,
        selectors.len(),
        "series selectors of the dashboard and rules (deploy/check.py --selectors) match nothing floodgate exports",
    );
    if !errors.is_empty() {
        problems.push(format!("query errors:\n  {}", errors.join("\n  ")));
    }
    match &fired {
        None => problems.push(format!("{VIRAL_ALERT} never fired for {expected_viral:?}; /api/v1/alerts: {last_alerts}")),
        Some(viral) => {
            // Only the campaign still viral at the end of the log is alerting.
            let others: Vec<&Value> =
                viral.iter().filter(|x| !expected_viral.contains(x["labels"]["campaign"].as_str().unwrap_or(""))).collect();
            if !others.is_empty() {
                problems.push(format!("{VIRAL_ALERT} active for campaigns that are not viral: {others:?}"));
            }
            for x in viral.iter().filter(|x| x["state"] == "firing") {
                let description = x["annotations"]["description"].as_str().unwrap_or("");
                let summary = x["annotations"]["summary"].as_str().unwrap_or("");
                let campaign = x["labels"]["campaign"].as_str().unwrap_or("");
                // The templates' queries found R, its interval and the busiest targets.
                if description.contains('?')
                    || description.contains("error")
                    || !description.contains("R = ")
                    || !description.contains("events-web")
                    || !summary.contains(campaign)
                    || x["labels"]["severity"] != "info"
                {
                    problems.push(format!("{VIRAL_ALERT} for {campaign}: unexpected labels/annotations: {x}"));
                }
            }
        }
    }
    // Every rule (recording and alerting) evaluates without error.
    match prom.get("/api/v1/rules") {
        Ok(r) => {
            for g in r["groups"].as_array().into_iter().flatten() {
                for rule in g["rules"].as_array().into_iter().flatten() {
                    if rule["health"] != "ok" {
                        problems.push(format!("rule {} unhealthy: {}", rule["name"], rule["lastError"]));
                    }
                }
            }
        }
        Err(e) => problems.push(format!("/api/v1/rules: {e}")),
    }
    // The configured target is exported with its ceiling before any campaign uses it.
    match prom.query("floodgate_target_max_replicas{job=\"floodgate\", target=\"checkout-api\"}") {
        Ok(r) if r[0]["value"][1] == "40" => {}
        other => problems.push(format!("floodgate_target_max_replicas of the configured target checkout-api: {other:?}")),
    }
    match prom.query("floodgate_target_desired_replicas{job=\"floodgate\", target=\"checkout-api\"}") {
        Ok(r) if r[0]["value"][1] == "3" => {}
        other => problems
            .push(format!("floodgate_target_desired_replicas of the idle configured target checkout-api (min_replicas 3): {other:?}")),
    }
    assert!(problems.is_empty(), "live Prometheus check failed:\n\n{}\n\n{}", problems.join("\n\n"), logs());
    eprintln!(
        "prometheus_live: {} queries and {} selectors with data, {VIRAL_ALERT} firing for {expected_viral:?}; {:?} in total",
        queries.len(),
        selectors.len(),
        t0.elapsed()
    );
}

//! `floodgate evaluate` and the forecast in every estimate, end to end:
//! on simulated mailings (with known parent links), on bad input, and
//! through the binary (`--json`, `--html`).

use std::process::Command;
use std::sync::Arc;

use floodgate::config::Config;
use floodgate::engine::Engine;
use floodgate::evaluate::{evaluate, parse_horizons};
use floodgate::replay::replay_bytes;
use floodgate::signal::Signal;
use floodgate::simulate::{demo_scenario, simulate};

fn demo_log(seed: u64) -> Vec<u8> {
    let mut log = Vec::new();
    for e in simulate(&demo_scenario(seed, 1_772_438_400_000)) {
        log.extend_from_slice(e.line.as_bytes());
        log.push(b'\n');
    }
    log
}

/// Every estimate carries a forecast over `forecast.horizon` whose interval
/// holds its mean, and whose path is the horizon long.
#[test]
fn every_estimate_has_a_forecast_with_an_interval() {
    let log = demo_log(3);
    let mut engine = Engine::new(Config::default()).expect("engine").with_estimates(true);
    let (signals, _, _) = replay_bytes(&log, &mut engine);
    let estimates: Vec<_> = signals.iter().filter_map(|s| if let Signal::Estimate(e) = s { Some(e) } else { None }).collect();
    assert!(estimates.len() > 100, "{}", estimates.len());
    let mut with_clicks = 0;
    for e in &estimates {
        let f = &e.forecast;
        assert_eq!(f.horizon_s, 1800.0);
        assert_eq!(f.path.len(), 30);
        assert!(f.clicks.lo <= f.clicks.mean.ceil() && f.clicks.mean.floor() <= f.clicks.hi, "{:?}", f.clicks);
        assert_eq!(f.clicks.lo, f.clicks.lo.round(), "quantiles of a count are whole");
        if f.clicks.mean > 50.0 {
            with_clicks += 1;
            assert!(f.clicks.hi - f.clicks.lo >= 2.0 * 1.64 * f.clicks.mean.sqrt() * 0.9, "at least Poisson-wide: {:?}", f.clicks);
        }
    }
    assert!(with_clicks > 10);
    // Serialised: data.forecast with horizon_s, clicks.{mean,lo,hi}, peak_rps (and not the path).
    let v: serde_json::Value =
        serde_json::from_str(&Signal::Estimate(estimates[estimates.len() / 2].clone()).to_cloudevent("urn:t")).expect("json");
    let f = &v["data"]["forecast"];
    assert_eq!(f["horizon_s"], 1800.0);
    for k in ["mean", "lo", "hi"] {
        assert!(f["clicks"][k].is_number(), "{f}");
    }
    assert!(f["peak_rps"].is_number());
    assert!(f.get("path").is_none());
}

/// On the demo mailings (parent links on every forwarded click): every part
/// of the evaluation is filled, horizons nest, and the scores are sane.
#[test]
fn evaluate_scores_the_demo_mailings() {
    let log = demo_log(1);
    let ev = evaluate(&log, Arc::new(Config::default()), &parse_horizons("5m,15m,30m").expect("horizons")).expect("evaluate");
    assert_eq!(ev.horizons.len(), 3);
    assert!(ev.estimates > 100);
    for h in &ev.horizons {
        assert!(h.windows > 20, "{h:?}");
        let f = &h.floodgate;
        let cov = f.coverage_90.expect("coverage");
        assert!((0.0..=1.0).contains(&cov));
        assert!(f.mdape.expect("mdape") < 1.0, "{h:?}");
        assert!(f.crps.expect("crps") > 0.0);
        assert!(h.persistence.mdape.is_some() && h.linear_trend.mdape.is_some() && h.send_only.mdape.is_some());
        // Calibration: coverage grows with the nominal level.
        for w in h.calibration.windows(2) {
            assert!(w[0].actual <= w[1].actual, "{:?}", h.calibration);
        }
    }
    // Longer horizons hold more clicks per window: wider intervals.
    assert!(ev.horizons[2].floodgate.mean_width > ev.horizons[0].floodgate.mean_width);
    assert!(ev.r.windows > 50, "{:?}", ev.r);
    assert!(ev.r.coverage_95.is_some() && ev.r.median_relative_error.is_some());
    // `r_case` widens the posterior by the clickers' offspring noise, around
    // the same mean: it holds at least the windows the posterior holds.
    assert!(ev.r.coverage_95_case >= ev.r.coverage_95, "{:?}", ev.r);
    assert!(ev.onsets.onsets >= 1 && ev.onsets.with_realized_r == ev.onsets.onsets, "{:?}", ev.onsets);
    assert!(ev.final_size.campaigns >= 2, "{:?}", ev.final_size);
    assert_eq!(ev.bad_input.rejected_lines, 0);
    assert_eq!(ev.bad_input.campaigns_without_send, 0);
    assert_eq!(ev.series.len(), 3, "the three demo campaigns are charted");
    assert!(ev.windows.len() as u64 == ev.horizons.iter().map(|h| h.windows).sum::<u64>());
}

/// A line that is not an event and a campaign with no send are counted and
/// reported; the valid events around them are all scored.
#[test]
fn evaluate_counts_bad_input_and_keeps_the_rest() {
    let clean = demo_log(2);
    let clean_ev = evaluate(&clean, Arc::new(Config::default()), &[1_800_000]).expect("evaluate clean");
    let mut log = b"this is not an event\n".to_vec();
    let mut n = 0;
    for line in clean.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        log.extend_from_slice(line);
        log.push(b'\n');
        n += 1;
        if n == 500 {
            log.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"\",\"ts\":1}\n");
            log.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"orphan\",\"ts\":\"2026-03-02T08:10:00Z\",\"id\":\"o1\"}\n");
        }
    }
    let ev = evaluate(&log, Arc::new(Config::default()), &[1_800_000]).expect("bad input never fails the evaluation");
    assert_eq!(ev.bad_input.rejected_lines, 2, "{:?}", ev.bad_input);
    assert!(ev.bad_input.examples[0].starts_with("line 1 (byte 0)"), "{:?}", ev.bad_input.examples);
    assert!(ev.bad_input.examples[1].starts_with("line 502 "), "{:?}", ev.bad_input.examples);
    assert_eq!(ev.bad_input.campaigns_without_send, 1);
    assert_eq!(ev.bad_input.campaigns_without_send_examples, vec!["orphan".to_string()]);
    // The demo campaigns are scored exactly as without the bad lines.
    assert_eq!(ev.horizons[0].windows, clean_ev.horizons[0].windows);
    assert_eq!(ev.horizons[0].floodgate, clean_ev.horizons[0].floodgate);
    assert_eq!(ev.r, clean_ev.r);
}

#[test]
fn horizons_must_be_whole_bins() {
    let log = demo_log(1);
    let err = evaluate(&log, Arc::new(Config::default()), &[90_000]).expect_err("90 s is not a whole number of 1-min bins");
    assert!(err.to_string().contains("whole number of bins"), "{err}");
    assert!(parse_horizons("5m,soon").is_err());
}

#[test]
fn the_binary_writes_table_json_and_html() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("demo.ndjson");
    std::fs::write(&log, demo_log(1)).expect("write log");
    let (json, html) = (dir.path().join("e.json"), dir.path().join("e.html"));
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .arg("evaluate")
        .arg(&log)
        .args(["--horizons", "5m,30m", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("run evaluate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    for needle in ["persistence", "linear trend", "send-only", "final size", "realized case R", "viral onsets", "bad input"] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    assert_eq!(v["horizons"].as_array().map(Vec::len), Some(2));
    assert!(v["windows"].as_array().is_some_and(|w| !w.is_empty()));
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("<svg") && page.contains("id=\"calibration\""));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"), "self-contained");
}

//! The evaluation's HTML report in a real browser (Debian's `chromium`,
//! headless), as `tests/backtest_browser.rs` checks the backtest's: the
//! page's own inline check sets `document.title` to `ok` once every chart
//! (the calibration plot and each charted campaign) drew something, and no
//! script error happened.
//!
//! This test FAILS when chromium is missing: install it with
//! `apt-get install -y chromium` (or point `FLOODGATE_CHROMIUM` at a
//! Chromium/Chrome binary).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use floodgate::config::Config;
use floodgate::evaluate::{evaluate, report};
use floodgate::simulate::{demo_scenario, simulate};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOODGATE_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default() {
            let c = dir.join(name);
            if c.is_file() {
                return c;
            }
        }
    }
    panic!("chromium is not installed: the evaluate report test needs a headless browser. Install it with `apt-get install -y chromium` (Debian), or set FLOODGATE_CHROMIUM.");
}

#[test]
fn evaluate_report_renders_every_chart_in_chromium() {
    let mut log = Vec::new();
    for e in simulate(&demo_scenario(1, 1_772_438_400_000)) {
        log.extend_from_slice(e.line.as_bytes());
        log.push(b'\n');
    }
    let ev = evaluate(&log, Arc::new(Config::default()), &[300_000, 1_800_000]).expect("evaluate");
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("evaluate.html");
    std::fs::write(&page, report::html(&ev)).expect("write report");
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = dom.split("<title>").nth(1).and_then(|s| s.split("</title>").next()).unwrap_or("");
    assert_eq!(title, "ok", "the report's self-check failed in chromium (title {title:?})");
    // The calibration plot and one chart per demo campaign, each with a band.
    assert!(dom.contains("id=\"calibration\""));
    assert_eq!(dom.matches("class=\"chart\" id=\"campaign-").count(), 3);
}

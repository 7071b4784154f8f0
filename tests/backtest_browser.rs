//! The backtest's HTML report in a real browser (Debian's `chromium`,
//! headless): it must render without script errors (its inline script sets
//! `document.title` to `ok` after checking every chart drew something) and a
//! screenshot must not be blank.
//!
//! This test FAILS when chromium is missing: install it with
//! `apt-get install -y chromium` (or point `FLOODGATE_CHROMIUM` at a
//! Chromium/Chrome binary). `FLOODGATE_UPDATE_SCREENSHOT=1` also copies the
//! screenshot of the standard scenario to `docs/backtest.png`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use floodgate::backtest::{backtest, report, sweep, Model};
use floodgate::config::Config;
use floodgate::simulate::{simulate, standard_scenarios};

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
    panic!("chromium is not installed: the backtest report test needs a headless browser. Install it with `apt-get install -y chromium` (Debian), or set FLOODGATE_CHROMIUM to a Chromium/Chrome binary.");
}

fn run_chromium(file: &Path, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("file://{}", file.display());
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,2000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}; install chromium (`apt-get install -y chromium`)", chromium()));
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Decodes an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into RGBA pixels.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<[u8; 4]>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut pos = 8;
    let (mut w, mut h, mut channels) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("len")) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().expect("w"));
                h = u32::from_be_bytes(data[4..8].try_into().expect("h"));
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("colour type {t} not handled"),
                };
                assert_eq!(data[12], 0, "interlaced PNG not handled");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).expect("inflate");
    let stride = w as usize * channels;
    assert_eq!(raw.len(), (stride + 1) * h as usize, "decoded size");
    let mut prev = vec![0u8; stride];
    let mut px = Vec::with_capacity((w * h) as usize);
    for row in 0..h as usize {
        let filter = raw[row * (stride + 1)];
        let mut line = raw[row * (stride + 1) + 1..(row + 1) * (stride + 1)].to_vec();
        for i in 0..stride {
            let a = if i >= channels { line[i - channels] as i16 } else { 0 };
            let b = prev[i] as i16;
            let c = if i >= channels { prev[i - channels] as i16 } else { 0 };
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("bad filter {f}"),
            };
            line[i] = line[i].wrapping_add(add as u8);
        }
        for p in line.chunks(channels) {
            px.push([p[0], p[1], p[2], if channels == 4 { p[3] } else { 255 }]);
        }
        prev = line;
    }
    (w, h, px)
}

#[test]
fn html_report_renders_in_headless_chromium_and_is_not_blank() {
    let spec = standard_scenarios(1, 1_772_438_400_000);
    let mut log = String::new();
    for e in simulate(&spec) {
        log.push_str(&e.line);
        log.push('\n');
    }
    let cfg = Arc::new(Config::from_toml("[forecast]\nhorizon = \"10m\"\n").expect("config"));
    let mut b = backtest(log.as_bytes(), cfg.clone(), &Model::default()).expect("backtest");
    b.sweep = Some(sweep::sweep(log.as_bytes(), cfg, &Model::default()).expect("sweep"));
    let html = report::html(&b);
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains(" src="), "the report must not fetch anything");
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).expect("write report");

    // 1. No script error, every chart rendered: the page's own check sets the title.
    let dom = run_chromium(&page, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let title = dom.split("<title>").nth(1).and_then(|s| s.split("</title>").next()).unwrap_or("");
    assert_eq!(title, "ok", "the report's self-check failed in chromium (title {title:?})");
    let charts = dom.matches("class=\"chart ").count();
    assert!(charts > b.targets.len(), "{charts} charts in the DOM");
    // The frontier: one chart per start-up delay, each with its oracle and a
    // dot per setting (the self-check above saw each draw a path with area).
    let frontiers = dom.matches("class=\"chart frontier-chart\"").count();
    assert_eq!(frontiers, sweep::STARTUPS_MS.len(), "frontier charts in the DOM");
    assert_eq!(dom.matches("class=\"oracle\"").count(), frontiers, "one oracle point per frontier");
    let settings: usize = b.sweep.as_ref().map_or(0, |s| s.startups.iter().map(|f| f.points.len()).sum());
    assert_eq!(dom.matches("class=\"pt\"").count(), settings, "a dot per setting");

    // 2. The screenshot is not blank: many non-white pixels, several colours.
    let png = dir.path().join("report.png");
    run_chromium(&page, &[&format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).expect("screenshot written");
    let (w, h, px) = decode_png(&bytes);
    assert_eq!((w, h), (1400, 2000));
    let non_white = px.iter().filter(|p| p[0] < 235 || p[1] < 235 || p[2] < 235).count();
    let share = non_white as f64 / px.len() as f64;
    let mut colours: Vec<[u8; 4]> = px.iter().map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0, 0]).collect();
    colours.sort_unstable();
    colours.dedup();
    // The policies' line colours must be on screen (the charts drew).
    let near = |c: [u8; 3]| px.iter().filter(|p| (0..3).all(|i| (p[i] as i16 - c[i] as i16).abs() <= 24)).count();
    let (orange, blue) = (near([0xd9, 0x48, 0x0f]), near([0x19, 0x71, 0xc2]));
    eprintln!(
        "screenshot: {:.1}% non-white, {} colours, {orange} reactive-orange and {blue} floodgate-blue pixels",
        100.0 * share,
        colours.len()
    );
    assert!(share > 0.05, "screenshot is (nearly) blank: {:.2}% non-white", 100.0 * share);
    assert!(colours.len() >= 8, "screenshot has {} colours", colours.len());
    assert!(orange > 200 && blue > 200, "chart lines not visible: {orange} orange, {blue} blue pixels");
    if std::env::var_os("FLOODGATE_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs/");
        std::fs::copy(&png, docs.join("backtest.png")).expect("copy screenshot");
    }
}

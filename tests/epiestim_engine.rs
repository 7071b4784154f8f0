//! The whole engine against the real EpiEstim, end to end through events.
//!
//! `tests/epiestim_reference.rs` checks the renewal maths in isolation
//! (`discr_si`, the Gamma posterior of Cori et al. 2013, Am J Epidemiol
//! 178(9):1505–1512, eq. (2): shape `a + Σ I_local`, scale
//! `1 / (1/b + Σ Λ)` with `Λ_t = Σ_s w_s (I_local + I_imported)_{t−s}`).
//! This test checks that the *engine* — bins, event-time windows, the per-bin
//! Λ it stores at bin close, the truncated generation-interval support, the
//! estimate records — computes the same numbers from a stream of click events:
//!
//! * every fixture in `tests/fixtures/epiestim/` (produced by
//!   `EpiEstim::estimate_R(method = "parametric_si")`, see
//!   `scripts/epiestim-fixtures.R`) is turned into an NDJSON log: for bin `t`
//!   (0-based, 1-minute bins) `imported_used[t]` clicks with `generation: 0`
//!   (EpiEstim's imported cases) and `local_used[t]` clicks with
//!   `generation: 1` and no `parent` (local cases), in the middle of the bin;
//! * the log is replayed with `[estimator] method = "renewal"`, `bin = "1m"`,
//!   the fixture's serial interval and prior, and `window` = the EpiEstim
//!   window length (one engine per distinct length);
//! * the engine's estimate for the window ending with bin `t_end − 1` must
//!   match EpiEstim's window `t_start..=t_end` (1-based): mean and sd to 1e-6
//!   relative, 2.5 % / 97.5 % quantiles to 1e-5 — the tolerances.
//!
//! EpiEstim's `local_used` already applies its first-day rule (day-1 local
//! cases count as imported), so feeding `*_used` gives both tools the same
//! input. EpiEstim reports NA for windows ending before the serial-interval
//! mean; those are not compared. The engine stores the generation interval
//! only up to 1 − 1e-9 of its mass (EpiEstim keeps the whole series length);
//! the difference is far inside the tolerance (observed: 4e-14 relative over
//! all 168 non-NA windows of the four fixtures).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use floodgate::config::Config;
use floodgate::decode::decode;
use floodgate::engine::{Applied, Engine};
use floodgate::signal::{Method, Signal};
use serde::Deserialize;

/// 2026-03-02T08:00:00Z, a whole minute.
const START_MS: i64 = 1_772_438_400_000;
const BIN_MS: i64 = 60_000;

#[derive(Deserialize)]
struct Window {
    t_start: usize,
    t_end: usize,
    mean: Option<f64>,
    std: Option<f64>,
    q025: Option<f64>,
    q975: Option<f64>,
}

#[derive(Deserialize)]
struct Fixture {
    name: String,
    mean_si: f64,
    std_si: f64,
    mean_prior: f64,
    std_prior: f64,
    local_used: Vec<f64>,
    imported_used: Vec<f64>,
    windows: Vec<Window>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/epiestim");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let all: Vec<Fixture> = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect();
    assert!(all.len() >= 4, "expected the 4 fixtures of scripts/epiestim-fixtures.R, found {}", all.len());
    all
}

/// The fixture's incidence as click events, one campaign, bins of `bin_ms`
/// starting at `start_ms`.
fn event_log(f: &Fixture, start_ms: i64, bin_ms: i64) -> String {
    let mut log = String::new();
    let mut n = 0u64;
    for (t, (&local, &imported)) in f.local_used.iter().zip(&f.imported_used).enumerate() {
        let ts = start_ms + t as i64 * bin_ms + bin_ms / 2;
        for (count, generation) in [(imported, 0), (local, 1)] {
            assert!(count >= 0.0 && count.fract() == 0.0, "{}: incidence must be whole numbers, got {count}", f.name);
            for _ in 0..count as u64 {
                n += 1;
                log.push_str(&format!(
                    "{{\"type\":\"click\",\"campaign\":\"epiestim\",\"ts\":{ts},\"id\":\"c-{n}\",\"generation\":{generation},\"target\":\"web\"}}\n"
                ));
            }
        }
    }
    log
}

/// The minute-bin configuration of the comparison: renewal forced, forwards off.
fn minute_config(f: &Fixture, window_bins: usize) -> String {
    format!(
        "[estimator]\nbin = \"1m\"\nwindow = {window_bins}\nmethod = \"renewal\"\nprior_mean = {}\nprior_sd = {}\n\
         generation_interval = {{ mean = \"{}s\", sd = \"{}s\" }}\n\
         [estimator.forward]\nenabled = false\ndelay = {{ mean = \"90s\", sd = \"60s\" }}\n",
        f.mean_prior,
        f.std_prior,
        f.mean_si * 60.0,
        f.std_si * 60.0
    )
}

/// A daily-incidence configuration as an EpiEstim user writes it: the bin,
/// the window, the prior and the serial interval, nothing else (every other
/// duration key follows the bin).
fn daily_config(f: &Fixture, window_bins: usize) -> String {
    format!(
        "[estimator]\nbin = \"1d\"\nwindow = {window_bins}\nprior_mean = {}\nprior_sd = {}\n\
         generation_interval = {{ mean = \"{}s\", sd = \"{}s\" }}\n",
        f.mean_prior,
        f.std_prior,
        f.mean_si * 86_400.0,
        f.std_si * 86_400.0
    )
}

/// Estimates by window end (epoch ms, exclusive) for one configuration, the
/// fixture's days being bins of `bin_ms` from `start_ms`.
fn engine_estimates(f: &Fixture, toml: &str, start_ms: i64, bin_ms: i64) -> BTreeMap<i64, floodgate::signal::Estimate> {
    let cfg = Config::from_toml(toml).unwrap_or_else(|e| panic!("{}: config {toml}: {e}", f.name));
    assert_eq!(cfg.estimator.bin.ms(), bin_ms, "{}: the bin of {toml}", f.name);
    let mut engine = Engine::new(cfg).expect("valid engine config").with_estimates(true);
    let log = event_log(f, start_ms, bin_ms);
    let mut signals = Vec::new();
    let mut applied = 0usize;
    for (n, line) in log.lines().enumerate() {
        let ev = decode(line.as_bytes()).unwrap_or_else(|e| panic!("{}: line {}: {e:?}", f.name, n + 1));
        match engine.apply(&ev, &mut signals) {
            Ok(Applied::Accepted) => applied += 1,
            other => panic!("{}: line {} not accepted: {other:?}", f.name, n + 1),
        }
        if let Some(wm) = engine.natural_watermark() {
            engine.advance_to(wm, &mut signals);
        }
    }
    // EpiEstim's series runs to its last day even when the last days have no
    // cases; the engine learns that time has passed from the watermark (in
    // `floodgate run`, idle partitions advance it), so advance it past the
    // series end, as the clock would.
    let end_ms = start_ms + f.local_used.len() as i64 * bin_ms;
    engine.advance_to(end_ms + engine.config().estimator.allowed_lateness.ms() + bin_ms, &mut signals);
    engine.flush(&mut signals);
    let expected: f64 = f.local_used.iter().chain(&f.imported_used).sum();
    assert_eq!(applied as f64, expected, "{}: every click applied", f.name);
    let mut out = BTreeMap::new();
    for s in signals {
        if let Signal::Estimate(e) = s {
            assert_eq!(e.method, Method::Renewal, "{}: method forced to renewal", f.name);
            assert!(out.insert(e.time_ms, e).is_none(), "{}: one estimate per bin", f.name);
        }
    }
    out
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// Compares the engine with every non-NA EpiEstim window of every fixture,
/// the engine configured by `config(fixture, window length)` with bins of
/// `bin_ms` from `start_ms`; returns the number of windows compared.
fn compare_with_epiestim(config: fn(&Fixture, usize) -> String, start_ms: i64, bin_ms: i64) -> usize {
    let mut compared = 0usize;
    let mut worst = (0.0f64, 0.0f64);
    for f in fixtures() {
        let lengths: BTreeSet<usize> = f.windows.iter().map(|w| w.t_end + 1 - w.t_start).collect();
        for len in lengths {
            let est = engine_estimates(&f, &config(&f, len), start_ms, bin_ms);
            for w in f.windows.iter().filter(|w| w.t_end + 1 - w.t_start == len) {
                let (Some(mean), Some(sd), Some(q025), Some(q975)) = (w.mean, w.std, w.q025, w.q975) else { continue };
                let end_ms = start_ms + w.t_end as i64 * bin_ms;
                let ctx = format!("{} window {}..={} (1-based)", f.name, w.t_start, w.t_end);
                let Some(e) = est.get(&end_ms) else {
                    panic!("{ctx}: EpiEstim has R = {mean} but the engine emitted no estimate for the window ending at {end_ms}")
                };
                let local: f64 = f.local_used[w.t_start - 1..w.t_end].iter().sum();
                let imported: f64 = f.imported_used[w.t_start - 1..w.t_end].iter().sum();
                assert_eq!(e.local_cases as f64, local, "{ctx}: local clicks in the window");
                assert_eq!(e.imported_cases as f64, imported, "{ctx}: imported clicks in the window");
                for (what, got, want, tol) in [
                    ("mean", e.r.mean, mean, 1e-6),
                    ("sd", e.r.sd, sd, 1e-6),
                    ("q2.5%", e.r.lo, q025, 1e-5),
                    ("q97.5%", e.r.hi, q975, 1e-5),
                ] {
                    let err = rel(got, want);
                    assert!(err <= tol, "{ctx}: {what} engine {got} vs EpiEstim {want} (relative error {err:e} > {tol:e})");
                    if what == "mean" || what == "sd" {
                        worst.0 = worst.0.max(err);
                    } else {
                        worst.1 = worst.1.max(err);
                    }
                }
                compared += 1;
            }
        }
    }
    eprintln!("compared {compared} windows; worst relative error: mean/sd {:e}, quantiles {:e}", worst.0, worst.1);
    compared
}

#[test]
fn engine_reproduces_epiestim_estimate_r_from_click_events() {
    let compared = compare_with_epiestim(minute_config, START_MS, BIN_MS);
    // 108 + 25 + 13 + 22 non-NA windows in the four fixtures.
    assert!(compared >= 150, "too few windows compared: {compared}");
}

/// Daily bins, configured with only `bin`, `window`, the prior and the
/// generation interval (method `auto`, forwards on, every other duration key
/// at the default that follows the bin): the engine still builds, takes the
/// renewal estimator for clicks without parents and reproduces EpiEstim's
/// daily estimates.
#[test]
fn daily_bins_with_only_the_epiestim_keys_reproduce_epiestim() {
    const DAY_MS: i64 = 86_400_000;
    let compared = compare_with_epiestim(daily_config, START_MS - START_MS % DAY_MS, DAY_MS);
    assert!(compared >= 150, "too few windows compared: {compared}");
}

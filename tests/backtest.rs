//! Backtest (issue #6): on simulated logs, floodgate's scale-ahead overloads
//! the targets of viral campaigns less than reactive (HPA-like) autoscaling,
//! at a comparable cost; and the CLI's `--json` numbers are consistent.
//!
//! Setting. The standard scenario set (11 campaigns, R 0.3 … 2.5 and one
//! jumping 0.5 → 1.8, on `shop-web` and `blog-web`), the default capacity
//! model (10 requests per click, 50 requests/s per replica, 2 … 200 replicas,
//! headroom 0.25) and the backtest defaults (start-up 90 s, metrics delay 60 s,
//! stabilisation 5 min, HPA target utilisation 1/(1 + headroom) = 0.8, the
//! same spare capacity floodgate plans with). floodgate runs with
//! `forecast.horizon = 10m`: the horizon only has to cover the time from a
//! decision to a ready replica (allowed lateness 5 min + start-up 1.5 min,
//! rounded up); the default 30 min plans for the peak half an hour ahead,
//! which on these fast-growing campaigns costs ≈ 2.7× reactive (printed
//! below, not asserted).
//!
//! "Comparable cost": floodgate's replica-minutes at most 1.5× reactive's.
//! The bound is a judgement: 1.5× is what a reactive deployment pays when it
//! runs at target utilisation ≈ 0.5 instead of 0.8 — the usual way of buying
//! headroom against surges without a forecast.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use floodgate::backtest::sweep::{sweep, ORACLE, REACTIVE_UTILISATIONS, STARTUPS_MS, TREND_UTILISATIONS};
use floodgate::backtest::{backtest, text_table, Backtest, Model};
use floodgate::config::Config;
use floodgate::simulate::{simulate, standard_scenarios, SimSpec};

const START: i64 = 1_772_438_400_000; // 2026-03-02T08:00:00Z
const COST_BOUND: f64 = 1.5;

fn log(spec: &SimSpec) -> String {
    let mut s = String::new();
    for e in simulate(spec) {
        s.push_str(&e.line);
        s.push('\n');
    }
    s
}

fn run(seed: u64, config: &str) -> Backtest {
    let cfg = Arc::new(Config::from_toml(config).expect("config"));
    backtest(log(&standard_scenarios(seed, START)).as_bytes(), cfg, &Model::default()).expect("backtest")
}

#[test]
fn floodgate_overloads_viral_targets_less_than_reactive_at_comparable_cost() {
    for seed in [1, 2, 3] {
        let b = run(seed, "[forecast]\nhorizon = \"10m\"\n");
        eprintln!("seed {seed} (forecast.horizon 10m)\n{}", text_table(&b));
        let r = b.viral_total("reactive").expect("reactive");
        let f = b.viral_total("floodgate").expect("floodgate");
        let t = b.viral_total("trend").expect("trend");
        eprintln!(
            "seed {seed}: over capacity reactive {:.0} ({:.2}%), trend {:.0} ({:.2}%), floodgate {:.0} ({:.2}%); replica-minutes {:.0} / {:.0} / {:.0} (floodgate {:.2}× reactive)",
            r.overloaded_requests,
            r.overloaded_pct,
            t.overloaded_requests,
            t.overloaded_pct,
            f.overloaded_requests,
            f.overloaded_pct,
            r.replica_minutes,
            t.replica_minutes,
            f.replica_minutes,
            f.replica_minutes / r.replica_minutes
        );
        assert!(b.targets.iter().filter(|t| t.has_viral).count() == 2, "both targets carry a viral campaign");
        assert!(r.overloaded_requests > 0.0, "seed {seed}: the scenario must overload reactive, or it tests nothing");
        assert!(
            f.overloaded_requests < r.overloaded_requests,
            "seed {seed}: floodgate {:.0} vs reactive {:.0}",
            f.overloaded_requests,
            r.overloaded_requests
        );
        assert!(f.minutes_overloaded <= r.minutes_overloaded, "seed {seed}");
        for target in b.targets.iter().filter(|t| t.has_viral) {
            let (rs, fs) = (b.summary(&target.target, "reactive").expect("r"), b.summary(&target.target, "floodgate").expect("f"));
            assert!(fs.overloaded_requests <= rs.overloaded_requests, "seed {seed} {}: {fs:?} vs {rs:?}", target.target);
        }
        assert!(
            f.replica_minutes <= COST_BOUND * r.replica_minutes,
            "seed {seed}: floodgate costs {:.0} replica-minutes, reactive {:.0} (bound {COST_BOUND}×)",
            f.replica_minutes,
            r.replica_minutes
        );
        // floodgate has capacity ready earlier than reactive for the median viral campaign.
        // Both medians must exist (`None` would compare as smaller than any lead).
        let (Some(f_lead), Some(r_lead)) = (f.median_ready_lead_min, r.median_ready_lead_min) else {
            panic!("seed {seed}: both policies need a median ready lead: {f:?} vs {r:?}")
        };
        assert!(f_lead >= r_lead, "seed {seed}: floodgate ready {f_lead} min before the surge, reactive {r_lead}");
    }
    // For the record: the default 30 min horizon.
    let b = run(1, "");
    let (r, f) = (b.viral_total("reactive").expect("r"), b.viral_total("floodgate").expect("f"));
    eprintln!(
        "seed 1, default forecast.horizon 30m: over capacity reactive {:.0}, floodgate {:.0}; replica-minutes {:.0} vs {:.0} ({:.2}×)",
        r.overloaded_requests,
        f.overloaded_requests,
        r.replica_minutes,
        f.replica_minutes,
        f.replica_minutes / r.replica_minutes
    );
    assert!(f.overloaded_requests <= r.overloaded_requests);
}

#[test]
fn longer_startup_hurts_reactive_more_than_floodgate() {
    let cfg = Arc::new(Config::from_toml("[forecast]\nhorizon = \"10m\"\n").expect("config"));
    let text = log(&standard_scenarios(2, START));
    let at = |startup_ms: i64| backtest(text.as_bytes(), cfg.clone(), &Model { startup_ms, ..Model::default() }).expect("backtest");
    let (fast, slow) = (at(90_000), at(300_000));
    let over = |b: &Backtest, p: &str| b.viral_total(p).map_or(f64::NAN, |v| v.overloaded_requests);
    eprintln!(
        "start-up 90s → 5m: reactive {:.0} → {:.0}, floodgate {:.0} → {:.0}",
        over(&fast, "reactive"),
        over(&slow, "reactive"),
        over(&fast, "floodgate"),
        over(&slow, "floodgate")
    );
    assert!(over(&slow, "reactive") > over(&fast, "reactive"));
    assert!(over(&slow, "floodgate") - over(&fast, "floodgate") < over(&slow, "reactive") - over(&fast, "reactive"));
}

#[test]
fn no_setting_of_the_sweep_is_cheaper_than_the_oracle_at_zero_overload() {
    let cfg = Arc::new(Config::from_toml("").expect("config"));
    let s = sweep(log(&standard_scenarios(1, START)).as_bytes(), cfg, &Model::default()).expect("sweep");
    eprintln!("{}", floodgate::backtest::sweep::text_table(&s));
    assert_eq!(s.startups.iter().map(|f| f.startup_ms).collect::<Vec<_>>(), STARTUPS_MS);
    for f in &s.startups {
        let o = &f.oracle;
        assert_eq!(o.overloaded_requests, 0.0, "start-up {}: the oracle serves every request: {o:?}", f.startup_ms);
        let mut at_zero = 0;
        for p in f.points.iter().filter(|p| p.overloaded_requests == 0.0) {
            at_zero += 1;
            assert!(
                p.replica_minutes >= o.replica_minutes - 1e-6,
                "start-up {}: {} {} is cheaper than the oracle at zero overload ({} < {})",
                f.startup_ms,
                p.policy,
                p.setting,
                p.replica_minutes,
                o.replica_minutes
            );
        }
        assert!(at_zero > 0, "start-up {}: some setting must reach zero overload, or the bound tests nothing", f.startup_ms);
        // The slack of reactive autoscaling costs: utilisation 0.5 pays more than 0.9.
        let cost = |u: f64| f.points.iter().find(|p| p.policy == "reactive" && p.target_utilisation == Some(u)).map(|p| p.replica_minutes);
        let (Some(lax), Some(tight)) = (cost(0.5), cost(0.9)) else { panic!("reactive 0.5 and 0.9 in the sweep") };
        assert!(lax > tight, "start-up {}: {lax} vs {tight}", f.startup_ms);
    }
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn cli_json_numbers_are_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .arg("backtest")
        .arg(repo("examples/viral-mailing.ndjson"))
        .arg("--config")
        .arg(repo("examples/floodgate.toml"))
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("run floodgate backtest");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(table.contains("floodgate") && table.contains("reactive"), "{table}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid JSON");
    let minutes = v["minutes"].as_u64().expect("minutes") as usize;
    assert!(minutes > 60);
    let targets = v["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 3, "shop-web, blog-web, events-web");
    let clicks = v["input"]["clicks"].as_f64().expect("clicks");
    let mut all_requests = 0.0;
    for t in targets {
        let rpc = t["requests_per_click"].as_f64().expect("rpc");
        let per_min: Vec<f64> = t["requests_per_minute"].as_array().expect("series").iter().map(|x| x.as_f64().expect("number")).collect();
        assert_eq!(per_min.len(), minutes);
        let total: f64 = per_min.iter().sum();
        all_requests += total / rpc;
        let policies = t["policies"].as_array().expect("policies");
        let names: Vec<&str> = policies.iter().filter_map(|p| p["summary"]["policy"].as_str()).collect();
        assert_eq!(names, ["reactive", "trend", "floodgate"]);
        for p in policies {
            let s = &p["summary"];
            let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s}"));
            assert!((f("requests") - total).abs() < 1e-6, "{s}");
            assert!(f("overloaded_requests") >= 0.0 && f("overloaded_requests") <= f("requests"), "{s}");
            assert!((f("overloaded_pct") - 100.0 * f("overloaded_requests") / f("requests").max(1e-12)).abs() < 1e-6, "{s}");
            assert!(f("minutes_overloaded") <= minutes as f64);
            let cap: Vec<f64> = p["capacity_per_minute"].as_array().expect("capacity").iter().map(|x| x.as_f64().expect("n")).collect();
            let over: f64 = per_min.iter().zip(&cap).map(|(r, c)| (r - c).max(0.0)).sum();
            assert!((over - f("overloaded_requests")).abs() < 1e-6 * (1.0 + over), "{s}");
            let peak = f("peak_replicas");
            let requested = p["provisioned"]["requested"].as_array().expect("steps");
            assert!(requested.iter().all(|st| st["replicas"].as_f64().expect("r") <= peak));
            // Each minute costs at least min_replicas and at most the peak.
            assert!(f("replica_minutes") <= peak * minutes as f64 + 1e-6, "{s}");
            assert!(f("replica_minutes") >= 2.0 * minutes as f64 - 1e-6, "{s}");
            assert!(cap.iter().all(|&c| c <= peak * t["capacity_per_replica"].as_f64().expect("c") * 60.0 + 1e-6));
        }
    }
    assert!((all_requests - clicks).abs() < 1e-6, "requests / requests_per_click sums to the clicks ({all_requests} vs {clicks})");
    for c in v["campaigns"].as_array().expect("campaigns") {
        if c["viral_onset_ms"].is_null() {
            assert!(c["leads"].as_array().is_some_and(Vec::is_empty), "{c}");
        }
    }
    assert!(v.get("sweep").is_none(), "no sweep without --sweep");
    let html = std::fs::read_to_string(&html).expect("html written");
    assert!(html.starts_with("<!doctype html>") && !html.contains("http://") && !html.contains("https://"), "self-contained");
}

#[test]
fn cli_sweep_writes_the_frontier_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .arg("backtest")
        .arg(repo("examples/viral-mailing.ndjson"))
        .args(["--sweep", "--day", "--json"])
        .arg(&json)
        .output()
        .expect("run floodgate backtest --sweep");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(table.contains("cost–overload frontier") && table.contains("oracle"), "{table}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid JSON");
    assert_eq!(v["model"]["day"], true);
    assert_eq!(v["minutes"], 1440, "--day: one whole UTC day");
    let s = &v["sweep"];
    assert_eq!(s["day"], true);
    let startups = s["startups"].as_array().expect("startups");
    let ms: Vec<i64> = startups.iter().map(|f| f["startup_ms"].as_i64().expect("startup_ms")).collect();
    assert_eq!(ms, STARTUPS_MS);
    for f in startups {
        let o = &f["oracle"];
        assert_eq!(o["policy"], ORACLE);
        let oracle_cost = o["replica_minutes"].as_f64().expect("oracle cost");
        assert!(oracle_cost >= 3.0 * 1440.0 * 2.0 - 1e-6, "at least min_replicas (2) on 3 targets all day: {oracle_cost}");
        let points = f["points"].as_array().expect("points");
        let count = |p: &str| points.iter().filter(|x| x["policy"] == p).count();
        assert_eq!(count("reactive"), REACTIVE_UTILISATIONS.len());
        assert_eq!(count("trend"), TREND_UTILISATIONS.len());
        assert!(count("floodgate") >= 10, "a grid of floodgate settings");
        assert_eq!(points.iter().filter(|x| x["configured"] == true).count(), 1, "exactly one configured floodgate");
        for p in points {
            let num = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{k} in {p}"));
            assert!(p["setting"].as_str().is_some_and(|x| !x.is_empty()), "{p}");
            assert!(p["on_frontier"].is_boolean(), "{p}");
            assert!((num("overloaded_pct") - 100.0 * num("overloaded_requests") / num("requests")).abs() < 1e-9, "{p}");
            assert!((num("cost_vs_oracle") - num("replica_minutes") / oracle_cost).abs() < 1e-9, "{p}");
            match p["policy"].as_str() {
                Some("reactive" | "trend") => assert!(p["target_utilisation"].as_f64().is_some() && p["floodgate"].is_null(), "{p}"),
                Some("floodgate") => {
                    assert!(p["floodgate"]["horizon_ms"].as_i64().is_some() && p["floodgate"]["r_quantile"].as_f64().is_some(), "{p}")
                }
                other => panic!("unexpected policy {other:?}"),
            }
        }
        assert!(points.iter().any(|p| p["policy"] == "reactive" && p["on_frontier"] == true), "reactive has a frontier");
        assert!(f["configured_dominated_by"].is_array());
    }
}

#[test]
fn cli_rejects_bad_flags_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .args(["backtest", "--startup", "ninety"])
        .arg(repo("examples/viral-mailing.ndjson"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ninety"));
}

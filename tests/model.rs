//! The learned model file (`--model`, `floodgate model show`), end to end
//! through the binary: it round-trips exactly, carrying it between two
//! halves of a log learns what the whole log does (up to the campaigns
//! running at the cut, see `a_log_in_two_halves_learns_what_the_whole_does`),
//! bad files are refused naming the file and the reason.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use floodgate::simulate::Rng;
use serde_json::Value;

const START: i64 = 1_772_409_600_000;
const HOUR: i64 = 3_600_000;
/// Campaigns in the log, one a day.
const CAMPAIGNS: i64 = 6;
/// Clicks come at most this long after their send (the log has none later).
const LAST_CLICK: i64 = 10 * HOUR;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_floodgate"))
}

/// `floodgate replay` of `log` (on stdin) with `--model model` and a
/// configuration whose far-future guard lets the log's quiet nights pass.
fn replay(dir: &Path, log: &[u8], model: &Path) -> Output {
    let cfg = dir.join("floodgate.toml");
    std::fs::write(&cfg, "[estimator]\nmax_future = \"2d\"\n").expect("config");
    let mut child = bin()
        .args(["replay", "-", "--config"])
        .arg(&cfg)
        .arg("--model")
        .arg(model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floodgate");
    // A refused model stops the command before it reads its input.
    let _ = child.stdin.take().expect("stdin").write_all(log);
    child.wait_with_output().expect("wait")
}

/// Campaigns of target `web`, one a day (two audiences, alternating), each
/// with lognormal direct clicks (median 1 h) cut at `LAST_CLICK`; the lines
/// of the campaigns sent before `cut_day` and of those after, sorted.
fn log(cut_day: i64) -> (Vec<u8>, Vec<u8>) {
    let (a, b, _) = log_and_cut(cut_day);
    (a, b)
}

/// [`log`], and the age at the cut of the last campaign of the first half:
/// its first run ends by closing the bin (1 min) of the half's last event.
fn log_and_cut(cut_day: i64) -> (Vec<u8>, Vec<u8>, i64) {
    let mut rng = Rng::new(9);
    let mut first: Vec<(i64, String)> = Vec::new();
    let mut second: Vec<(i64, String)> = Vec::new();
    for c in 0..CAMPAIGNS {
        let send = START + c * 24 * HOUR;
        let audience = if c % 2 == 0 { "news" } else { "shop" };
        let half = if c < cut_day { &mut first } else { &mut second };
        half.push((
            send,
            format!(r#"{{"type":"send","campaign":"c{c}","ts":{send},"recipients":10000,"target":"web","audience":"{audience}"}}"#),
        ));
        for k in 0..10_000 {
            if rng.uniform() >= 0.02 {
                continue;
            }
            let ts = send + (HOUR as f64 * rng.normal().exp()) as i64;
            if ts < send + LAST_CLICK {
                half.push((ts, format!(r#"{{"type":"click","campaign":"c{c}","ts":{ts},"id":"{k}","person":"p{k}"}}"#)));
            }
        }
    }
    let cut = first.iter().map(|&(t, _)| t).max().map_or(START, |t| (t / 60_000 + 1) * 60_000);
    let lines = |mut v: Vec<(i64, String)>| {
        v.sort();
        v.into_iter().flat_map(|(_, l)| (l + "\n").into_bytes()).collect::<Vec<u8>>()
    };
    (lines(first), lines(second), cut - (START + (cut_day - 1) * 24 * HOUR))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("model file")).expect("JSON")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

/// Saving, loading and saving again (an empty log in between) gives the
/// same file byte for byte, and the same learned values.
#[test]
fn a_saved_model_loads_and_saves_back_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = log(3);
    let whole = [a, b].concat();
    let first = dir.path().join("first.json");
    let out = replay(dir.path(), &whole, &first);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file; starting from the configured priors"));
    let second = dir.path().join("second.json");
    std::fs::copy(&first, &second).expect("copy");
    ok(&replay(dir.path(), b"", &second));
    let (x, y) = (std::fs::read(&first).expect("first"), std::fs::read(&second).expect("second"));
    assert_eq!(x, y, "load → save changed the file");
    let m = read_json(&first);
    assert_eq!(m["format"], "floodgate-model");
    assert_eq!(m["version"], 1);
    assert!(m["targets"]["web"]["audiences"]["news"]["delays"]["observed"].as_f64().is_some_and(|n| n > 100.0), "{m}");
    let show = |p: &Path| {
        let out = bin().args(["model", "show", "--json", "--model"]).arg(p).output().expect("model show");
        ok(&out);
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    assert_eq!(show(&first), show(&second));
}

/// The halves learn what the whole log learns, except from the campaign
/// still running when the first half ends: its delay bins that are not
/// complete at the cut (upper edge above its age then) are only folded in
/// by the whole run, with the clicks in them, and its click-through pool
/// entry keeps the age it had at the cut (a later run sees no send for its
/// later events, so it cannot go on learning from it). So every delay bin
/// complete at the cut (`in_bin`, `up_to_bin`) and the pools' clicks and
/// recipients are identical; `observed` differs by exactly the clicks of the
/// later bins; and the learned median delay and click-through agree within 1 %.
#[test]
fn a_log_in_two_halves_learns_what_the_whole_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, cut_age) = log_and_cut(3);
    let whole = dir.path().join("whole.json");
    ok(&replay(dir.path(), &[a.clone(), b.clone()].concat(), &whole));
    let halves = dir.path().join("halves.json");
    ok(&replay(dir.path(), &a, &halves));
    ok(&replay(dir.path(), &b, &halves));
    let (w, h) = (read_json(&whole), read_json(&halves));
    let mut waves = vec![("web".to_string(), &w["targets"]["web"]["direct"], &h["targets"]["web"]["direct"])];
    for a in ["news", "shop"] {
        waves.push((a.to_string(), &w["targets"]["web"]["audiences"][a], &h["targets"]["web"]["audiences"][a]));
    }
    for (name, x, y) in waves {
        let pool = |v: &Value, key: &str| -> Vec<f64> {
            v["click_through_pool"].as_array().expect("pool").iter().filter_map(|e| e[key].as_f64()).collect()
        };
        assert_eq!(pool(x, "direct_clicks"), pool(y, "direct_clicks"), "{name}");
        assert_eq!(pool(x, "recipients"), pool(y, "recipients"), "{name}");
        assert_eq!(pool(x, "direct_clicks").len(), (CAMPAIGNS / if name == "web" { 1 } else { 2 }) as usize, "{name}");
        // Bins whose upper edge is below the last first-half campaign's age
        // at the cut are complete for every campaign in both runs.
        let values =
            |v: &Value, key: &str| -> Vec<f64> { v["delays"][key].as_array().expect(key).iter().filter_map(Value::as_f64).collect() };
        let complete = (0..57).filter(|&k| 10_000.0 * 1.25f64.powi(k) <= cut_age as f64).count();
        assert!(complete > 30, "{cut_age} ms");
        for key in ["in_bin", "up_to_bin"] {
            assert_eq!(values(x, key)[..complete], values(y, key)[..complete], "{name} {key}");
        }
        let later = |v: &Value| values(v, "in_bin")[complete..].iter().sum::<f64>();
        let observed = |v: &Value| v["delays"]["observed"].as_f64().expect("observed");
        assert_eq!(observed(x) - later(x), observed(y) - later(y), "{name}");
    }
    let show = |p: &Path| {
        let out = bin().args(["model", "show", "--json", "--model"]).arg(p).output().expect("model show");
        ok(&out);
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let (sw, sh) = (show(&whole), show(&halves));
    for key in ["response_median_s", "click_through"] {
        let (x, y) = (sw[0]["direct_wave"][key].as_f64().expect(key), sh[0]["direct_wave"][key].as_f64().expect(key));
        assert!((x / y - 1.0).abs() < 0.01, "{key}: whole {x}, halves {y}");
    }
}

/// A file that is not a model, or of an unknown version, or with an array
/// of the wrong length, stops the command (exit 2) with the file and the
/// reason; nothing is written over it.
#[test]
fn a_bad_model_file_is_refused_naming_the_file_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _) = log(1);
    let good = dir.path().join("good.json");
    ok(&replay(dir.path(), &a, &good));
    let text = std::fs::read_to_string(&good).expect("good");
    let short = {
        let mut m: Value = serde_json::from_str(&text).expect("JSON");
        if let Some(v) = m["targets"]["web"]["direct"]["delays"]["in_bin"].as_array_mut() {
            v.pop();
        }
        m.to_string()
    };
    let cases = [
        ("garbage.json", "{\"format\": \"floodgate-model\", \"version\": 1, \"bin_ms\"".to_string(), "not a valid model file"),
        ("version.json", text.replacen("\"version\": 1", "\"version\": 2", 1), "`version` 2 is not known"),
        ("other.json", "{\"format\": \"something-else\", \"version\": 1}".to_string(), "not a floodgate model file"),
        ("short.json", short, "`targets.web.direct.delays.in_bin` has 56 values, expected 57"),
    ];
    for (file, content, reason) in cases {
        let p = dir.path().join(file);
        std::fs::write(&p, &content).expect("write");
        let out = replay(dir.path(), &a, &p);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(stderr.contains(&p.display().to_string()) && stderr.contains(reason), "{file}: {stderr}");
        assert_eq!(std::fs::read_to_string(&p).expect("still there"), content, "{file} was overwritten");
        let show = bin().args(["model", "show", "--model"]).arg(&p).output().expect("model show");
        assert_eq!(show.status.code(), Some(2), "{file}");
        assert!(String::from_utf8_lossy(&show.stderr).contains(reason), "{file}");
    }
}

/// `model show` prints each target's and audience's learned click-through
/// (as `--json` gives it), with its weight and campaigns.
#[test]
fn model_show_prints_the_learned_click_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = log(3);
    let p = dir.path().join("m.json");
    ok(&replay(dir.path(), &[a, b].concat(), &p));
    let json = bin().args(["model", "show", "--json", "--model"]).arg(&p).output().expect("model show --json");
    ok(&json);
    let views: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let table = bin().args(["model", "show", "--model"]).arg(&p).output().expect("model show");
    ok(&table);
    let text = String::from_utf8(table.stdout).expect("utf-8");
    let web = &views[0];
    assert_eq!(web["target"], "web");
    let ct = web["direct_wave"]["click_through"].as_f64().expect("click_through");
    assert!((ct / 0.02 - 1.0).abs() < 0.15, "learned click-through {ct}");
    let row = text.lines().find(|l| l.starts_with("web") && l.contains("(all)")).expect("the target's row");
    assert!(row.contains(&format!("{:.3}%", 100.0 * ct)), "{row}");
    for a in web["audiences"].as_array().expect("audiences") {
        let name = a["audience"].as_str().expect("name");
        let ct = a["direct_wave"]["click_through"].as_f64().expect("click_through");
        let row = text.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).expect("the audience's row");
        assert!(row.contains(&format!("{:.3}%", 100.0 * ct)), "{row}");
    }
}

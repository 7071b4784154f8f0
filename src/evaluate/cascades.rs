//! Real re-share cascades (`../shared/data/real/*/events.ndjson`: one root
//! `send`, re-shares as `click`s with `generation` and `parent`, the same
//! re-shares again as `forward`s) converted into floodgate's event schema
//! (`schemas/event.schema.json`), for `floodgate evaluate` (`scripts/eval-real`).
//!
//! The rules (each unit-tested below on a hand-written tree):
//! - **Time.** The cascades span years and the file is sorted by cascade.
//!   Each cascade is moved as a whole so that its root falls at
//!   `day_start + (xxh3(campaign) mod 24 h)` — a fixed, reproducible spread
//!   over one day — and every delay within the cascade is kept exactly. The
//!   output is sorted by the new time (ties keep input order), `ts` as epoch
//!   milliseconds.
//! - **Cascades longer than the window.** Re-shares more than `max_age`
//!   after their root are dropped (and counted): a mailing's demand is
//!   planned over hours, not years, and a day keeps 90 % of the re-shares.
//!   Re-shares timed before their root (clock errors) are dropped and counted.
//! - **Unknown recipients.** The data do not say how many people saw the
//!   root, and floodgate's send needs `recipients`. Every root gets the same
//!   `recipients` (default 5,000: with the default click-through 0.05 that
//!   expects 250 direct re-shares, about the median cascade's root children
//!   over the whole set). A per-cascade figure (e.g. its own root-children
//!   count) would leak the answer into the send and is not used.
//! - **Forwards without addressees** are dropped (and counted): a forward
//!   needs `recipients`, and an invented count would feed the forward model
//!   an exposure nobody measured. The clicks carry the same re-shares, with
//!   their `parent`, which is what the lineage estimator needs.
//! - **Clicks** keep `id`, `person`, `generation`; `parent` is kept for
//!   generation ≥ 1 (a generation-0 click never has one) and left out when
//!   null. Every event gets `target` (one web service for the whole set).
//! - **A cascade without a root** keeps its clicks, shifted by its first
//!   event, with no send (counted; `evaluate` reports it as a campaign
//!   without a send).

use std::collections::HashMap;
use std::io::{BufRead, Write};

use serde::Serialize;
use serde_json::{json, Value};

/// How to convert.
#[derive(Clone, Debug, PartialEq)]
pub struct CascadeRules {
    /// Start of the day the roots are spread over, epoch ms.
    pub day_start_ms: i64,
    /// Re-shares later than this after their root are dropped, ms.
    pub max_age_ms: i64,
    /// `recipients` of every root send.
    pub recipients: u64,
    /// `target` of every event.
    pub target: String,
}

/// What the conversion did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConvertReport {
    /// Input lines read (non-empty).
    pub lines: u64,
    /// Lines that were not JSON objects with `type`, `campaign`, `ts_ms`.
    pub malformed: u64,
    /// Cascades.
    pub cascades: u64,
    /// Cascades without a root send.
    pub without_root: u64,
    /// Sends written.
    pub sends: u64,
    /// Clicks written.
    pub clicks: u64,
    /// Forwards dropped (no addressee count).
    pub forwards_dropped: u64,
    /// Clicks dropped: later than `max_age` after the root.
    pub too_late: u64,
    /// Clicks dropped: before their root.
    pub before_root: u64,
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Reading or writing.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One event kept for output.
struct Kept {
    campaign: u32,
    ts_ms: i64,
    value: Value,
}

/// Converts `input` (cascade NDJSON) to floodgate NDJSON on `output`.
pub fn convert(input: impl BufRead, mut output: impl Write, rules: &CascadeRules) -> Result<ConvertReport, ConvertError> {
    let mut report = ConvertReport::default();
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut roots: HashMap<u32, i64> = HashMap::new();
    let mut first: HashMap<u32, i64> = HashMap::new();
    let mut kept: Vec<Kept> = Vec::new();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => {
                report.malformed += 1;
                continue;
            }
        };
        let (Some(kind), Some(campaign), Some(ts_ms)) = (v["type"].as_str(), v["campaign"].as_str(), v["ts_ms"].as_i64()) else {
            report.malformed += 1;
            continue;
        };
        let c = match index.get(campaign) {
            Some(&c) => c,
            None => {
                let c = names.len() as u32;
                names.push(campaign.to_string());
                index.insert(campaign.to_string(), c);
                c
            }
        };
        let f = first.entry(c).or_insert(ts_ms);
        *f = (*f).min(ts_ms);
        match kind {
            "send" => {
                let r = roots.entry(c).or_insert(ts_ms);
                *r = (*r).min(ts_ms);
            }
            "click" => {
                let generation = v["generation"].as_u64().unwrap_or(0);
                let mut out = json!({ "type": "click", "campaign": campaign, "ts": 0, "generation": generation, "target": rules.target });
                for key in ["id", "person"] {
                    if let Some(s) = v[key].as_str().filter(|s| !s.is_empty()) {
                        out[key] = json!(s);
                    }
                }
                if let Some(p) = v["parent"].as_str().filter(|p| generation >= 1 && !p.is_empty()) {
                    out["parent"] = json!(p);
                }
                kept.push(Kept { campaign: c, ts_ms, value: out });
            }
            "forward" => report.forwards_dropped += 1,
            _ => report.malformed += 1,
        }
    }
    report.cascades = names.len() as u64;
    // Roots first (a send sorts before a click at the same time).
    let mut out: Vec<(i64, u8, usize, Value)> = Vec::with_capacity(kept.len() + names.len());
    let shift = |c: u32, root: i64| -> i64 {
        let offset = (xxhash_rust::xxh3::xxh3_64(names[c as usize].as_bytes()) % 86_400_000) as i64;
        rules.day_start_ms + offset - root
    };
    for c in 0..names.len() as u32 {
        match roots.get(&c) {
            Some(&root) => {
                let ts = root + shift(c, root);
                let v = json!({ "type": "send", "campaign": names[c as usize], "ts": ts, "recipients": rules.recipients, "target": rules.target });
                out.push((ts, 0, c as usize, v));
                report.sends += 1;
            }
            None => report.without_root += 1,
        }
    }
    for (i, mut k) in kept.into_iter().enumerate() {
        let root = roots.get(&k.campaign).or(first.get(&k.campaign)).copied().unwrap_or(k.ts_ms);
        if k.ts_ms < root {
            report.before_root += 1;
            continue;
        }
        if k.ts_ms - root > rules.max_age_ms {
            report.too_late += 1;
            continue;
        }
        let ts = k.ts_ms + shift(k.campaign, root);
        k.value["ts"] = json!(ts);
        out.push((ts, 1, names.len() + i, k.value));
        report.clicks += 1;
    }
    out.sort_by_key(|e| (e.0, e.1, e.2));
    for (_, _, _, v) in &out {
        serde_json::to_writer(&mut output, v).map_err(std::io::Error::other)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> CascadeRules {
        CascadeRules { day_start_ms: 1_772_409_600_000, max_age_ms: 86_400_000, recipients: 5000, target: "social".into() }
    }

    /// A tiny hand-written tree: root r (2012), children a (+30 s) and b
    /// (+2 min), grandchild c of a (+10 min), a forward, a re-share two days
    /// late, one before the root, a bad line; and a second cascade without
    /// a root.
    const TREE: &str = r#"{"type":"send","campaign":"t:1","ts_ms":1352243179000,"id":"r:0","person":"r","recipients":null}
{"type":"click","campaign":"t:1","ts_ms":1352243209000,"id":"a:1","person":"a","generation":0,"parent":null,"parent_id":"r:0"}
{"type":"forward","campaign":"t:1","ts_ms":1352243209000,"id":"a:1","person":"a","recipients":null}
{"type":"click","campaign":"t:1","ts_ms":1352243299000,"id":"b:2","person":"b","generation":0,"parent":null}
{"type":"click","campaign":"t:1","ts_ms":1352243779000,"id":"c:3","person":"c","generation":1,"parent":"a","parent_id":"a:1"}
{"type":"click","campaign":"t:1","ts_ms":1352416000000,"id":"d:4","person":"d","generation":1,"parent":"b"}
{"type":"click","campaign":"t:1","ts_ms":1352243000000,"id":"e:5","person":"e","generation":0,"parent":null}
not json
{"type":"click","campaign":"t:2","ts_ms":1400000000000,"id":"x:1","person":"x","generation":0,"parent":null}
"#;

    #[test]
    fn a_hand_written_tree_converts_by_the_rules() {
        let mut out = Vec::new();
        let report = convert(TREE.as_bytes(), &mut out, &rules()).expect("convert");
        assert_eq!(
            report,
            ConvertReport {
                lines: 9,
                malformed: 1,
                cascades: 2,
                without_root: 1,
                sends: 1,
                clicks: 4,
                forwards_dropped: 1,
                too_late: 1,
                before_root: 1
            }
        );
        let lines: Vec<Value> = std::str::from_utf8(&out).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(lines.len(), 5);
        let t1: Vec<&Value> = lines.iter().filter(|v| v["campaign"] == "t:1").collect();
        let root = t1[0]["ts"].as_i64().expect("ts");
        assert_eq!(t1[0]["type"], "send");
        assert_eq!(t1[0]["recipients"], 5000);
        assert_eq!(t1[0]["target"], "social");
        // The root lands inside the day, at the campaign's hash offset.
        let offset = (xxhash_rust::xxh3::xxh3_64(b"t:1") % 86_400_000) as i64;
        assert_eq!(root, 1_772_409_600_000 + offset);
        // Delays within the cascade are kept: +30 s, +2 min, +10 min.
        let delays: Vec<i64> = t1[1..].iter().map(|v| v["ts"].as_i64().expect("ts") - root).collect();
        assert_eq!(delays, vec![30_000, 120_000, 600_000]);
        assert_eq!(t1[3]["parent"], "a", "a generation-1 click keeps its parent");
        assert!(t1[1].get("parent").is_none(), "a generation-0 click has no parent");
        assert_eq!(t1[1]["id"], "a:1");
        // Every line decodes as a floodgate event, in time order.
        let mut last = i64::MIN;
        for v in &lines {
            let text = serde_json::to_string(v).expect("json");
            let ev = crate::decode::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {}", e.detail));
            assert!(ev.ts_ms >= last);
            last = ev.ts_ms;
        }
        // The rootless cascade keeps its click, shifted by its first event.
        let x = lines.iter().find(|v| v["campaign"] == "t:2").expect("t:2 kept");
        let offset2 = (xxhash_rust::xxh3::xxh3_64(b"t:2") % 86_400_000) as i64;
        assert_eq!(x["ts"].as_i64(), Some(1_772_409_600_000 + offset2));
    }
}

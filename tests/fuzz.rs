//! Time-boxed fuzzing of the decoder and the engine (issue #7).
//!
//! Mutates valid events (byte flips, insertions, deletions, truncation,
//! splices of two lines, numbers replaced by extremes) and feeds the result to
//! `decode`; every decoded event is applied to an engine with small limits,
//! with random watermark jumps. Nothing may panic, every input is either an
//! event or a `Rejection` with a reason, and the engine's state stays within
//! its limits. Runs for `FLOODGATE_FUZZ_SECS` seconds (default 10; CI uses
//! the default), deterministic per `FLOODGATE_FUZZ_SEED`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floodgate::config::Config;
use floodgate::decode::decode;
use floodgate::engine::Engine;
use floodgate::simulate::{demo_scenario, simulate, Rng};

const EXTREMES: [&str; 10] = [
    "0",
    "-1",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "NaN",
    "\"\"",
    "null",
    "\"9999-12-31T23:59:59.999999999+23:59\"",
];

fn mutate(rng: &mut Rng, line: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    let n = 1 + (rng.next_u64() % 4) as usize;
    for _ in 0..n {
        let len = v.len().max(1);
        let at = (rng.next_u64() as usize) % len;
        match rng.next_u64() % 7 {
            0 => {
                if let Some(b) = v.get_mut(at) {
                    *b ^= 1 << (rng.next_u64() % 8);
                }
            }
            1 => v.insert(at.min(v.len()), (rng.next_u64() % 256) as u8),
            2 => {
                if at < v.len() {
                    v.remove(at);
                }
            }
            3 => v.truncate(at),
            4 => {
                let cut = (rng.next_u64() as usize) % other.len().max(1);
                v.truncate(at);
                v.extend_from_slice(other.get(cut..).unwrap_or(&[]));
            }
            5 => {
                // Replace a number or string value with an extreme.
                let text = String::from_utf8_lossy(&v).into_owned();
                let start = text.find(':').map_or(0, |p| (p + 1 + (at % 3)).min(text.len()));
                if text.is_char_boundary(start) {
                    let end = text[start..].find([',', '}']).map_or(text.len(), |e| start + e);
                    let x = EXTREMES[(rng.next_u64() % EXTREMES.len() as u64) as usize];
                    v = format!("{}{}{}", &text[..start], x, &text[end..]).into_bytes();
                }
            }
            _ => {
                let extra = b",\"generation\":4294967296,\"parent\":\"\\u0000\"";
                let pos = v.len().saturating_sub(1);
                v.splice(pos..pos, extra.iter().copied());
            }
        }
    }
    v
}

#[test]
fn decoder_and_engine_survive_mutated_input() {
    let secs: u64 = std::env::var("FLOODGATE_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("FLOODGATE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let corpus: Vec<Vec<u8>> = simulate(&demo_scenario(3, 1_772_438_400_000)).into_iter().map(|e| e.line.into_bytes()).collect();
    let cfg = Config::from_toml("[limits]\nmax_campaigns = 200\nmax_clickers_per_campaign = 500\nmax_dedup_ids = 2000\nmax_targets = 5\n")
        .expect("config");
    let max_campaigns = cfg.limits.max_campaigns as usize;
    let cfg = Arc::new(cfg);
    let mut engine = Engine::new(&*cfg).expect("engine").with_estimates(true);
    let (mut cursor, mut rounds, mut accepted) = (0usize, 0u64, 0u64);
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut inputs, mut decoded, mut rejected) = (0u64, 0u64, 0u64);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        for _ in 0..1000 {
            // Walk the log in order, a few lines out of order, so most
            // events are on time and the engine does real work; start over
            // with a fresh engine at the end.
            cursor += 1;
            if cursor >= corpus.len() {
                engine.flush(&mut out);
                out.clear();
                cursor = 0;
                engine = Engine::new(&*cfg).expect("engine").with_estimates(true);
                rounds += 1;
            }
            let i = (cursor + (rng.next_u64() % 40) as usize).min(corpus.len() - 1);
            let j = (rng.next_u64() as usize) % corpus.len();
            let input = if rng.chance(0.2) { corpus[i].clone() } else { mutate(&mut rng, &corpus[i], &corpus[j]) };
            inputs += 1;
            match decode(&input) {
                Ok(ev) => {
                    decoded += 1;
                    match engine.apply(&ev, &mut out) {
                        Ok(floodgate::engine::Applied::Accepted) => accepted += 1,
                        Ok(_) => {}
                        Err(r) => assert!(!r.detail.is_empty()),
                    }
                }
                Err(r) => {
                    rejected += 1;
                    assert!(!r.detail.is_empty(), "a rejection says why");
                }
            }
            if rng.chance(0.01) {
                // Watermark: usually the natural one, sometimes a wild jump.
                let wm = if rng.chance(0.01) {
                    engine.natural_watermark().unwrap_or(0).saturating_add((rng.next_u64() % 7_200_000) as i64)
                } else {
                    engine.natural_watermark().unwrap_or(0)
                };
                engine.advance_to(wm, &mut out);
            }
            out.clear();
            assert!(engine.campaigns_tracked() <= max_campaigns);
        }
    }
    engine.flush(&mut out);
    eprintln!(
        "fuzz: {inputs} inputs, {decoded} decoded, {rejected} rejected, {accepted} applied by the engine, {rounds} passes over the log"
    );
    assert!(accepted > 10_000, "the engine was exercised");
    assert!(inputs > 10_000, "the fuzzer ran ({inputs} inputs)");
    assert!(decoded > 0 && rejected > 0, "both paths exercised");
}

//! Bounded state (issue #7): a flood of unique campaign ids keeps memory under
//! budget, is counted, and does not change the real campaigns' signals.
//! Memory is measured with a counting global allocator (live heap bytes), not
//! RSS, so the number is exact and repeatable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use floodgate::config::Config;
use floodgate::engine::Engine;
use floodgate::replay::replay_bytes;

use floodgate::signal::Signal;
use floodgate::simulate::{demo_scenario, simulate};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const START: i64 = 1_772_438_400_000;

/// Episode signals in full (CloudEvents JSON, so values are compared too).
fn episodes(signals: &[Signal]) -> Vec<String> {
    signals
        .iter()
        .filter(|s| matches!(s, Signal::ViralOnset(_) | Signal::ViralSubsided(_)))
        .filter(|s| !s.subject().starts_with("junk-"))
        .map(|s| s.to_cloudevent("test"))
        .collect()
}

#[test]
fn a_flood_of_unique_campaign_ids_is_bounded_and_harmless() {
    let real = simulate(&demo_scenario(21, START));
    let clean: String = real.iter().map(|e| e.line.clone() + "\n").collect();

    // The same log with 1M junk campaigns (one click each, unique ids)
    // interleaved in event time.
    let flood_n = 1_000_000usize;
    let mut dirty = String::with_capacity(clean.len() + flood_n * 110);
    let span = real.last().map_or(1, |e| e.ts_ms - START).max(1);
    let mut j = 0usize;
    for e in &real {
        while j < flood_n && START + (j as i64 * span) / flood_n as i64 <= e.ts_ms {
            let ts = START + (j as i64 * span) / flood_n as i64;
            dirty.push_str(&format!("{{\"type\":\"click\",\"campaign\":\"junk-{j}\",\"ts\":{ts},\"person\":\"x{j}\"}}\n"));
            j += 1;
        }
        dirty.push_str(&e.line);
        dirty.push('\n');
    }

    let cfg = Arc::new(Config::from_toml("[limits]\nmax_campaigns = 100000\n").expect("config"));
    let (clean_signals, _, _) = replay_bytes(clean.as_bytes(), &mut Engine::new(&*cfg).expect("engine"));

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut engine = Engine::new(&*cfg).expect("engine");
    // Keep only the real campaigns' signals (the junk ones' estimates would
    // otherwise dominate the measured heap).
    let mut dirty_signals = Vec::new();
    let report = floodgate::replay::replay(
        dirty.as_bytes(),
        &mut engine,
        |s| {
            if !s.subject().starts_with("junk-") {
                dirty_signals.push(s.clone());
            }
            Ok(())
        },
        |e| panic!("unexpected rejection {e}"),
    )
    .expect("replay");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let stats = engine.stats();
    eprintln!(
        "flood: {} accepted, {} evicted, {} shed, peak engine heap {:.1} MiB, {} tracked at end",
        report.accepted,
        stats.shed_campaigns_evicted,
        stats.shed_campaigns,
        peak as f64 / (1 << 20) as f64,
        engine.campaigns_tracked()
    );
    assert!(engine.campaigns_tracked() <= 100_000);
    assert!(stats.shed_campaigns_evicted + stats.shed_campaigns > 0, "the flood was counted");
    assert!(peak < 256 << 20, "peak heap {peak} bytes over the 256 MiB budget");
    // The real campaigns' onsets and subsidings, with their R, are unchanged.
    let clean_episodes = episodes(&clean_signals);
    assert!(!clean_episodes.is_empty());
    assert_eq!(clean_episodes, episodes(&dirty_signals));
    // And their plans: the scale decisions for the real targets.
    let plans = |s: &[Signal]| s.iter().filter(|x| matches!(x, Signal::ScaleAhead(_))).map(|x| x.to_cloudevent("t")).collect::<Vec<_>>();
    assert_eq!(plans(&clean_signals), plans(&dirty_signals));
}

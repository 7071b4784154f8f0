//! Memory per tracked campaign and per tracked clicker, and allocations per
//! event, with a counting global allocator (live heap bytes, exact and
//! repeatable — not RSS).
//!
//! * `campaign_min`: 1 000 000 campaigns with one click each (the flood case:
//!   one open bin, no lineage).
//! * `campaign_full`: campaigns with a click in every bin of the retained
//!   window, i.e. a full ring of bins, plus their target, sends and
//!   forecast (lineage excluded: clicks without a person).
//! * `clicker`: one campaign with 200 000 distinct clickers (the default
//!   `limits.max_clickers_per_campaign`) spread over 50 bins (all within the
//!   lineage window): lineage bytes / clickers.
//! * allocations per event in steady state: `apply` (+ `advance_to`) and
//!   `decode`, over a stream that creates no new campaign.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use floodgate::decode::decode;
use floodgate::engine::Engine;
use floodgate::event::{Event, EventKind};
use floodgate::signal::Signal;

mod common;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BIN_MS: i64 = 60_000;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

fn click<'a>(campaign: &'a str, ts_ms: i64, person: Option<&'a str>, target: Option<&'a str>) -> Event<'a> {
    Event {
        kind: EventKind::Click,
        campaign: Cow::Borrowed(campaign),
        ts_ms,
        id: None,
        person: person.map(Cow::Borrowed),
        parent: None,
        generation: 0,
        recipients: 0,
        target: target.map(Cow::Borrowed),
        audience: None,
    }
}

/// Bytes per campaign with `n` campaigns of one click each.
fn campaign_min(n: usize) -> f64 {
    let names: Vec<String> = (0..n).map(|i| format!("campaign-{i:07}")).collect();
    let mut out: Vec<Signal> = Vec::new();
    let before = live();
    let mut engine = Engine::new(common::config(n as u32 + 1)).expect("engine");
    let base = live() - before;
    for (i, name) in names.iter().enumerate() {
        let ts = common::START + (i as i64 * 60_000 / n as i64);
        engine.apply(&click(name, ts, None, None), &mut out).expect("apply");
    }
    if let Some(wm) = engine.natural_watermark() {
        engine.advance_to(wm, &mut out);
    }
    assert_eq!(engine.campaigns_tracked(), n);
    let bytes = live() - before - base;
    drop(engine);
    bytes as f64 / n as f64
}

/// Bytes per campaign with `n` campaigns that each had a click in every bin
/// of the last `bins` bins, and a send with a target.
fn campaign_full(n: usize, bins: i64) -> f64 {
    let names: Vec<String> = (0..n).map(|i| format!("campaign-{i:07}")).collect();
    let targets: Vec<String> = (0..8).map(|i| format!("web-{i}")).collect();
    let mut out: Vec<Signal> = Vec::new();
    let before = live();
    let mut engine = Engine::new(common::config(n as u32 + 1)).expect("engine");
    for (i, name) in names.iter().enumerate() {
        let send = Event {
            kind: EventKind::Send,
            campaign: Cow::Borrowed(name),
            ts_ms: common::START,
            id: None,
            person: None,
            parent: None,
            generation: 0,
            recipients: 10_000,
            target: Some(Cow::Borrowed(&targets[i % 8])),
            audience: None,
        };
        engine.apply(&send, &mut out).expect("apply");
        out.clear();
    }
    for b in 0..bins {
        for (i, name) in names.iter().enumerate() {
            let mut ev = click(name, common::START + b * BIN_MS + 1 + (i as i64 % 1000), None, None);
            ev.generation = u32::from(b % 2 == 1);
            engine.apply(&ev, &mut out).expect("apply");
        }
        engine.advance_to(common::START + b * BIN_MS, &mut out);
        out.clear();
    }
    assert_eq!(engine.campaigns_tracked(), n);
    let bytes = live() - before;
    drop(engine);
    bytes as f64 / n as f64
}

/// Lineage bytes per clicker: one campaign with `n` clickers over 50 bins,
/// against the same campaign with its clicks anonymous.
fn clicker(n: usize) -> f64 {
    let persons: Vec<String> = (0..n).map(|i| format!("person-{i:07}")).collect();
    let run = |with_person: bool| {
        let mut out: Vec<Signal> = Vec::new();
        let before = live();
        let mut engine = Engine::new(common::config(10)).expect("engine");
        for (i, p) in persons.iter().enumerate() {
            let ts = common::START + (i as i64 * 50 * BIN_MS / n as i64);
            engine.apply(&click("big", ts, with_person.then_some(p.as_str()), None), &mut out).expect("apply");
            if let Some(wm) = engine.natural_watermark() {
                engine.advance_to(wm, &mut out);
            }
            out.clear();
        }
        engine.advance_to(common::START + 51 * BIN_MS, &mut out);
        live() - before
    };
    let with = run(true);
    let without = run(false);
    (with - without) as f64 / n as f64
}

/// Allocations per event: decode + apply + advance over a simulated log
/// (after a warm-up half), and apply alone on a warm engine.
fn allocs_per_event() -> (f64, f64, f64) {
    let mut lines = Vec::new();
    let mut group = 0;
    while lines.len() < 400_000 {
        lines.extend(common::simulate_group_lines(group));
        group += 1;
    }
    let mut engine = Engine::new(common::config(100_000)).expect("engine");
    let mut out: Vec<Signal> = Vec::with_capacity(1024);
    let half = lines.len() / 2;
    let step = |engine: &mut Engine, line: &str, out: &mut Vec<Signal>| {
        if let Ok(ev) = decode(line.as_bytes()) {
            let _ = engine.apply(&ev, out);
        }
        if let Some(wm) = engine.natural_watermark() {
            engine.advance_to(wm, out);
        }
        out.clear();
    };
    for l in &lines[..half] {
        step(&mut engine, l, &mut out);
    }
    let a0 = allocs();
    for l in &lines[half..] {
        step(&mut engine, l, &mut out);
    }
    let full = (allocs() - a0) as f64 / (lines.len() - half) as f64;
    let a0 = allocs();
    let mut ok = 0u64;
    for l in &lines[half..] {
        ok += u64::from(decode(l.as_bytes()).is_ok());
    }
    let dec = (allocs() - a0) as f64 / ok.max(1) as f64;
    // Apply only, on a warm campaign, within one bin (no bin closes).
    let ev_names: Vec<String> = (0..1000).map(|i| format!("p-{i}")).collect();
    let mut engine = Engine::new(common::config(10)).expect("engine");
    for p in &ev_names {
        let _ = engine.apply(&click("warm", common::START, Some(p), None), &mut out);
    }
    let a0 = allocs();
    for p in &ev_names {
        let _ = engine.apply(&click("warm", common::START + 1, Some(p), None), &mut out);
    }
    let apply = (allocs() - a0) as f64 / ev_names.len() as f64;
    (full, dec, apply)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !args.is_empty() && !args.iter().any(|a| "memory".contains(a.as_str())) {
        return;
    }
    let min = campaign_min(1_000_000);
    println!("campaign (one click, 1M campaigns): {min:.0} B/campaign");
    let full_n = 100_000;
    let full = campaign_full(full_n, 80);
    println!("campaign (full window of bins, send, target, {full_n} campaigns): {full:.0} B/campaign");
    let clk = clicker(200_000);
    println!("clicker (200k clickers in one campaign): {clk:.1} B/clicker");
    let (per_event, per_decode, per_apply) = allocs_per_event();
    println!(
        "allocations per event: {per_event:.3} (decode+apply+advance), {per_decode:.3} (decode), {per_apply:.3} (apply, warm campaign)"
    );
    common::write_result(
        "memory",
        &format!(
            r#"{{"campaign_min_bytes":{min},"campaign_full_bytes":{full},"campaign_full_n":{full_n},"clicker_bytes":{clk},"allocs_per_event":{per_event},"allocs_per_decode":{per_decode},"allocs_per_apply":{per_apply}}}"#
        ),
    );
}

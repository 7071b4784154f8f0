//! Engine: events applied per second (already decoded) with 1, 10 000 and
//! 1 000 000 live campaigns, and the estimator's cost per bin step per active
//! campaign.
//!
//! The apply stream is what `replay` does after decoding: `apply` then
//! `advance_to(natural_watermark)` per event, so the bin steps the stream
//! triggers are included. Event time advances by one bin every 100 000
//! events; events go round-robin over the campaigns; a third are direct
//! (generation-0) clicks, the rest forwarded clicks whose parent is the
//! campaign's previous clicker; every event has an id and a person.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use floodgate::engine::Engine;
use floodgate::event::{Event, EventKind};
use floodgate::signal::Signal;

mod common;

const EVENTS_PER_BIN: u64 = 100_000;
const BIN_MS: i64 = 60_000;
/// Distinct person (and id) strings; a multiple of every campaign count.
const POOL: usize = 4_000_000;

struct Stream {
    campaigns: Vec<String>,
    persons: Vec<String>,
    next: u64,
}

impl Stream {
    fn new(n: usize) -> Stream {
        Stream {
            campaigns: (0..n).map(|i| format!("campaign-{i:07}")).collect(),
            persons: (0..POOL).map(|j| format!("p-{j:08}")).collect(),
            next: 0,
        }
    }

    fn event(&self, k: u64) -> Event<'_> {
        let n = self.campaigns.len() as u64;
        let j = (k % POOL as u64) as usize;
        let forwarded = !k.is_multiple_of(3) && k >= n;
        let parent = (j + POOL - self.campaigns.len()) % POOL;
        Event {
            kind: EventKind::Click,
            campaign: Cow::Borrowed(&self.campaigns[(k % n) as usize]),
            ts_ms: common::START + (k * BIN_MS as u64 / EVENTS_PER_BIN) as i64,
            id: Some(Cow::Borrowed(&self.persons[j])),
            person: Some(Cow::Borrowed(&self.persons[j])),
            parent: forwarded.then(|| Cow::Borrowed(self.persons[parent].as_str())),
            generation: u32::from(forwarded),
            recipients: 0,
            target: None,
            audience: None,
        }
    }

    /// Applies `iters` events the way `replay` does; returns the time taken.
    fn run(&mut self, engine: &mut Engine, out: &mut Vec<Signal>, iters: u64) -> Duration {
        let start = Instant::now();
        let first = self.next;
        self.next += iters;
        for k in first..first + iters {
            let ev = self.event(k);
            black_box(engine.apply(&ev, out).is_ok());
            if let Some(wm) = engine.natural_watermark() {
                engine.advance_to(wm, out);
            }
            out.clear();
        }
        start.elapsed()
    }
}

fn bench_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_apply");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(2));
    for n in [1usize, 10_000, 1_000_000] {
        let mut stream = Stream::new(n);
        let mut engine = Engine::new(common::config(n as u32 + 1)).expect("engine");
        let mut out = Vec::new();
        // Every campaign live, and a lineage window's worth of history for
        // the smaller tables, before measuring.
        let warm = (n as u64).max(EVENTS_PER_BIN * 5);
        stream.run(&mut engine, &mut out, warm);
        assert_eq!(engine.campaigns_tracked(), n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| b.iter_custom(|iters| stream.run(&mut engine, &mut out, iters)));
    }
    g.finish();
}

/// One bin step over `n` active campaigns that all have recent local clicks
/// with parents (lineage estimator, detector, forecast and planner for their
/// targets). Each iteration first applies one forwarded click per campaign
/// to the open bin (not timed), then times the `advance_to` that closes it.
fn bench_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_step");
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(2));
    let n = 10_000usize;
    let names: Vec<String> = (0..n).map(|i| format!("campaign-{i:05}")).collect();
    let targets: Vec<String> = (0..8).map(|i| format!("web-{i}")).collect();
    let mut engine = Engine::new(common::config(n as u32 + 1)).expect("engine");
    let mut out = Vec::new();
    let mut bin = 0i64;
    let mut person = String::new();
    let mut parent = String::new();
    let mut feed = |engine: &mut Engine, out: &mut Vec<Signal>, bin: i64| {
        for (i, name) in names.iter().enumerate() {
            for k in 0..3 {
                person.clear();
                parent.clear();
                use std::fmt::Write;
                let _ = write!(person, "p-{bin}-{k}");
                let _ = write!(parent, "p-{}-{k}", bin - 1);
                let ev = Event {
                    kind: EventKind::Click,
                    campaign: Cow::Borrowed(name),
                    ts_ms: common::START + bin * BIN_MS + 1000,
                    id: None,
                    person: Some(Cow::Borrowed(&person)),
                    parent: (bin > 0).then_some(Cow::Borrowed(parent.as_str())),
                    generation: u32::from(bin > 0),
                    recipients: 0,
                    target: Some(Cow::Borrowed(&targets[i % targets.len()])),
                    audience: None,
                };
                black_box(engine.apply(&ev, out).is_ok());
            }
        }
    };
    // A lineage window of history first.
    for _ in 0..60 {
        feed(&mut engine, &mut out, bin);
        bin += 1;
        engine.advance_to(common::START + bin * BIN_MS, &mut out);
        out.clear();
    }
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("per_bin", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                feed(&mut engine, &mut out, bin);
                bin += 1;
                let t = Instant::now();
                engine.advance_to(common::START + bin * BIN_MS, &mut out);
                total += t.elapsed();
                out.clear();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench_apply, bench_step);
criterion_main!(benches);

//! Decode: one NDJSON line → validated `Event`, per event type, in ns/event and
//! MB/s. The lines are the simulator's (the shape `floodgate replay` sees).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodgate::decode::decode;
use floodgate::simulate::{demo_scenario, simulate};

mod common;

fn lines() -> Vec<(&'static str, String)> {
    let events = simulate(&demo_scenario(3, common::START));
    let find = |needle: &str| events.iter().find(|e| e.line.contains(needle)).map(|e| e.line.clone()).expect("line of each kind");
    vec![
        ("send", find(r#""type":"send""#)),
        // A forwarded click: the longest line (id, person, parent, target).
        ("click", find(r#""parent""#)),
        ("forward", find(r#""type":"forward""#)),
    ]
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (kind, line) in lines() {
        g.throughput(Throughput::Bytes(line.len() as u64));
        g.bench_function(kind, |b| b.iter(|| black_box(decode(black_box(line.as_bytes())).is_ok())));
    }
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);

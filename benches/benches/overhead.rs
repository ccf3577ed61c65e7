//! Per-call overhead of forten's middlewares beside their peers.
#![allow(missing_docs)]
use criterion::{Criterion, criterion_group, criterion_main};

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("overhead");
    g.bench_function("baseline", |b| b.iter(|| std::hint::black_box(1 + 1)));
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);

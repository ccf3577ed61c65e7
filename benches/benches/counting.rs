//! Allocation counting for the benches that report allocations per call
//! (DESIGN 6 budgets several at 0), included with
//! `#[path = "counting.rs"] mod counting;`. Not in the `forten_benches`
//! library: `allocation-counter` replaces the global allocator of every
//! binary that links it with a counting one, and a throughput benchmark
//! (the system bench) must run on the plain allocator.
#![allow(dead_code)]

use std::hint::black_box;

use criterion::BenchmarkGroup;
use criterion::measurement::Measurement;

/// Calls [`bench_counted`] averages its allocation count over.
pub(crate) const ALLOCATION_CALLS: u64 = 10_000;

/// Counts heap allocations per call of `f`, averaged over `calls` calls, and
/// prints the figure beside the benchmark id so it lands in the bench log.
pub(crate) fn report_allocations(id: &str, calls: u64, mut f: impl FnMut()) -> f64 {
    // warm up lazily initialised state (thread-locals, timer wheels) first
    f();
    let info = allocation_counter::measure(|| {
        for _ in 0..calls {
            f();
        }
    });
    let per_call = info.count_total as f64 / calls as f64;
    println!(
        "allocations/{id}: {per_call:.2} per call ({} bytes per call)",
        info.bytes_total / calls
    );
    per_call
}

/// Benchmarks `f` as `id` in `g` and, before the first measurement, prints its
/// allocations per call ([`report_allocations`] over [`ALLOCATION_CALLS`] calls).
///
/// The count runs inside criterion's routine, so it runs only for the ids
/// criterion's filter selects (a filtered run, or a callgrind profile of one
/// id, pays for nothing else).
pub(crate) fn bench_counted<M: Measurement, R>(
    g: &mut BenchmarkGroup<'_, M>,
    id: &str,
    mut f: impl FnMut() -> R,
) {
    let mut counted = false;
    g.bench_function(id, |b| {
        if !std::mem::replace(&mut counted, true) {
            report_allocations(id, ALLOCATION_CALLS, || {
                black_box(f());
            });
        }
        b.iter(&mut f);
    });
}

//! Per-call overhead of forten's middlewares beside their peers (criterion
//! group `overhead`). Each benchmark id also prints its allocations per call.
#![allow(missing_docs)]

use counting::bench_counted;
use criterion::{Criterion, criterion_group, criterion_main};
pub use forten_benches::baseline;
use forten_benches::call_ready;
use http::Request;

#[path = "overhead/auth.rs"]
mod auth;
#[path = "overhead/circuit.rs"]
mod circuit;
#[path = "counting.rs"]
mod counting;
#[path = "overhead/foundation.rs"]
mod foundation;
#[path = "overhead/idempotency.rs"]
mod idempotency;
#[path = "overhead/retry.rs"]
mod retry;
#[path = "overhead/stack.rs"]
mod stack;

/// `FORTEN_BENCH_RECORDER=1` installs a Prometheus recorder (drained every
/// second, as scrapes would) before anything is built, so the same group
/// measures forten with its metrics recorded; unset, with no recorder.
fn install_recorder() {
    if std::env::var_os("FORTEN_BENCH_RECORDER").is_some_and(|v| v == "1") {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no recorder installed yet");
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                handle.run_upkeep();
            }
        });
        println!("metrics recorder: prometheus");
    } else {
        println!("metrics recorder: none");
    }
}

fn overhead(c: &mut Criterion) {
    install_recorder();
    let mut g = c.benchmark_group("overhead");
    let mut svc = baseline();
    bench_counted(&mut g, "baseline", || {
        call_ready(&mut svc, Request::new(())).ok()
    });
    retry::bench(&mut g);
    circuit::bench(&mut g);
    foundation::bench(&mut g);
    idempotency::bench(&mut g);
    auth::bench(&mut g);
    stack::bench(&mut g);
    g.finish();
    paired();
}

/// The budgeted middlewares' added cost, baseline and middleware interleaved
/// (see [`forten_benches::paired_overhead`]): the figures DESIGN 6 compares
/// with its budgets. `FORTEN_BENCH_PAIRED=0` skips them.
fn paired() {
    if std::env::var_os("FORTEN_BENCH_PAIRED").is_some_and(|v| v == "0") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    retry::paired();
    circuit::paired();
}

criterion_group!(benches, overhead);
criterion_main!(benches);

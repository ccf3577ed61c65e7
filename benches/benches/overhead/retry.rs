//! `retry` (first attempt succeeds, default budget) beside
//! `peer/tower_retry_budget`, and `retry_no_budget` beside `peer/tower_retry`;
//! `peer/request_copy` is the floor under all of them: the baseline plus one
//! copy of the request made and dropped, which a retry cannot skip (the first
//! attempt consumes the request, a retry needs it again).

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use std::hint::black_box;

use super::counting::bench_counted;
use forten_benches::peers::{Attempts, Budgeted, copy_request};
use forten_benches::{baseline, call_ready, paired_overhead};
use forten_core::retry::{RetryConfig, RetryLayer};
use http::Request;
use tower::Layer;

/// The default config without its budget: like for like with `peer/tower_retry`.
fn no_budget() -> RetryConfig {
    RetryConfig::builder()
        .no_budget()
        .build()
        .expect("valid config")
}

pub(crate) fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
    // the default config: exponential backoff, 3 retries, the default budget
    let mut svc = RetryLayer::new(RetryConfig::default()).layer(baseline());
    bench_counted(g, "retry", || call_ready(&mut svc, Request::new(())).ok());

    // like for like with the budget-less peer below
    let mut svc = RetryLayer::new(no_budget()).layer(baseline());
    bench_counted(g, "retry_no_budget", || {
        call_ready(&mut svc, Request::new(())).ok()
    });

    let mut svc = baseline();
    bench_counted(g, "peer/request_copy", || {
        let req = Request::new(());
        black_box(copy_request(&req));
        call_ready(&mut svc, req).ok()
    });

    let mut peer = tower::retry::RetryLayer::new(Attempts(3)).layer(baseline());
    bench_counted(g, "peer/tower_retry", || {
        call_ready(&mut peer, Request::new(())).ok()
    });

    // like for like: both with a retry budget of the same defaults
    let mut peer = tower::retry::RetryLayer::new(Budgeted::new(3)).layer(baseline());
    bench_counted(g, "peer/tower_retry_budget", || {
        call_ready(&mut peer, Request::new(())).ok()
    });
}

/// Interleaved added costs (see `paired_overhead`): retry, its floor, its peer.
pub(crate) fn paired() {
    let mut base = baseline();
    let mut base_call = move || call_ready(&mut base, Request::new(())).is_ok();
    let mut svc = RetryLayer::new(RetryConfig::default()).layer(baseline());
    paired_overhead("retry", &mut base_call, || {
        call_ready(&mut svc, Request::new(())).is_ok()
    });
    let mut svc = RetryLayer::new(no_budget()).layer(baseline());
    paired_overhead("retry_no_budget", &mut base_call, || {
        call_ready(&mut svc, Request::new(())).is_ok()
    });
    let mut svc = baseline();
    paired_overhead("peer/request_copy", &mut base_call, || {
        let req = Request::new(());
        black_box(copy_request(&req));
        call_ready(&mut svc, req).is_ok()
    });
    let mut peer = tower::retry::RetryLayer::new(Attempts(3)).layer(baseline());
    paired_overhead("peer/tower_retry", &mut base_call, || {
        call_ready(&mut peer, Request::new(())).is_ok()
    });
    let mut peer = tower::retry::RetryLayer::new(Budgeted::new(3)).layer(baseline());
    paired_overhead("peer/tower_retry_budget", &mut base_call, || {
        call_ready(&mut peer, Request::new(())).is_ok()
    });
}

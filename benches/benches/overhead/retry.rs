//! `retry` (first attempt succeeds) beside `peer/tower_retry`.

use std::hint::black_box;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use forten_benches::{call_ready, report_allocations};
use forten_core::retry::{RetryConfig, RetryLayer};
use http::{Request, Response};
use tower::Layer;

use crate::baseline;

/// tower::retry with the trivial policy the tower docs show: clone the
/// request, retry on error, never on success.
#[derive(Clone)]
struct Attempts(usize);

impl<E> tower::retry::Policy<Request<()>, Response<()>, E> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<()>,
        result: &mut Result<Response<()>, E>,
    ) -> Option<Self::Future> {
        if result.is_err() && self.0 > 0 {
            self.0 -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Request<()>) -> Option<Request<()>> {
        let mut copy = Request::new(());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

pub(crate) fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
    // the default config: exponential backoff, 3 retries, the default budget
    let mut svc = RetryLayer::new(RetryConfig::default()).layer(baseline());
    report_allocations("retry", 10_000, || {
        black_box(call_ready(&mut svc, Request::new(())).ok());
    });
    g.bench_function("retry", |b| {
        b.iter(|| black_box(call_ready(&mut svc, Request::new(())).ok()));
    });

    let mut peer = tower::retry::RetryLayer::new(Attempts(3)).layer(baseline());
    report_allocations("peer/tower_retry", 10_000, || {
        black_box(call_ready(&mut peer, Request::new(())).ok());
    });
    g.bench_function("peer/tower_retry", |b| {
        b.iter(|| black_box(call_ready(&mut peer, Request::new(())).ok()));
    });
}

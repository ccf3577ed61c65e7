//! `retry` (first attempt succeeds, default budget) beside
//! `peer/tower_retry_budget`, and `retry_no_budget` beside `peer/tower_retry`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use forten_benches::{call_ready, report_allocations};
use forten_core::retry::{RetryConfig, RetryLayer};
use http::{Request, Response};
use tower::Layer;
use tower::retry::budget::{Budget, TpsBudget};

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
        Some(copy_request(req))
    }
}

/// tower::retry with tower's own retry budget (`TpsBudget`, the defaults
/// forten's budget also uses: 10 s window, 10/s minimum, 20 %): the
/// like-for-like peer of forten's default config. The policy deposits once per
/// request, as tower's budget docs ask, and withdraws before a retry.
#[derive(Clone)]
struct Budgeted {
    attempts: usize,
    budget: Arc<TpsBudget>,
}

impl<E> tower::retry::Policy<Request<()>, Response<()>, E> for Budgeted {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<()>,
        result: &mut Result<Response<()>, E>,
    ) -> Option<Self::Future> {
        if result.is_err() && self.attempts > 0 && self.budget.withdraw() {
            self.attempts -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Request<()>) -> Option<Request<()>> {
        // called once per request before the first attempt
        self.budget.deposit();
        Some(copy_request(req))
    }
}

/// The field-by-field copy the tower docs show.
fn copy_request(req: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
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

    // like for like with the budget-less peer below
    let config = RetryConfig::builder()
        .no_budget()
        .build()
        .expect("valid config");
    let mut svc = RetryLayer::new(config).layer(baseline());
    report_allocations("retry_no_budget", 10_000, || {
        black_box(call_ready(&mut svc, Request::new(())).ok());
    });
    g.bench_function("retry_no_budget", |b| {
        b.iter(|| black_box(call_ready(&mut svc, Request::new(())).ok()));
    });

    let mut peer = tower::retry::RetryLayer::new(Attempts(3)).layer(baseline());
    report_allocations("peer/tower_retry", 10_000, || {
        black_box(call_ready(&mut peer, Request::new(())).ok());
    });
    g.bench_function("peer/tower_retry", |b| {
        b.iter(|| black_box(call_ready(&mut peer, Request::new(())).ok()));
    });

    // like for like: both with a retry budget of the same defaults
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let policy = Budgeted {
        attempts: 3,
        budget,
    };
    let mut peer = tower::retry::RetryLayer::new(policy).layer(baseline());
    report_allocations("peer/tower_retry_budget", 10_000, || {
        black_box(call_ready(&mut peer, Request::new(())).ok());
    });
    g.bench_function("peer/tower_retry_budget", |b| {
        b.iter(|| black_box(call_ready(&mut peer, Request::new(())).ok()));
    });
}

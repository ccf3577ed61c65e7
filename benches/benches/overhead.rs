//! Per-call overhead of forten's middlewares beside their peers (criterion
//! group `overhead`). Each benchmark id also prints its allocations per call.
#![allow(missing_docs)]
use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use forten_benches::{call_ready, report_allocations};
use http::{Request, Response};
use tower::service_fn;

#[path = "overhead/auth.rs"]
mod auth;
#[path = "overhead/circuit.rs"]
mod circuit;
#[path = "overhead/foundation.rs"]
mod foundation;
#[path = "overhead/idempotency.rs"]
mod idempotency;
#[path = "overhead/retry.rs"]
mod retry;

/// The service every middleware wraps: answers at once with an empty 200.
pub fn baseline() -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(()))))
}

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("overhead");
    let mut svc = baseline();
    report_allocations("baseline", 10_000, || {
        black_box(call_ready(&mut svc, Request::new(())).ok());
    });
    g.bench_function("baseline", |b| {
        b.iter(|| black_box(call_ready(&mut svc, Request::new(())).ok()));
    });
    retry::bench(&mut g);
    circuit::bench(&mut g);
    foundation::bench(&mut g);
    idempotency::bench(&mut g);
    auth::bench(&mut g);
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);

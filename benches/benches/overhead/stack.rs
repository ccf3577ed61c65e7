//! The server-and-client resilience stack in one piece: correlation, deadline,
//! retry (first attempt succeeds) and a closed circuit breaker.

use std::time::Duration;

use super::counting::bench_counted;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use forten_benches::call_ready;
use forten_core::circuit::CircuitBreaker;
use forten_core::correlation::CorrelationLayer;
use forten_core::deadline::DeadlineLayer;
use forten_core::metrics::ServerMetricsLayer;
use forten_core::retry::{RetryConfig, RetryLayer};
use http::Request;
use tower::{Layer, ServiceBuilder};

use super::baseline;

pub(crate) fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
    // tokio's timer needs a runtime context even when it is never armed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    let breaker = CircuitBreaker::builder("full-stack")
        .build()
        .expect("valid config");
    let mut svc = ServiceBuilder::new()
        .layer(CorrelationLayer::new())
        .layer(DeadlineLayer::new(Duration::from_secs(30)))
        .layer(RetryLayer::new(RetryConfig::default()))
        .layer(breaker.layer())
        .service(baseline());
    bench_counted(g, "full_stack", || {
        call_ready(&mut svc, Request::new(())).ok()
    });

    // The server RED layer alone (a counter and a histogram per request,
    // route labelled by a function), then in front of the full stack.
    let mut red = ServerMetricsLayer::new()
        .route(|_| Some("/bench".into()))
        .layer(baseline());
    bench_counted(g, "server_metrics", || {
        call_ready(&mut red, Request::new(())).ok()
    });
}

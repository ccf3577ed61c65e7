//! Correlation and deadlines beside tower's timeout and tower-http's request id.

use std::time::Duration;

use super::counting::bench_counted;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use forten_benches::call_ready;
use forten_core::correlation::{CorrelationLayer, PropagateCorrelationLayer};
use forten_core::deadline::{DeadlineLayer, TimeoutLayer};
use http::Request;
use tower::Layer;
use tower_http::request_id::{MakeRequestUuid, SetRequestIdLayer};

use super::baseline;

/// Benchmarks one service under `id`: allocations per call, then time per call.
macro_rules! bench_service {
    ($g:expr, $id:expr, $svc:expr, $req:expr) => {{
        let mut svc = $svc;
        bench_counted($g, $id, || call_ready(&mut svc, $req).ok());
    }};
}

pub(crate) fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
    // tokio's timer needs a runtime context even when it is never armed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    bench_service!(
        g,
        "correlation",
        CorrelationLayer::new().layer(baseline()),
        Request::new(())
    );
    bench_service!(
        g,
        "correlation/no_extension",
        CorrelationLayer::new()
            .request_extension(false)
            .layer(baseline()),
        Request::new(())
    );
    bench_service!(
        g,
        "correlation_propagate",
        PropagateCorrelationLayer::new().layer(baseline()),
        Request::new(())
    );
    bench_service!(
        g,
        "peer/tower_http_request_id",
        SetRequestIdLayer::x_request_id(MakeRequestUuid).layer(baseline()),
        Request::new(())
    );
    bench_service!(
        g,
        "deadline",
        DeadlineLayer::new(Duration::from_secs(30)).layer(baseline()),
        Request::new(())
    );
    bench_service!(
        g,
        "deadline/no_extension",
        DeadlineLayer::new(Duration::from_secs(30))
            .request_extension(false)
            .layer(baseline()),
        Request::new(())
    );
    bench_service!(
        g,
        "timeout_client",
        TimeoutLayer::new(Duration::from_secs(30)).layer(baseline()),
        Request::new(())
    );
    bench_service!(
        g,
        "peer/tower_timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(30)).layer(baseline()),
        Request::new(())
    );
}

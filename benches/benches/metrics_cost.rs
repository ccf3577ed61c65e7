//! Instructions per call with and without a metrics recorder, for a loaded
//! machine where wall time is noise. `metrics_cost <stack> <calls>` makes
//! `calls` calls through one stack; run it under `perf stat -e
//! instructions:u` with N and 2N calls: the difference over N is the
//! per-call cost, setup cancelled out. `FORTEN_BENCH_RECORDER=1` installs the
//! Prometheus recorder first, as in the `overhead` group. Run by cargo
//! (`cargo bench`, `cargo test --benches`: no stack named, only cargo's
//! flags), it makes a few calls through every stack, as a smoke test.
#![allow(missing_docs)]
use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use forten_benches::call_ready;
use forten_core::circuit::CircuitBreaker;
use forten_core::correlation::CorrelationLayer;
use forten_core::deadline::DeadlineLayer;
use forten_core::metrics::ServerMetricsLayer;
use forten_core::retry::{RetryConfig, RetryLayer};
use http::{Request, Response};
use tower::{Layer, Service, ServiceBuilder, service_fn};

fn baseline() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(()))))
}

fn run<S, E>(mut svc: S, calls: u64)
where
    S: Service<Request<()>, Error = E>,
{
    for _ in 0..calls {
        black_box(call_ready(&mut svc, Request::new(())).ok());
    }
}

/// Every stack [`one`] knows.
const STACKS: [&str; 6] = [
    "baseline",
    "circuit_breaker",
    "circuit_breaker_rejected",
    "retry",
    "full_stack",
    "server_metrics",
];

fn main() {
    if std::env::var_os("FORTEN_BENCH_RECORDER").is_some_and(|v| v == "1") {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no recorder installed yet");
    }
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let Some(stack) = args.next() else {
        // Started by cargo's bench or test runner: a smoke run of each stack.
        for stack in STACKS {
            one(stack, 1_000);
        }
        return;
    };
    let calls: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    one(&stack, calls);
}

/// `calls` calls through the stack named `stack`.
fn one(stack: &str, calls: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let breaker = || CircuitBreaker::builder("bench").build().expect("valid");
    match stack {
        "baseline" => run(baseline(), calls),
        "circuit_breaker" => run(breaker().layer().layer(baseline()), calls),
        "circuit_breaker_rejected" => {
            let b = breaker();
            b.force_open();
            run(b.layer().layer(baseline()), calls);
        }
        "retry" => run(
            RetryLayer::new(RetryConfig::default()).layer(baseline()),
            calls,
        ),
        "full_stack" => run(
            ServiceBuilder::new()
                .layer(CorrelationLayer::new())
                .layer(DeadlineLayer::new(Duration::from_secs(30)))
                .layer(RetryLayer::new(RetryConfig::default()))
                .layer(breaker().layer())
                .service(baseline()),
            calls,
        ),
        "server_metrics" => run(
            ServerMetricsLayer::new()
                .route(|_| Some("/bench".into()))
                .layer(baseline()),
            calls,
        ),
        other => panic!("unknown stack {other:?}"),
    }
}

//! Calls one of the `overhead` benchmarks' services `N` times, for
//! instruction counts under callgrind (stable where wall-clock figures are
//! noisy, e.g. on a shared machine). `benches/callgrind` runs it with `N` and
//! `2 N` calls and prints the difference per call.
//!
//! ```text
//! cargo run --profile bench -p forten-benches --example calls -- <id> <N>
//! ```
//!
//! Ids: `baseline`, `peer/request_copy`, `retry`, `retry_no_budget`, `peer/tower_retry`,
//! `peer/tower_retry_budget`, `circuit_breaker`, `peer/failsafe_breaker`,
//! `peer/tower_resilience_breaker`; `sizes` prints the retry futures' sizes
//! (what every move of one copies).
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::ExitCode;

use forten_benches::peers::{Attempts, Budgeted};
use forten_benches::{baseline, call_ready, poll_once};
use forten_core::circuit::CircuitBreaker;
use forten_core::retry::{RetryConfig, RetryLayer};
use http::Request;
use tower::{Layer, Service};

fn run<S: Service<Request<()>>>(mut svc: S, n: u64) {
    for _ in 0..n {
        black_box(call_ready(&mut svc, Request::new(())).is_ok());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(id), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: calls <id> <N>");
        return ExitCode::FAILURE;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    match id.as_str() {
        "sizes" => {
            let svc = RetryLayer::new(RetryConfig::default()).layer(baseline());
            println!("config {}", std::mem::size_of::<RetryConfig>());
            println!("retry svc {}", std::mem::size_of_val(&svc));
            let mut svc = svc;
            let fut = svc.call(Request::new(()));
            println!("retry fut {}", std::mem::size_of_val(&fut));
            println!("request {}", std::mem::size_of::<Request<()>>());
            println!("response {}", std::mem::size_of::<http::Response<()>>());
            let mut t = tower::retry::RetryLayer::new(Attempts(3)).layer(baseline());
            let fut = t.call(Request::new(()));
            println!("tower fut {}", std::mem::size_of_val(&fut));
            println!(
                "backoff {}",
                std::mem::size_of::<forten_core::backoff::Backoff>()
            );
        }
        "baseline" => run(baseline(), n),
        "peer/request_copy" => {
            let mut svc = baseline();
            for _ in 0..n {
                let req = Request::new(());
                black_box(forten_benches::peers::copy_request(&req));
                black_box(call_ready(&mut svc, req).is_ok());
            }
        }
        "retry" => run(RetryLayer::new(RetryConfig::default()).layer(baseline()), n),
        "retry_no_budget" => {
            let config = RetryConfig::builder().no_budget().build().expect("config");
            run(RetryLayer::new(config).layer(baseline()), n);
        }
        "peer/tower_retry" => run(
            tower::retry::RetryLayer::new(Attempts(3)).layer(baseline()),
            n,
        ),
        "peer/tower_retry_budget" => {
            run(
                tower::retry::RetryLayer::new(Budgeted::new(3)).layer(baseline()),
                n,
            );
        }
        "circuit_breaker" => {
            let breaker = CircuitBreaker::builder("bench").build().expect("config");
            run(breaker.layer().layer(baseline()), n);
        }
        "peer/tower_resilience_breaker" => {
            let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .sliding_window_size(100)
                .build()
                .expect("config");
            run(layer.layer(baseline()), n);
        }
        "peer/failsafe_breaker" => {
            use failsafe::futures::CircuitBreaker as _;
            let failsafe = failsafe::Config::new().build();
            let mut inner = baseline();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for _ in 0..n {
                assert!(inner.poll_ready(&mut cx).is_ready());
                black_box(poll_once(failsafe.call(inner.call(Request::new(())))).is_ok());
            }
        }
        other => {
            eprintln!("unknown id {other}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

//! Circuit breaker: closed (success) and rejected per-call cost, throughput on
//! one and two threads, and the peers (tower-resilience, failsafe).

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::counting::bench_counted;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use forten_benches::{call_ready, paired_overhead, poll_once};
use forten_core::circuit::CircuitBreaker;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, service_fn};

/// Calls per thread-throughput iteration (split across the threads).
const WORK: u64 = 200_000;

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("bench")
        .build()
        .expect("valid config")
}

/// tower-resilience's breaker around the baseline (needs a tokio runtime entered).
fn tower_resilience_breaker() -> impl Service<Request<()>, Response = Response<()>> {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .expect("valid config")
        .layer(crate::baseline())
}

/// One call through failsafe's breaker around the baseline, per call of the closure.
fn failsafe_call() -> impl FnMut() -> bool {
    use failsafe::futures::CircuitBreaker as _;
    let failsafe = failsafe::Config::new().build();
    let mut inner = crate::baseline();
    move || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(inner.poll_ready(&mut cx).is_ready());
        poll_once(failsafe.call(inner.call(Request::new(())))).is_ok()
    }
}

/// Runs `WORK` calls split over `threads` threads, each with its own clone of
/// `svc`; returns the wall time from the first thread's start to the last
/// one's end, as the threads themselves read the clock. (Timing from the
/// spawning thread undercounted: with every core busy running the workers,
/// it was often scheduled only after one had finished.)
fn run_split<S>(svc: &S, threads: u64) -> Duration
where
    S: Service<Request<()>> + Clone + Send,
{
    let per_thread = WORK / threads;
    let barrier = std::sync::Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut svc = svc.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..per_thread {
                        black_box(call_ready(&mut svc, Request::new(())).is_ok());
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("benchmark thread"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first),
        _ => Duration::ZERO,
    }
}

/// Best of `rounds` runs, for the printed ratio (criterion keeps the means).
fn best_split<S>(svc: &S, threads: u64, rounds: usize) -> Duration
where
    S: Service<Request<()>> + Clone + Send,
{
    (0..rounds)
        .map(|_| run_split(svc, threads))
        .min()
        .unwrap_or_default()
}

pub(crate) fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
    // closed, success
    let mut svc = breaker().layer().layer(crate::baseline());
    bench_counted(g, "circuit_breaker", || {
        call_ready(&mut svc, Request::new(())).is_ok()
    });

    // open: trip a breaker (1 call, 100 % failures), then call through it
    let open = CircuitBreaker::builder("bench-open")
        .count_window(1)
        .minimum_calls(1)
        .wait_duration(Duration::from_hours(1))
        .build()
        .expect("valid config");
    let mut failing = open.layer().layer(service_fn(|_req: Request<()>| {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    }));
    let _ = call_ready(&mut failing, Request::new(()));
    let mut rejected = open.layer().layer(crate::baseline());
    assert!(
        call_ready(&mut rejected, Request::new(())).is_err(),
        "breaker must be open"
    );
    bench_counted(g, "circuit_breaker_rejected", || {
        call_ready(&mut rejected, Request::new(())).is_err()
    });

    // throughput: the same WORK on one thread and split over two
    let shared = breaker().layer().layer(crate::baseline());
    g.bench_function("breaker_1_thread", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_split(&shared, 1)).sum());
    });
    let mut ratio_printed = false;
    g.bench_function("breaker_2_threads", |b| {
        if !std::mem::replace(&mut ratio_printed, true) {
            let base = crate::baseline();
            let (b1, b2) = (best_split(&base, 1, 5), best_split(&base, 2, 5));
            let (c1, c2) = (best_split(&shared, 1, 5), best_split(&shared, 2, 5));
            println!(
                "breaker_2_threads: {:.2}x one thread's throughput (baseline alone: {:.2}x); best of 5, {WORK} calls",
                c1.as_secs_f64() / c2.as_secs_f64(),
                b1.as_secs_f64() / b2.as_secs_f64(),
            );
        }
        b.iter_custom(|iters| (0..iters).map(|_| run_split(&shared, 2)).sum());
    });

    // peers
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mut resilience = tower_resilience_breaker();
    bench_counted(g, "peer/tower_resilience_breaker", || {
        call_ready(&mut resilience, Request::new(())).is_ok()
    });

    bench_counted(g, "peer/failsafe_breaker", failsafe_call());
}

/// Interleaved added costs (see `paired_overhead`): the closed breaker and its
/// peers. Runs inside a tokio runtime (tower-resilience needs one).
pub(crate) fn paired() {
    let mut base = crate::baseline();
    let mut base_call = move || call_ready(&mut base, Request::new(())).is_ok();
    let mut svc = breaker().layer().layer(crate::baseline());
    paired_overhead("circuit_breaker", &mut base_call, || {
        call_ready(&mut svc, Request::new(())).is_ok()
    });
    paired_overhead("peer/failsafe_breaker", &mut base_call, failsafe_call());
    let mut resilience = tower_resilience_breaker();
    paired_overhead("peer/tower_resilience_breaker", &mut base_call, || {
        call_ready(&mut resilience, Request::new(())).is_ok()
    });
}

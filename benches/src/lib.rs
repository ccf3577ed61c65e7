//! Shared harness for forten's criterion benchmarks.
//!
//! Services under test are driven without an executor: `poll_ready` and the
//! response future are polled with a no-op waker, so the figure is the cost the
//! middleware adds, not a runtime's scheduling. Code that needs tokio's timer
//! runs inside `Runtime::enter`.
//!
//! Allocation counting is not here: it lives in `benches/benches/counting.rs`,
//! which the benches that count include. `allocation-counter` installs a
//! counting global allocator in every binary that links it, which costs
//! every allocation of a throughput benchmark (the system bench) a few dozen
//! instructions, and more on the path that allocates more.

pub mod peers;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use tower::{Service, service_fn};

/// The headers forten-client adds to every call on the wire (DESIGN 4.1,
/// 4.2), with static values: for a peer that carries the same contract
/// without making it.
pub const PROPAGATION_HEADERS: [(&str, &str); 3] = [
    ("x-correlation-id", "6f1c2c43-6a5e-4d1e-9c1e-2f0e5b9d8a71"),
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
    ("x-request-timeout-ms", "4999"),
];

/// `headers` as ready header names and values: static, so making them
/// allocates nothing (as the stack's own, whose values share one buffer).
///
/// # Panics
///
/// On a name that is not lowercase or a value that is not visible ASCII:
/// they are this crate's constants.
pub fn static_headers<'a>(
    headers: &'a [(&'static str, &'static str)],
) -> impl Iterator<Item = (http::HeaderName, http::HeaderValue)> + 'a {
    headers.iter().map(|&(name, value)| {
        (
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        )
    })
}

/// The service every middleware wraps: answers at once with an empty 200.
pub fn baseline() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(()))))
}

/// Drives one request through `svc` to completion, assuming every poll is ready
/// at once (the benchmarked services answer immediately).
///
/// # Panics
/// If the service or its future is not ready on the first poll: that would
/// make the benchmark measure something else, so it must fail loudly.
pub fn call_ready<S, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("benchmarked service was not ready"),
    }
    poll_once(svc.call(req))
}

/// Polls a future once with a no-op waker and returns its output.
///
/// # Panics
/// If the future is pending.
pub fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked future was pending"),
    }
}

/// Interleaved rounds of [`paired_overhead`].
pub const PAIRED_ROUNDS: usize = 40;
/// Calls per round of [`paired_overhead`].
pub const PAIRED_CALLS: u32 = 20_000;

/// What `f` adds per call over `baseline`, measured in interleaved rounds
/// ([`PAIRED_ROUNDS`] of [`PAIRED_CALLS`] calls each, baseline then `f`),
/// keeping each one's fastest round: on a virtual machine whose speed drifts
/// from second to second, criterion's separate runs of two ids can land in
/// different phases, while neighbouring rounds share one. Prints the figure
/// beside `id` and returns it in nanoseconds.
pub fn paired_overhead<A, B>(
    id: &str,
    mut baseline: impl FnMut() -> A,
    mut f: impl FnMut() -> B,
) -> f64 {
    use std::time::Instant;
    let round = |g: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..PAIRED_CALLS {
            g();
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(PAIRED_CALLS)
    };
    let (mut best_base, mut best_f) = (f64::MAX, f64::MAX);
    for _ in 0..PAIRED_ROUNDS {
        best_base = best_base.min(round(&mut || {
            black_box(baseline());
        }));
        best_f = best_f.min(round(&mut || {
            black_box(f());
        }));
    }
    let added = best_f - best_base;
    println!(
        "paired/{id}: +{added:.1} ns per call over the baseline ({best_f:.1} vs {best_base:.1} ns; fastest of {PAIRED_ROUNDS} interleaved rounds of {PAIRED_CALLS} calls)"
    );
    added
}

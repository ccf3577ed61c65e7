//! A circuit breaker for any tower service (DESIGN 4.6).
//!
//! The breaker watches the outcomes of calls in a sliding window (the last N
//! calls, or the last N seconds) and *opens* when, with at least
//! `minimum_calls` in the window, the failure rate or the slow-call rate
//! reaches its threshold. While open, calls fail at once with
//! [`Error::CircuitOpen`](crate::Error::CircuitOpen) (mapped to 503 with
//! `Retry-After`) instead of piling onto a struggling upstream. After
//! `wait_duration` (growing per consecutive opening if asked) it admits
//! exactly `half_open_permits` probes; their outcome closes it or opens it
//! again. [`CircuitBreaker::force_open`] and [`CircuitBreaker::disable`] steer
//! it by hand, [`CircuitBreaker::reset`] closes it.
//!
//! What counts as a failure is a [`Classify`]: by default
//! ([`HttpClassifier`]) every error and every 5xx response; 4xx are
//! successes. Every transition is a `tracing` event and a [`CircuitEvent`] on
//! [`CircuitBreaker::subscribe`]. [`KeyedCircuitBreakerLayer`] keeps one
//! breaker per key (per host, per instance).
//!
//! In the closed state a call costs a few uncontended atomic operations: no
//! lock, no allocation, no clock read (unless slow calls or a time window are
//! configured), and threads count in separate cache lines. The counts reach
//! the shared window in batches, at once for a failed or slow call, and all
//! of them before the breaker decides anything: on one thread the window is
//! exactly the last N calls; across threads, calls that finish at the same
//! time may enter it in a slightly different order.
//!
//! The `retry_after` of a rejection: while Open, the time left open; in
//! HalfOpen with every probe taken, 1 s (the probes are about to answer);
//! while ForcedOpen, the configured wait duration (a hint: it lasts until
//! [`CircuitBreaker::reset`]).
//!
//! An Open breaker moves to HalfOpen on the first call after its wait (no
//! timer runs in the background). A probe that never finishes holds its
//! permit until its future is dropped: put a timeout inside the breaker.
//!
//! ```
//! use std::time::Duration;
//! use forten_core::circuit::{CircuitBreaker, CircuitState};
//! use forten_core::Error;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let breaker = CircuitBreaker::builder("events-service")
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .wait_duration(Duration::from_secs(30))
//!     .build()?;
//! let upstream = service_fn(|_req: http::Request<()>| async {
//!     let mut response = http::Response::new(());
//!     *response.status_mut() = http::StatusCode::BAD_GATEWAY;
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//! let client = breaker.layer().layer(upstream);
//!
//! for _ in 0..4 {
//!     let response = client.clone().oneshot(http::Request::new(())).await?;
//!     assert_eq!(response.status(), 502);
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//!
//! let err = client.oneshot(http::Request::new(())).await.unwrap_err();
//! let Some(Error::CircuitOpen { retry_after, .. }) = Error::find(err.as_ref()) else { panic!() };
//! assert!(*retry_after <= Duration::from_secs(30));
//! # Ok::<_, forten_core::BoxError>(())
//! # }).unwrap();
//! ```

mod breaker;
mod classify;
mod config;
mod error;
mod events;
mod future;
mod keyed;
mod layer;
mod state;
mod window;

use std::task::{Context, Poll};

use tower_service::Service;

use crate::BoxError;

pub use breaker::CircuitBreaker;
pub use classify::{Classify, ErrorClassifier, HttpClassifier};
pub use config::{CircuitBreakerBuilder, CircuitBreakerConfig, MAX_WINDOW, SlidingWindow};
pub use error::ConfigError;
pub use events::{CircuitEvent, CircuitEvents};
pub use future::ResponseFuture;
pub use keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakerService, KeyedCircuitBreakers};
pub use layer::CircuitBreakerLayer;
pub use state::{CircuitMetrics, CircuitState};

/// A service guarded by a [`CircuitBreaker`]; built by [`CircuitBreakerLayer`].
///
/// `poll_ready` is the inner service's; a rejected call fails in `call` with
/// [`Error::CircuitOpen`](crate::Error::CircuitOpen) boxed as [`BoxError`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, C = HttpClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` in `breaker`, judging outcomes with `classifier`.
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerService {
            inner,
            breaker,
            classifier,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // `CircuitBreaker::run` by hand: through its closure the inner
        // future is built one move further away (callgrind-client, keyed:
        // +150 instructions per call).
        match self.breaker.start() {
            Ok(guard) => {
                ResponseFuture::admitted(self.inner.call(req), guard, self.classifier.clone())
            }
            Err(error) => ResponseFuture::rejected(error, self.classifier.clone()),
        }
    }
}

//! [`TimeoutLayer`]: the client side of DESIGN 4.2.

use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use tokio::time::Instant;

use super::{Deadline, FAR_FUTURE, TimedFuture};
use crate::BoxError;
use crate::headers::X_REQUEST_TIMEOUT_MS;

/// Client-side timeouts that respect the caller's deadline: each call gets
/// min(`timeout`, what remains of the current [`Deadline`]) and sends that
/// budget as `x-request-timeout-ms`. A call whose deadline has already passed
/// fails at once with [`Error::Timeout`](crate::Error::Timeout) and is never
/// sent.
///
/// The deadline is the request's `Deadline` extension when it has one, else
/// [`Deadline::current`] (set by [`DeadlineLayer`](super::DeadlineLayer) on the
/// server handling the current request).
///
/// ```
/// use std::time::Duration;
/// use forten_core::deadline::{Deadline, TimeoutLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let upstream = service_fn(|req: http::Request<()>| async move {
///     let sent: u64 = req.headers()["x-request-timeout-ms"].to_str()?.parse()?;
///     Ok::<_, forten_core::BoxError>(sent)
/// });
/// let client = TimeoutLayer::new(Duration::from_secs(10)).layer(upstream);
/// // Inside a request with 2 s left, the upstream is offered at most 2 s.
/// let sent = Deadline::after(Duration::from_secs(2))
///     .scope(client.oneshot(http::Request::new(())))
///     .await
///     .unwrap();
/// assert!(sent <= 2000);
/// # });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer giving each call at most `timeout` (a zero timeout fails every call).
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let ms = header_ms(self.timeout);
        // cloned once so every later copy shares its buffer (a count, not an allocation)
        let full = HeaderValue::from(ms);
        TimeoutService {
            inner,
            timeout: self.timeout,
            full: (ms, full.clone()),
        }
    }
}

/// The service produced by [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: S,
    timeout: Duration,
    /// `x-request-timeout-ms` of a call offered the whole `timeout` (the
    /// usual case when the deadline is further away), formatted once.
    full: (u64, HeaderValue),
}

/// Whole milliseconds, at least 1 so a sub-millisecond remainder is not
/// read as "expired" by the callee.
fn header_ms(budget: Duration) -> u64 {
    u64::try_from(budget.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl<S, B> Service<Request<B>> for TimeoutService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let deadline = req
            .extensions()
            .get::<Deadline>()
            .copied()
            .or_else(Deadline::current);
        let now = Instant::now();
        let budget = match deadline {
            Some(d) => self.timeout.min(d.instant().saturating_duration_since(now)),
            None => self.timeout,
        };
        if budget.is_zero() {
            tracing::debug!("deadline already passed: request not sent");
            return TimedFuture::expired(budget);
        }
        let ms = header_ms(budget);
        let value = if ms == self.full.0 {
            self.full.1.clone()
        } else {
            HeaderValue::from(ms)
        };
        req.headers_mut().insert(X_REQUEST_TIMEOUT_MS, value);
        let at = now.checked_add(budget).unwrap_or(now + FAR_FUTURE);
        TimedFuture::new(self.inner.call(req), at, budget)
    }
}

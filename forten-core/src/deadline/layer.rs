//! [`DeadlineLayer`]: the server side of DESIGN 4.2.

use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request};
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use tokio::time::Instant;

use super::{Deadline, FAR_FUTURE, TimedFuture, parse_grpc_timeout, parse_request_timeout_ms};
use crate::BoxError;
use crate::headers::{GRPC_TIMEOUT, X_REQUEST_TIMEOUT_MS};

/// Server-side deadlines: the request's deadline is min(the caller's budget,
/// this service's `max`), from `x-request-timeout-ms` or `grpc-timeout` (the
/// smaller when both are sent; an unparseable value is ignored). The deadline
/// goes into the request's extensions and around the handler as
/// [`Deadline::current`]; when it passes, the handler's future is dropped and
/// the call fails with [`Error::Timeout`](crate::Error::Timeout). A request
/// that arrives with no budget left fails at once, without running the handler.
///
/// ```
/// use std::time::Duration;
/// use forten_core::deadline::{Deadline, DeadlineLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let handler = service_fn(|_req: http::Request<()>| async {
///     let left = Deadline::current().expect("set by the layer").remaining();
///     Ok::<_, std::convert::Infallible>(http::Response::new(left))
/// });
/// let svc = DeadlineLayer::new(Duration::from_secs(30)).layer(handler);
/// let req = http::Request::builder().header("x-request-timeout-ms", "1500").body(()).unwrap();
/// let left = svc.oneshot(req).await.unwrap().into_body();
/// assert!(left <= Duration::from_millis(1500));
/// # });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    max: Duration,
    extension: bool,
}

impl DeadlineLayer {
    /// A layer whose requests get at most `max`, however much the caller offers.
    pub fn new(max: Duration) -> Self {
        DeadlineLayer {
            max,
            extension: true,
        }
    }

    /// Whether to also put the [`Deadline`] into the request's extensions
    /// (default `true`). Handlers always have [`Deadline::current`]; the
    /// extension is for code that moves the request to another task. Turning
    /// it off saves the extension map's allocations on a request that has
    /// no other extensions.
    pub fn request_extension(mut self, insert: bool) -> Self {
        self.extension = insert;
        self
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            max: self.max,
            extension: self.extension,
        }
    }
}

/// The service produced by [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    max: Duration,
    extension: bool,
}

/// The smaller of the valid budgets the caller sent, if any.
fn incoming_budget(headers: &HeaderMap) -> Option<Duration> {
    let ms = headers.get(X_REQUEST_TIMEOUT_MS).and_then(|v| {
        let parsed = v
            .to_str()
            .ok()
            .and_then(|s| parse_request_timeout_ms(s).ok());
        if parsed.is_none() {
            tracing::debug!(value = ?v, "ignoring unparseable x-request-timeout-ms");
        }
        parsed
    });
    let grpc = headers.get(GRPC_TIMEOUT).and_then(|v| {
        let parsed = v.to_str().ok().and_then(|s| parse_grpc_timeout(s).ok());
        if parsed.is_none() {
            tracing::debug!(value = ?v, "ignoring unparseable grpc-timeout");
        }
        parsed
    });
    match (ms, grpc) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<S, B> Service<Request<B>> for DeadlineService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimedFuture<TaskLocalFuture<Deadline, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let budget = incoming_budget(req.headers()).map_or(self.max, |b| b.min(self.max));
        // One clock read per request: it is the largest fixed cost here.
        let now = Instant::now();
        let mut deadline = Deadline::at(now.checked_add(budget).unwrap_or(now + FAR_FUTURE));
        if let Some(outer) = Deadline::current() {
            deadline = deadline.min(outer);
        }
        if deadline.instant() <= now {
            return TimedFuture::expired(budget);
        }
        if self.extension {
            req.extensions_mut().insert(deadline);
        }
        let fut = deadline.sync_scope(|| self.inner.call(req));
        TimedFuture::new(deadline.scope(fut), deadline.instant(), budget)
    }
}

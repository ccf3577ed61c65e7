//! The total deadline of a call: one [`Deadline`] for every attempt and
//! backoff together.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use forten_core::BoxError;
use forten_core::deadline::Deadline;
use http::Request;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

/// Puts the call's [`Deadline`] into the request's extensions: the earliest of
/// the request's own, the task's current one (a server handler's) and
/// `now + total`. The retry layer stops at it, the per-attempt timeout sends
/// what is left of it as `x-request-timeout-ms`, and this service fails the
/// call with [`Error::Timeout`](forten_core::Error::Timeout) when it passes.
#[derive(Debug, Clone)]
pub(crate) struct TotalDeadline<S> {
    pub(crate) inner: S,
    pub(crate) total: Option<Duration>,
}

impl<S, B> Service<Request<B>> for TotalDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TotalFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let inherited = req
            .extensions()
            .get::<Deadline>()
            .copied()
            .or_else(Deadline::current);
        let own = self.total.map(Deadline::after);
        let deadline = match (inherited, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(deadline) = deadline else {
            return TotalFuture {
                inner: Some(self.inner.call(req)),
                sleep: None,
                deadline: None,
                budget: None,
            };
        };
        if deadline.is_expired() {
            tracing::debug!("deadline already passed: request not sent");
            return TotalFuture {
                inner: None,
                sleep: None,
                deadline: None,
                budget: self.total,
            };
        }
        req.extensions_mut().insert(deadline);
        TotalFuture {
            inner: Some(self.inner.call(req)),
            sleep: None,
            deadline: Some(deadline.instant()),
            budget: Some(deadline.remaining()),
        }
    }
}

pin_project! {
    /// The inner call raced against the deadline (the timer is armed only
    /// if the call does not answer on its first poll).
    pub(crate) struct TotalFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Option<Instant>,
        budget: Option<Duration>,
    }
}

impl<F, T, E> Future for TotalFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let timeout = |after: Option<Duration>| -> BoxError {
            Box::new(forten_core::Error::Timeout { after })
        };
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(timeout(*this.budget)));
        };
        if let Poll::Ready(result) = inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(sleep_until(deadline)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                this.inner.set(None);
                return Poll::Ready(Err(timeout(*this.budget)));
            }
        }
        Poll::Pending
    }
}

//! The total deadline of a call: one [`Deadline`] for every attempt and
//! backoff together.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use forten_core::BoxError;
use forten_core::deadline::{Deadline, armed_within, report_armed};
use http::Request;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

/// Makes the call's [`Deadline`] the one the layers below see: the earliest
/// of the request's own, the task's current one (a server handler's) and
/// `now + total`. The retry layer stops at it, the per-attempt timeout sends
/// what is left of it as `x-request-timeout-ms`, and this service fails the
/// call with [`Error::Timeout`](forten_core::Error::Timeout) when it passes.
///
/// Both read the request's `Deadline` extension first, then
/// [`Deadline::current`]. A request that brought its own extension gets it
/// replaced by the earliest deadline; any other carries none, and the call
/// runs inside [`Deadline::scope`] instead: an extension would make the
/// retry layer copy an extension map per call (three allocations, and as
/// many again to insert it).
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
        let attached = req.extensions().get::<Deadline>().copied();
        let inherited = attached.or_else(Deadline::current);
        let now = Instant::now();
        let own = self.total.map(|total| match now.checked_add(total) {
            Some(at) => Deadline::at(at),
            None => Deadline::after(total), // saturates far in the future
        });
        let deadline = match (inherited, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(deadline) = deadline else {
            return TotalFuture::new(
                Inner::Plain {
                    future: self.inner.call(req),
                },
                None,
                None,
            );
        };
        if deadline.instant() <= now {
            tracing::debug!("deadline already passed: request not sent");
            return TotalFuture::new(Inner::Done, None, self.total);
        }
        let budget = Some(deadline.instant().saturating_duration_since(now));
        let inner = if attached.is_some() {
            req.extensions_mut().insert(deadline);
            Inner::Plain {
                future: self.inner.call(req),
            }
        } else {
            let future = deadline.sync_scope(|| self.inner.call(req));
            Inner::Scoped {
                future: deadline.scope(future),
            }
        };
        TotalFuture::new(inner, Some(deadline.instant()), budget)
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        // the request carries the deadline (or there is none)
        Plain { #[pin] future: F },
        // the deadline is the task's current one while the call is polled
        Scoped { #[pin] future: TaskLocalFuture<Deadline, F> },
        // the deadline passed (before the call, or while it ran)
        Done,
    }
}

pin_project! {
    /// The inner call raced against the deadline.
    ///
    /// The timer is armed only if the call does not answer on its first
    /// poll, and not while a timer armed inside it fires by this deadline
    /// (the per-attempt timeout, whose budget is at most what is left of it:
    /// forten-core's [`armed_within`]): that timer wakes the task in time, so
    /// a call answered within its attempt never touches the timer wheel for
    /// its total deadline.
    pub(crate) struct TotalFuture<F> {
        #[pin]
        inner: Inner<F>,
        // boxed when first armed: while an attempt is on the wire its own
        // timer covers the deadline, so most calls never arm this one, and
        // an inline `Sleep` would make every move of the call's future
        // copy its 112 bytes
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Option<Instant>,
        budget: Option<Duration>,
    }
}

impl<F> TotalFuture<F> {
    fn new(inner: Inner<F>, deadline: Option<Instant>, budget: Option<Duration>) -> Self {
        TotalFuture {
            inner,
            sleep: None,
            deadline,
            budget,
        }
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
        let inner = this.inner.as_mut();
        let (polled, below) = armed_within(|| match inner.project() {
            InnerProj::Plain { future } => Some(future.poll(cx)),
            InnerProj::Scoped { future } => Some(future.poll(cx)),
            InnerProj::Done => None,
        });
        let Some(polled) = polled else {
            return Poll::Ready(Err(timeout(*this.budget)));
        };
        if let Poll::Ready(result) = polled {
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some(deadline) = *this.deadline else {
            report_armed(below);
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            if below.is_some_and(|b| b <= deadline) {
                // the attempt's own timer wakes the task by the deadline
                report_armed(below);
                return Poll::Pending;
            }
            *this.sleep = Some(Box::pin(sleep_until(deadline)));
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                this.inner.set(Inner::Done);
                return Poll::Ready(Err(timeout(*this.budget)));
            }
        }
        report_armed(Some(below.map_or(deadline, |b| b.min(deadline))));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceExt, service_fn};

    use super::*;

    /// The budget a timeout error names (`None`: not a timeout with one).
    fn timed_out_after(err: &BoxError) -> Option<Duration> {
        match forten_core::Error::find(err.as_ref()) {
            Some(forten_core::Error::Timeout { after }) => *after,
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_the_inner_calls_current_one_and_ends_a_hung_call() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let inner = service_fn({
            let seen = seen.clone();
            move |req: Request<()>| {
                assert!(req.extensions().get::<Deadline>().is_none());
                *seen.lock().unwrap() = Deadline::current();
                std::future::pending::<Result<(), Infallible>>()
            }
        });
        let svc = TotalDeadline {
            inner,
            total: Some(Duration::from_secs(2)),
        };
        let started = Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(timed_out_after(&err), Some(Duration::from_secs(2)));
        let deadline = seen.lock().unwrap().expect("the current deadline");
        assert_eq!(deadline.instant(), started + Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_timer_inside_ends_a_hung_call_at_the_deadline() {
        let hung = service_fn(|_req: Request<()>| std::future::pending::<Result<(), Infallible>>());
        let inner = tower::Layer::layer(
            &forten_core::deadline::TimeoutLayer::new(Duration::from_secs(10)),
            hung,
        );
        let svc = TotalDeadline {
            inner,
            total: Some(Duration::from_secs(2)),
        };
        let started = Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(timed_out_after(&err), Some(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_callers_earlier_deadline_wins_and_a_passed_one_sends_nothing() {
        let inner = service_fn(|req: Request<()>| async move {
            let deadline = req.extensions().get::<Deadline>().copied();
            Ok::<_, Infallible>(deadline.or_else(Deadline::current).map(Deadline::remaining))
        });
        let svc = TotalDeadline {
            inner,
            total: Some(Duration::from_secs(30)),
        };
        let left = Deadline::after(Duration::from_secs(3))
            .scope(svc.clone().oneshot(Request::new(())))
            .await
            .unwrap();
        assert_eq!(left, Some(Duration::from_secs(3)));

        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inner = service_fn({
            let called = called.clone();
            move |_req: Request<()>| {
                called.store(true, std::sync::atomic::Ordering::SeqCst);
                async { Ok::<_, Infallible>(()) }
            }
        });
        let svc = TotalDeadline { inner, total: None };
        let mut req = Request::new(());
        req.extensions_mut().insert(Deadline::at(Instant::now()));
        let err = svc.oneshot(req).await.unwrap_err();
        assert!(forten_core::Error::find(err.as_ref()).is_some());
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn without_any_deadline_the_call_passes_through() {
        let inner = service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.extensions().get::<Deadline>().is_some())
        });
        let svc = TotalDeadline { inner, total: None };
        assert!(!svc.oneshot(Request::new(())).await.unwrap());
    }
}

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
    /// Whether the inner service's future arms a timer by the deadline on
    /// its first pending poll, as the per-attempt timeout below retry does
    /// (its budget is at most what is left of the deadline): then this
    /// layer's own timer waits for the second (see [`TotalFuture`]).
    pub(crate) timed_below: bool,
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
                false,
            );
        };
        if deadline.instant() <= now {
            tracing::debug!("deadline already passed: request not sent");
            return TotalFuture::new(Inner::Done, None, self.total, false);
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
        TotalFuture::new(inner, Some(deadline.instant()), budget, self.timed_below)
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
    /// poll; in the client's stack (`timed_below`) only if it does not answer
    /// on its second: on the first, the attempt in flight has armed its own
    /// timer (the per-attempt timeout, never later than this deadline), so
    /// the task is woken by the deadline at the latest, and a call answered
    /// on that wake never touches the timer wheel for its total deadline.
    pub(crate) struct TotalFuture<F> {
        #[pin]
        inner: Inner<F>,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Option<Instant>,
        budget: Option<Duration>,
        // whether the first pending poll leaves the timer to the inner future
        wait_once: bool,
    }
}

impl<F> TotalFuture<F> {
    fn new(
        inner: Inner<F>,
        deadline: Option<Instant>,
        budget: Option<Duration>,
        wait_once: bool,
    ) -> Self {
        TotalFuture {
            inner,
            sleep: None,
            deadline,
            budget,
            wait_once,
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
        let polled = match this.inner.as_mut().project() {
            InnerProj::Plain { future } => future.poll(cx),
            InnerProj::Scoped { future } => future.poll(cx),
            InnerProj::Done => return Poll::Ready(Err(timeout(*this.budget))),
        };
        if let Poll::Ready(result) = polled {
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            if *this.wait_once {
                // the attempt's own timer wakes the task by the deadline
                *this.wait_once = false;
                return Poll::Pending;
            }
            this.sleep.set(Some(sleep_until(deadline)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                this.inner.set(Inner::Done);
                return Poll::Ready(Err(timeout(*this.budget)));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceExt, service_fn};

    use super::*;

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
            timed_below: false,
        };
        let started = Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(matches!(
            forten_core::Error::find(err.as_ref()),
            Some(forten_core::Error::Timeout { after: Some(d) }) if *d == Duration::from_secs(2)
        ));
        let deadline = seen.lock().unwrap().expect("the current deadline");
        assert_eq!(deadline.instant(), started + Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn timed_below_the_attempts_timer_ends_a_hung_call_at_the_deadline() {
        let hung = service_fn(|_req: Request<()>| std::future::pending::<Result<(), Infallible>>());
        let inner = tower::Layer::layer(
            &forten_core::deadline::TimeoutLayer::new(Duration::from_secs(10)),
            hung,
        );
        let svc = TotalDeadline {
            inner,
            total: Some(Duration::from_secs(2)),
            timed_below: true,
        };
        let started = Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(matches!(
            forten_core::Error::find(err.as_ref()),
            Some(forten_core::Error::Timeout { after: Some(d) }) if *d == Duration::from_secs(2)
        ));
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
            timed_below: false,
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
        let svc = TotalDeadline {
            inner,
            total: None,
            timed_below: false,
        };
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
        let svc = TotalDeadline {
            inner,
            total: None,
            timed_below: false,
        };
        assert!(!svc.oneshot(Request::new(())).await.unwrap());
    }
}

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
            return TotalFuture {
                inner: Some(self.inner.call(req)),
                sleep: None,
                deadline: None,
                budget: None,
            };
        };
        if deadline.instant() <= now {
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
            budget: Some(deadline.instant().saturating_duration_since(now)),
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_goes_into_the_extensions_and_ends_a_hung_call() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let inner = service_fn({
            let seen = seen.clone();
            move |req: Request<()>| {
                *seen.lock().unwrap() = req.extensions().get::<Deadline>().copied();
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
        assert!(matches!(
            forten_core::Error::find(err.as_ref()),
            Some(forten_core::Error::Timeout { after: Some(d) }) if *d == Duration::from_secs(2)
        ));
        let deadline = seen.lock().unwrap().expect("the deadline extension");
        assert_eq!(deadline.instant(), started + Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_callers_earlier_deadline_wins_and_a_passed_one_sends_nothing() {
        let inner = service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.extensions().get::<Deadline>().map(|d| d.remaining()))
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

//! [`TimedFuture`]: an inner future raced against a lazily armed timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::{BoxError, Error};

pin_project! {
    /// Response future of the deadline and timeout layers.
    ///
    /// The timer is armed only if the inner future is not ready on its first
    /// poll, so a call that answers at once never touches tokio's timer wheel.
    /// When the deadline passes first, the inner future is dropped and the
    /// call fails with [`Error::Timeout`].
    pub struct TimedFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Instant,
        budget: Duration,
    }
}

impl<F> TimedFuture<F> {
    pub(crate) fn new(inner: F, deadline: Instant, budget: Duration) -> Self {
        TimedFuture {
            inner: Some(inner),
            sleep: None,
            deadline,
            budget,
        }
    }

    /// A future that fails at once: the deadline passed before the call.
    pub(crate) fn expired(budget: Duration) -> Self {
        TimedFuture {
            inner: None,
            sleep: None,
            deadline: Instant::now(),
            budget,
        }
    }
}

impl<F, T, E> Future for TimedFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let timeout = |budget: Duration| -> BoxError {
            Box::new(Error::Timeout {
                after: Some(budget),
            })
        };
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(timeout(*this.budget)));
        };
        if let Poll::Ready(result) = inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(sleep_until(*this.deadline)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                // Drop the inner call now: its work is no longer wanted.
                this.inner.set(None);
                return Poll::Ready(Err(timeout(*this.budget)));
            }
        }
        Poll::Pending
    }
}

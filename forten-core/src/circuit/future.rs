//! [`ResponseFuture`]: records the outcome when the inner future resolves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::breaker::CallGuard;
use super::classify::Classify;
use crate::BoxError;

pin_project! {
    /// Response future of [`CircuitBreakerService`](super::CircuitBreakerService):
    /// the inner future, plus the record of the call. Dropping it before it
    /// resolves records nothing and gives a half-open permit back.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: Option<F>,
        guard: CallGuardSlot,
        classifier: C,
    }
}

/// The guard of an admitted call, or the error of a rejected one.
#[derive(Debug)]
enum CallGuardSlot {
    Admitted(CallGuard),
    Rejected(Option<BoxError>),
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn admitted(inner: F, guard: CallGuard, classifier: C) -> Self {
        ResponseFuture {
            inner: Some(inner),
            guard: CallGuardSlot::Admitted(guard),
            classifier,
        }
    }

    pub(crate) fn rejected(error: BoxError, classifier: C) -> Self {
        ResponseFuture {
            inner: None,
            guard: CallGuardSlot::Rejected(Some(error)),
            classifier,
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.guard {
            CallGuardSlot::Admitted(guard) => {
                let Some(inner) = this.inner.as_pin_mut() else {
                    return Poll::Ready(Err(
                        "circuit breaker future polled after completion".into()
                    ));
                };
                let result = ready!(inner.poll(cx));
                guard.finish(this.classifier.is_failure(&result));
                Poll::Ready(result.map_err(Into::into))
            }
            CallGuardSlot::Rejected(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "circuit breaker future polled after completion".into()))),
        }
    }
}

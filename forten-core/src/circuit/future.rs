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
    pub struct ResponseFuture<F, C, E> {
        #[pin]
        kind: Kind<F>,
        classifier: C,
        // A plain function pointer instead of an `E: Into<BoxError>` bound on
        // the `Future` impl: that bound trips rustc's higher-ranked `Send`
        // check ("implementation of `From` is not general enough") when the
        // future is awaited in a spawned task with `E = BoxError`.
        into_box: fn(E) -> BoxError,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Admitted {
            #[pin]
            inner: F,
            guard: CallGuard,
        },
        Rejected {
            error: Option<BoxError>,
        },
    }
}

impl<F, C, E: Into<BoxError>> ResponseFuture<F, C, E> {
    #[inline]
    pub(crate) fn admitted(inner: F, guard: CallGuard, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Admitted { inner, guard },
            classifier,
            into_box: Into::into,
        }
    }

    pub(crate) fn rejected(error: BoxError, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
            classifier,
            into_box: Into::into,
        }
    }
}

impl<F, C, E> std::fmt::Debug for ResponseFuture<F, C, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Admitted { .. } => "admitted",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C, E>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Admitted { inner, guard } => {
                let result = ready!(inner.poll(cx));
                guard.finish(this.classifier.is_failure(&result));
                Poll::Ready(result.map_err(*this.into_box))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "circuit breaker future polled after completion".into()))),
        }
    }
}

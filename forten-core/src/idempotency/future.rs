//! [`IdempotencyFuture`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;

use crate::BoxError;

/// The boxed state machine of a keyed request: buffering, store calls and the
/// handler. Only requests with an idempotency key take this path.
pub(crate) type KeyedFuture =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, BoxError>> + Send>>;

pin_project! {
    /// Response future of [`Idempotency`](super::Idempotency).
    pub struct IdempotencyFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // Not a keyed request: the inner future, untouched.
        Passthrough { #[pin] fut: F },
        // Answered by the layer without running anything (400).
        Done { response: Option<Response<Full<Bytes>>> },
        // A keyed request.
        Keyed { fut: KeyedFuture },
    }
}

impl<F> IdempotencyFuture<F> {
    pub(crate) fn passthrough(fut: F) -> Self {
        IdempotencyFuture {
            kind: Kind::Passthrough { fut },
        }
    }

    pub(crate) fn done(response: Response<Full<Bytes>>) -> Self {
        IdempotencyFuture {
            kind: Kind::Done {
                response: Some(response),
            },
        }
    }

    pub(crate) fn keyed(fut: KeyedFuture) -> Self {
        IdempotencyFuture {
            kind: Kind::Keyed { fut },
        }
    }
}

impl<F, B, E> Future for IdempotencyFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { fut } => match fut.poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(Ok(r.map(Either::Left))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Done { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r.map(Either::Right))),
                None => panic!("IdempotencyFuture polled after completion"),
            },
            KindProj::Keyed { fut } => match fut.as_mut().poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(Ok(r.map(Either::Right))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

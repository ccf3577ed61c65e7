//! The tower plumbing every auth layer shares: a [`RequestCheck`] runs on the
//! request; on failure the layer answers the 401/403 document itself and the
//! inner service never runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use forten_core::correlation::CorrelationContext;
use http::{Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::Rejection;

/// A check run on each request before the inner service: it may read the
/// request and add extensions (the authenticated identity), or reject it.
pub trait RequestCheck {
    /// Checks `req`; `Err` answers the rejection's 401/403 document.
    fn check<B>(&self, req: &mut Request<B>) -> Result<(), Rejection>;
}

/// The service every forten-auth layer produces: runs its check, then the
/// inner service, or answers the rejection without calling it.
///
/// The response body is `Either<inner body, Full<Bytes>>` (the rejection
/// document on the right), as forten-core's `ErrorResponseLayer` does.
#[derive(Debug, Clone)]
pub struct AuthService<S, C> {
    inner: S,
    check: C,
}

impl<S, C> AuthService<S, C> {
    /// Wraps `inner` with `check`.
    pub fn new(inner: S, check: C) -> Self {
        AuthService { inner, check }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: RequestCheck,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.check.check(&mut req) {
            Ok(()) => AuthFuture {
                state: State::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err(rejection) => {
                tracing::debug!(%rejection, "request rejected by auth");
                AuthFuture {
                    state: State::Rejected {
                        response: Some(rejection_response(&rejection, &req)),
                    },
                }
            }
        }
    }
}

/// The 401/403 answer for `rejection`: forten-core's JSON:API document
/// (DESIGN 4.3) with the request's correlation id as `meta.requestId`; a 401
/// carries `WWW-Authenticate: Bearer error="invalid_token"`.
pub fn rejection_response<B>(rejection: &Rejection, req: &Request<B>) -> Response<Full<Bytes>> {
    let context = req
        .extensions()
        .get::<CorrelationContext>()
        .cloned()
        .or_else(CorrelationContext::current);
    rejection
        .to_error()
        .to_response(context.as_ref().map(|c| c.correlation_id().as_str()))
}

pin_project! {
    /// Response future of [`AuthService`]: the inner future, or a ready rejection.
    pub struct AuthFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            fut: F,
        },
        Rejected {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<F, B, E> Future for AuthFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx).map_ok(|r| r.map(Either::Left)),
            StateProj::Rejected { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r.map(Either::Right))),
                None => panic!("AuthFuture polled after completion"),
            },
        }
    }
}

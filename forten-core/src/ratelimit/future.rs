//! [`RateLimitFuture`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Shared;
use super::backend::{Decision, RateLimitBackend};
use super::headers::{RATELIMIT, RATELIMIT_POLICY, state_value_after};
use crate::correlation::CorrelationContext;
use crate::{BoxError, Error};

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): waits for the
    /// backend's decision, then calls the inner service or answers 429.
    pub struct RateLimitFuture<S, B, CF, F, Bk> {
        #[pin]
        state: State<S, B, CF, F>,
        shared: Arc<Shared<Bk>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, CF, F> {
        Checking {
            #[pin]
            check: CF,
            inner: Option<S>,
            req: Option<Request<B>>,
        },
        Calling {
            #[pin]
            fut: F,
            state_header: Option<HeaderValue>,
        },
        // refused before the inner service was called: the 429
        Refused {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

/// The decision, or `None` when the backend failed (logged: fail open).
pub(super) fn decision(result: Result<Decision, BoxError>) -> Option<Decision> {
    match result {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "rate-limit backend failed; request let through");
            None
        }
    }
}

/// What a decision does to a request.
enum Outcome {
    /// It goes on; the response gets this `RateLimit` value (none when the
    /// backend failed).
    Proceed(Option<HeaderValue>),
    /// It is refused with this 429.
    Refused(Response<Full<Bytes>>),
}

/// The [`Outcome`] of `decision` for `req`.
fn outcome<B, Bk: RateLimitBackend>(
    shared: &Shared<Bk>,
    decision: Option<Decision>,
    req: &Request<B>,
) -> Outcome {
    let policy = shared.backend.policy();
    let state_header = decision.map(|d| state_value_after(&shared.state_prefix, &d));
    let Some(d) = decision.filter(|d| !d.allowed) else {
        return Outcome::Proceed(state_header);
    };
    policy.record_refusal();
    let ctx = req
        .extensions()
        .get::<CorrelationContext>()
        .cloned()
        .or_else(CorrelationContext::current);
    let mut response = rate_limited(&d, ctx.as_ref());
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_POLICY, shared.policy_header.clone());
    if let Some(v) = state_header {
        headers.insert(RATELIMIT, v);
    }
    Outcome::Refused(response)
}

impl<S, B, CF, F, Bk> RateLimitFuture<S, B, CF, F, Bk> {
    pub(crate) fn new(check: CF, inner: S, req: Request<B>, shared: Arc<Shared<Bk>>) -> Self {
        RateLimitFuture {
            state: State::Checking {
                check,
                inner: Some(inner),
                req: Some(req),
            },
            shared,
        }
    }
}

impl<S, B, CF, F, Bk> RateLimitFuture<S, B, CF, F, Bk>
where
    S: Service<Request<B>, Future = F>,
    Bk: RateLimitBackend,
{
    /// The backend decided at once ([`RateLimitBackend::check_now`]): calls
    /// the (ready) inner service now, or holds the 429.
    pub(crate) fn decided(
        decision: Option<Decision>,
        inner: &mut S,
        req: Request<B>,
        shared: Arc<Shared<Bk>>,
    ) -> Self {
        let state = match outcome(&shared, decision, &req) {
            Outcome::Refused(refused) => State::Refused {
                response: Some(refused),
            },
            Outcome::Proceed(state_header) => State::Calling {
                fut: inner.call(req),
                state_header,
            },
        };
        RateLimitFuture { state, shared }
    }
}

impl<S, B, CF, F, Bk, ResBody, E> Future for RateLimitFuture<S, B, CF, F, Bk>
where
    S: Service<Request<B>, Future = F>,
    F: Future<Output = Result<Response<ResBody>, E>>,
    CF: Future<Output = Result<Decision, BoxError>>,
    Bk: RateLimitBackend,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check, inner, req } => {
                    let decision = decision(ready!(check.poll(cx)));
                    let (Some(mut inner), Some(req)) = (inner.take(), req.take()) else {
                        panic!("RateLimitFuture polled after completion");
                    };
                    match outcome(this.shared, decision, &req) {
                        Outcome::Refused(refused) => {
                            return Poll::Ready(Ok(refused.map(Either::Right)));
                        }
                        Outcome::Proceed(state_header) => {
                            let fut = inner.call(req);
                            this.state.set(State::Calling { fut, state_header });
                        }
                    }
                }
                StateProj::Refused { response } => {
                    let Some(refused) = response.take() else {
                        panic!("RateLimitFuture polled after completion");
                    };
                    return Poll::Ready(Ok(refused.map(Either::Right)));
                }
                StateProj::Calling { fut, state_header } => {
                    let mut response = ready!(fut.poll(cx))?;
                    let headers = response.headers_mut();
                    headers.insert(RATELIMIT_POLICY, this.shared.policy_header.clone());
                    if let Some(v) = state_header.take() {
                        headers.insert(RATELIMIT, v);
                    }
                    return Poll::Ready(Ok(response.map(Either::Left)));
                }
            }
        }
    }
}

/// The 429 document of DESIGN 4.3, with `Retry-After`.
fn rate_limited(d: &Decision, ctx: Option<&CorrelationContext>) -> Response<Full<Bytes>> {
    Error::RateLimited {
        retry_after: d.retry_after,
    }
    .to_response(ctx.map(|c| c.correlation_id().as_str()))
}

//! Retries with backoff, a retry budget and deadlines (DESIGN 4.5).
//!
//! [`RetryLayer`] wraps any tower service. For `http::Request<B>` services the
//! default [`HttpPolicy`] retries only what is safe: refused connections; and,
//! for idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, or any request
//! with an `Idempotency-Key`), timeouts, broken connections and the responses
//! 408, 429, 502, 503, 504. A `Retry-After` on 429/503 sets the next delay.
//! Any other service gets the same machinery with a [`Policy`] of your own.
//!
//! Around the policy the layer enforces:
//!
//! - **attempts**: at most `1 + max_retries` of the [`Backoff`](crate::backoff::Backoff);
//! - **backoff**: the schedule's next delay, or `Retry-After` capped by
//!   [`RetryConfig::max_retry_after`] (by default the schedule's maximum delay);
//! - **deadline**: no attempt starts at or after the request's
//!   [`Deadline`](crate::deadline::Deadline) (its extension or
//!   [`Deadline::current`](crate::deadline::Deadline::current)); a delay that would
//!   reach it ends the retries at once;
//! - **budget**: each retry draws on a shared [`RetryBudget`]; when it is empty
//!   the last outcome is returned at once;
//! - **readiness**: `poll_ready` is called on the inner service before every
//!   retry, not only before the first attempt.
//!
//! **What the caller gets.** The first outcome the policy does not retry is
//! returned as it is (errors boxed). When retries stop while the outcome is
//! still retryable, a retryable *response* (say a 503) is returned as the
//! response, as `tower::retry` does, while a retryable *error* comes back as
//! [`Error::RetriesExhausted`](crate::Error::RetriesExhausted) carrying the attempt
//! count and the last error (mapped to 502, or 504 when the last error was a
//! timeout). A request whose body cannot be replayed ([`ReplayBody`]) is sent
//! once and its outcome returned as it is.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use forten_core::backoff::{Constant};
//! use forten_core::retry::{RetryConfig, RetryLayer};
//! use http::{Request, Response, StatusCode};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! // An upstream that fails twice with 503, then answers 200.
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = service_fn({
//!     let calls = calls.clone();
//!     move |_req: Request<()>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         let mut response = Response::new(());
//!         *response.status_mut() = status;
//!         async move { Ok::<_, std::convert::Infallible>(response) }
//!     }
//! });
//! let config = RetryConfig::builder()
//!     .backoff(Constant::new(Duration::from_millis(1), 3).unwrap())
//!     .build()
//!     .unwrap();
//! let client = RetryLayer::new(config).layer(upstream);
//! let response = client.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # });
//! ```

mod budget;
mod config;
mod future;
mod layer;
mod policy;
mod retry_after;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

pub use budget::{BudgetError, RetryBudget, RetryBudgetBuilder};
pub use config::{MAX_RETRIES_LIMIT, RetryConfig, RetryConfigBuilder, RetryConfigError};
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub use policy::{Action, HttpPolicy, Policy, ReplayBody, is_idempotent};
pub use retry_after::{InvalidRetryAfter, parse_retry_after, retry_after};

use crate::BoxError;

/// What a [`Retry`] and every request in flight through it share: the
/// configuration, the policy, and a clone of the inner service, taken when
/// the `Retry` was built, that a request clones again at its first retry.
///
/// A request holds one reference to it, not a copy of the configuration and
/// of the service: its future is that much smaller (a request's future is
/// moved by every layer above it), and a first attempt that succeeds clones
/// no service at all.
struct Shared<S, P> {
    config: RetryConfig,
    policy: P,
    service: S,
}

impl<S, P: fmt::Debug> fmt::Debug for Shared<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Retries the inner service's retryable outcomes; see the [module docs](self).
///
/// Built by [`RetryLayer`]. The inner service must be `Clone`: retries go
/// through a clone of it as it was when the `Retry` was built (one clone per
/// retried request, made at its first retry), and `poll_ready` is called on
/// that clone before each retry.
pub struct Retry<S, P = HttpPolicy> {
    inner: S,
    shared: Arc<Shared<S, P>>,
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S: Clone, P> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Clone, P> Retry<S, P> {
    /// Wraps `inner`, retrying what `policy` says as `config` allows.
    pub fn new(inner: S, config: RetryConfig, policy: P) -> Self {
        Retry {
            shared: Arc::new(Shared {
                config,
                policy,
                service: inner.clone(),
            }),
            inner,
        }
    }
}

impl<S, P> Retry<S, P> {
    /// The configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably. Retries go through a clone of the service
    /// as it was when this `Retry` was built, not as changed here.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, Req> Service<Req> for Retry<S, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<Req, S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, P, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.shared;
        if let Some(budget) = &shared.config.budget {
            budget.deposit();
        }
        if shared.config.backoff.max_retries() == 0 {
            return ResponseFuture::once(self.inner.call(req));
        }
        match shared.policy.split(req) {
            (req, Some(copy)) => {
                let future = self.inner.call(req);
                ResponseFuture::retrying(future, Arc::clone(shared), copy)
            }
            (req, None) => {
                tracing::debug!(
                    "request body cannot be replayed: sending it once, without retries"
                );
                ResponseFuture::once(self.inner.call(req))
            }
        }
    }
}

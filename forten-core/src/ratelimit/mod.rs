//! Rate limits and bulkheads (DESIGN 4.3: 429 RATE_LIMITED, 503 OVERLOADED).
//!
//! [`RateLimitLayer`] enforces a keyed GCRA quota ([`RateLimitPolicy`]: `q`
//! requests per window `w`, refilled smoothly, bursts up to `q`). Requests are
//! keyed by [`KeyExtractor`]: the authenticated
//! [`ClientIdentity`](crate::idempotency::ClientIdentity), the peer IP, or a
//! function. Every response carries the fields of the IETF httpapi
//! ratelimit-headers draft, `RateLimit-Policy: "name";q=100;w=60` and
//! `RateLimit: "name";r=<remaining>;t=<seconds until full>`; a refused request
//! gets the 429 JSON:API document with `Retry-After`.
//!
//! Backends: `GovernorBackend` (feature `rate-limit`, default: in-process, on
//! the governor crate) and `RedisBackend` (feature `redis`: one Lua script
//! per check, so several replicas share one budget). When a backend fails,
//! the request is let through and a warning logged (fail open).
//!
//! For concurrency limits (bulkheads) use tower's own layers; see [`bulkhead`].
//!
//! ```
//! # #[cfg(feature = "rate-limit")] {
//! use std::time::Duration;
//! use forten_core::ratelimit::{GovernorBackend, KeyExtractor, RateLimitLayer, RateLimitPolicy};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let policy = RateLimitPolicy::new("per-client", 2, Duration::from_secs(60)).unwrap();
//! let layer = RateLimitLayer::keyed(GovernorBackend::new(policy), KeyExtractor::global());
//! let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
//! }));
//! let first = svc.clone().oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(first.headers()["ratelimit-policy"], "\"per-client\";q=2;w=60");
//! assert_eq!(first.headers()["ratelimit"], "\"per-client\";r=1;t=30");
//! svc.clone().oneshot(http::Request::new(())).await.unwrap();
//! let third = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(third.status(), 429);
//! assert_eq!(third.headers()["retry-after"], "30");
//! # });
//! # }
//! ```

mod backend;
pub mod bulkhead;
mod config;
mod error;
mod future;
#[cfg(feature = "rate-limit")]
mod governor;
pub mod headers;
mod layer;
#[cfg(feature = "redis")]
mod redis;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use tower_service::Service;

pub use backend::{Decision, RateLimitBackend};
pub use config::{KeyExtractor, LimitKey, RateLimitPolicy};
pub use error::ConfigError;
pub use future::RateLimitFuture;
#[cfg(feature = "rate-limit")]
pub use governor::{GovernorBackend, TokioClock};
pub use layer::RateLimitLayer;
#[cfg(feature = "redis")]
pub use redis::RedisBackend;

/// What a layer and its services share, behind one `Arc`: a service is
/// cloned for each request in most stacks, and its future keeps what the
/// response needs, so both count one reference instead of three.
#[derive(Debug)]
pub(crate) struct Shared<Bk> {
    pub(crate) backend: Arc<Bk>,
    pub(crate) keys: KeyExtractor,
    /// `RateLimit-Policy`, the same on every response.
    pub(crate) policy_header: HeaderValue,
    /// The start of every `RateLimit` value: the policy's name as an
    /// sf-string, then `;r=`.
    pub(crate) state_prefix: Box<str>,
}

impl<Bk: RateLimitBackend> Shared<Bk> {
    pub(crate) fn new(backend: Arc<Bk>, keys: KeyExtractor) -> Self {
        let policy = backend.policy();
        Shared {
            policy_header: headers::policy_value(policy),
            state_prefix: headers::state_prefix(policy),
            backend,
            keys,
        }
    }
}

/// The service produced by [`RateLimitLayer`].
#[derive(Debug)]
pub struct RateLimit<S, Bk> {
    inner: S,
    shared: Arc<Shared<Bk>>,
}

impl<S: Clone, Bk> Clone for RateLimit<S, Bk> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, Bk, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, Bk>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    Bk: RateLimitBackend,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = RateLimitFuture<S, ReqBody, Bk::Future, S::Future, Bk>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let (parts, body) = req.into_parts();
        let key = shared.keys.key(&parts);
        let req = Request::from_parts(parts, body);
        if let Some(decided) = shared.backend.check_now(&key) {
            // Decided already (in-process): the ready inner service is
            // called now, so neither it nor the request waits in the future.
            return RateLimitFuture::decided(
                future::decision(decided),
                &mut self.inner,
                req,
                Arc::clone(shared),
            );
        }
        let check = shared.backend.check(&key);
        // The ready service goes into the future; a fresh clone stays here.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        RateLimitFuture::new(check, inner, req, Arc::clone(shared))
    }
}

//! [`RateLimitLayer`].

use std::sync::Arc;

use http::HeaderValue;
use tower_layer::Layer;

use super::RateLimit;
use super::backend::RateLimitBackend;
use super::config::KeyExtractor;
use super::headers::policy_value;

/// Keyed GCRA rate limits: 429 RATE_LIMITED with `Retry-After` when a key's
/// budget is spent, and the `RateLimit-Policy` / `RateLimit` headers on every
/// response. See the [module docs](super).
#[derive(Debug)]
pub struct RateLimitLayer<Bk> {
    backend: Arc<Bk>,
    keys: KeyExtractor,
    policy_header: HeaderValue,
}

impl<Bk> Clone for RateLimitLayer<Bk> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            backend: Arc::clone(&self.backend),
            keys: self.keys.clone(),
            policy_header: self.policy_header.clone(),
        }
    }
}

impl<Bk: RateLimitBackend> RateLimitLayer<Bk> {
    /// Limits requests by the default key: the client identity, else the
    /// peer IP ([`KeyExtractor::client_or_ip`]).
    pub fn new(backend: Bk) -> Self {
        Self::with_shared(Arc::new(backend), KeyExtractor::default())
    }

    /// Limits requests by `keys`' key.
    pub fn keyed(backend: Bk, keys: KeyExtractor) -> Self {
        Self::with_shared(Arc::new(backend), keys)
    }

    /// A layer over a backend shared with other layers.
    pub fn with_shared(backend: Arc<Bk>, keys: KeyExtractor) -> Self {
        let policy_header = policy_value(backend.policy());
        RateLimitLayer {
            backend,
            keys,
            policy_header,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<Bk> {
        &self.backend
    }
}

impl<S, Bk> Layer<S> for RateLimitLayer<Bk> {
    type Service = RateLimit<S, Bk>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            backend: Arc::clone(&self.backend),
            keys: self.keys.clone(),
            policy_header: self.policy_header.clone(),
        }
    }
}

//! [`RateLimitLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::backend::RateLimitBackend;
use super::config::KeyExtractor;
use super::{RateLimit, Shared};

/// Keyed GCRA rate limits: 429 RATE_LIMITED with `Retry-After` when a key's
/// budget is spent, and the `RateLimit-Policy` / `RateLimit` headers on every
/// response. See the [module docs](super).
#[derive(Debug)]
pub struct RateLimitLayer<Bk> {
    shared: Arc<Shared<Bk>>,
}

impl<Bk> Clone for RateLimitLayer<Bk> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
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
        RateLimitLayer {
            shared: Arc::new(Shared::new(backend, keys)),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<Bk> {
        &self.shared.backend
    }
}

impl<S, Bk> Layer<S> for RateLimitLayer<Bk> {
    type Service = RateLimit<S, Bk>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

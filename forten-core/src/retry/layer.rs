//! [`RetryLayer`].

use tower_layer::Layer;

use super::{HttpPolicy, Retry, RetryConfig};

/// Wraps a service in [`Retry`]. Defaults to [`HttpPolicy`] for
/// `http::Request` services; [`RetryLayer::with_policy`] takes any
/// [`Policy`](super::Policy).
#[derive(Debug, Clone)]
pub struct RetryLayer<P = HttpPolicy> {
    config: RetryConfig,
    policy: P,
}

impl RetryLayer {
    /// The HTTP layer with `config`.
    pub fn new(config: RetryConfig) -> Self {
        RetryLayer::with_policy(config, HttpPolicy)
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer::new(RetryConfig::default())
    }
}

impl<P> RetryLayer<P> {
    /// A layer retrying what `policy` says, as `config` allows.
    pub fn with_policy(config: RetryConfig, policy: P) -> Self {
        RetryLayer { config, policy }
    }
}

impl<S: Clone, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.config.clone(), self.policy.clone())
    }
}

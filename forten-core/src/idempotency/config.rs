//! The idempotency layer's builder and validated configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::request::Parts;

use super::IdempotencyLayer;
use super::error::ConfigError;
use super::identity::IdentityFn;

/// Validated settings of an [`IdempotencyLayer`].
#[derive(Clone)]
pub struct IdempotencyConfig {
    pub(crate) methods: Vec<Method>,
    pub(crate) required: bool,
    pub(crate) ttl: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) identity: Option<IdentityFn>,
}

impl fmt::Debug for IdempotencyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyConfig")
            .field("methods", &self.methods)
            .field("required", &self.required)
            .field("ttl", &self.ttl)
            .field("lock_ttl", &self.lock_ttl)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("identity", &self.identity.as_ref().map(|_| "fn"))
            .finish()
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            methods: vec![Method::POST, Method::PATCH],
            required: false,
            ttl: Duration::from_secs(24 * 60 * 60),
            lock_ttl: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            identity: None,
        }
    }
}

impl IdempotencyConfig {
    /// The methods the layer applies to.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Whether a request without a key is refused (400).
    pub fn required(&self) -> bool {
        self.required
    }

    /// How long a completed entry is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long an in-flight lock lasts when its holder never completes nor releases it.
    pub fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    /// The largest request body buffered for the fingerprint (413 beyond).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

/// Builder of an [`IdempotencyLayer`]; see [`IdempotencyLayer::builder`].
#[derive(Debug)]
pub struct IdempotencyLayerBuilder<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: IdempotencyConfig,
}

impl<St> IdempotencyLayerBuilder<St> {
    /// The methods the layer applies to (default POST and PATCH); other
    /// requests pass through untouched.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config.methods = methods.into_iter().collect();
        self
    }

    /// Refuse requests of those methods that carry no key (400
    /// IDEMPOTENCY_KEY_MISSING). Default: off, such requests pass through.
    pub fn required(mut self, required: bool) -> Self {
        self.config.required = required;
        self
    }

    /// How long a completed response is replayed (default 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// How long an in-flight lock lasts if its holder vanishes without
    /// releasing it, e.g. a crashed replica (default 60 s). Requests still
    /// running after this may be run a second time, so set it above your
    /// slowest handler.
    pub fn lock_ttl(mut self, lock_ttl: Duration) -> Self {
        self.config.lock_ttl = lock_ttl;
        self
    }

    /// The largest request body buffered to fingerprint it (default 1 MiB);
    /// larger bodies are answered 413 and nothing is stored.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.config.max_body_bytes = max;
        self
    }

    /// Names the client of a request that carries no
    /// [`ClientIdentity`](super::ClientIdentity) extension. Without it such
    /// requests share one anonymous scope.
    pub fn identity_fn(
        mut self,
        f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.config.identity = Some(Arc::new(f));
        self
    }

    /// The layer, or what is wrong with the configuration.
    pub fn build(self) -> Result<IdempotencyLayer<St>, ConfigError> {
        let c = &self.config;
        if c.methods.is_empty() {
            return Err(ConfigError::NoMethods);
        }
        if c.ttl.is_zero() {
            return Err(ConfigError::ZeroDuration("ttl"));
        }
        if c.lock_ttl.is_zero() {
            return Err(ConfigError::ZeroDuration("lock_ttl"));
        }
        if c.lock_ttl > c.ttl {
            return Err(ConfigError::LockLongerThanEntry);
        }
        if c.max_body_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_body_bytes"));
        }
        Ok(IdempotencyLayer {
            store: self.store,
            config: Arc::new(self.config),
        })
    }
}

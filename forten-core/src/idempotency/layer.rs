//! [`IdempotencyLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::Idempotency;
use super::config::{IdempotencyConfig, IdempotencyLayerBuilder};

/// Applies the IETF Idempotency-Key semantics (DESIGN 4.4) to a service;
/// see the [module docs](super) for the behaviour.
#[derive(Debug)]
pub struct IdempotencyLayer<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Arc<IdempotencyConfig>,
}

impl<St> Clone for IdempotencyLayer<St> {
    fn clone(&self) -> Self {
        IdempotencyLayer {
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
        }
    }
}

impl<St> IdempotencyLayer<St> {
    /// A layer with the default configuration (POST and PATCH, key
    /// optional, 24 h entries, 60 s locks, 1 MiB bodies).
    pub fn new(store: St) -> Self {
        Self::with_shared_store(Arc::new(store))
    }

    /// Like [`new`](Self::new), with a store shared with other layers.
    pub fn with_shared_store(store: Arc<St>) -> Self {
        IdempotencyLayer {
            store,
            config: Arc::new(IdempotencyConfig::default()),
        }
    }

    /// A builder to change the defaults.
    pub fn builder(store: St) -> IdempotencyLayerBuilder<St> {
        Self::builder_shared(Arc::new(store))
    }

    /// A builder over a store shared with other layers.
    pub fn builder_shared(store: Arc<St>) -> IdempotencyLayerBuilder<St> {
        IdempotencyLayerBuilder {
            store,
            config: IdempotencyConfig::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<St> {
        &self.store
    }
}

impl<S, St> Layer<S> for IdempotencyLayer<St> {
    type Service = Idempotency<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency {
            inner,
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
        }
    }
}

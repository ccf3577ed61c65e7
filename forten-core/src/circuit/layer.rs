//! [`CircuitBreakerLayer`].

use tower_layer::Layer;

use super::{CircuitBreaker, CircuitBreakerService, HttpClassifier};

/// Wraps services in a [`CircuitBreaker`]. Every service the layer builds
/// shares the one breaker (and its clones do too).
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = HttpClassifier> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer with the default [`HttpClassifier`].
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: HttpClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Uses `classifier` to decide what counts as a failure
    /// (see [`Classify`](super::Classify)).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker this layer applies.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}

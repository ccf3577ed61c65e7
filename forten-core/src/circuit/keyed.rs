//! One breaker per key: [`KeyedCircuitBreakerLayer`] and its registry
//! [`KeyedCircuitBreakers`].

use std::collections::HashMap;
use std::fmt::{self, Display};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::events::{CircuitEvents, Emitter};
use super::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, Classify, HttpClassifier, ResponseFuture,
};
use crate::BoxError;

/// Idle breakers are evicted after this long by default.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Breakers by key, created on first use from one configuration (each named
/// `<name>/<key>`), and evicted once idle.
///
/// Only Closed breakers, and Open ones whose wait is over, are evicted: an
/// Open breaker keeps protecting its key for its whole wait however long
/// nobody calls, and states set by hand (ForcedOpen, Disabled) stay until
/// reset. Every breaker sends its events to the one stream of
/// [`subscribe`](Self::subscribe).
pub struct KeyedCircuitBreakers<K> {
    inner: Arc<Registry<K>>,
}

struct Registry<K> {
    template: CircuitBreakerConfig,
    emitter: Emitter,
    idle_timeout: Duration,
    base: Instant,
    last_sweep: AtomicU64,
    map: RwLock<HashMap<K, Entry>>,
}

struct Entry {
    breaker: CircuitBreaker,
    /// Nanoseconds since `base` of the last call.
    last_used: AtomicU64,
}

impl<K> Clone for KeyedCircuitBreakers<K> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakers {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for KeyedCircuitBreakers<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakers")
            .field("name", &self.inner.template.name)
            .field("idle_timeout", &self.inner.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<K> KeyedCircuitBreakers<K>
where
    K: Hash + Eq + Clone + Display,
{
    /// Breakers configured like `template`, evicted after 5 idle minutes.
    pub fn new(template: CircuitBreakerConfig) -> Self {
        Self::with_idle_timeout(template, DEFAULT_IDLE_TIMEOUT)
    }

    /// Breakers configured like `template`, evicted after `idle_timeout`
    /// without a call (while Closed).
    pub fn with_idle_timeout(template: CircuitBreakerConfig, idle_timeout: Duration) -> Self {
        let emitter = Emitter::new(template.event_capacity);
        KeyedCircuitBreakers {
            inner: Arc::new(Registry {
                template,
                emitter,
                idle_timeout,
                base: Instant::now(),
                last_sweep: AtomicU64::new(0),
                map: RwLock::new(HashMap::new()),
            }),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.inner.base)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    /// The breaker of `key`, if it exists.
    pub fn breaker(&self, key: &K) -> Option<CircuitBreaker> {
        let map = self
            .inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|e| e.breaker.clone())
    }

    /// The state of `key`'s breaker, if it exists.
    pub fn state(&self, key: &K) -> Option<CircuitState> {
        let map = self
            .inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|e| e.breaker.state())
    }

    /// The keys that have a breaker now.
    pub fn keys(&self) -> Vec<K> {
        let map = self
            .inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }

    /// How many breakers exist.
    pub fn len(&self) -> usize {
        self.inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no breaker exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events of every key's breaker (their names say which key).
    pub fn subscribe(&self) -> CircuitEvents {
        self.inner.emitter.subscribe()
    }

    /// The breaker of `key`, created if missing; marks it used now.
    pub fn get_or_create(&self, key: &K) -> CircuitBreaker {
        let now = self.now();
        {
            let map = self
                .inner
                .map
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = map.get(key) {
                if entry.last_used.load(Ordering::Relaxed) != now {
                    entry.last_used.store(now, Ordering::Relaxed);
                }
                return entry.breaker.clone();
            }
        }
        let breaker = {
            let mut map = self
                .inner
                .map
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let entry = map.entry(key.clone()).or_insert_with(|| {
                let mut config = self.inner.template.clone();
                config.name = format!("{}/{key}", self.inner.template.name).into();
                Entry {
                    breaker: CircuitBreaker::with_emitter(config, self.inner.emitter.clone()),
                    last_used: AtomicU64::new(now),
                }
            });
            entry.last_used.store(now, Ordering::Relaxed);
            entry.breaker.clone()
        };
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= nanos(self.inner.idle_timeout) {
            self.inner.last_sweep.store(now, Ordering::Relaxed);
            self.evict_idle();
        }
        breaker
    }

    /// Drops the idle breakers (see the type's docs for which); returns
    /// how many went. Runs by itself when new keys arrive, at most once per
    /// idle timeout.
    pub fn evict_idle(&self) -> usize {
        let now = self.now();
        let idle = nanos(self.inner.idle_timeout);
        let mut map = self
            .inner
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        map.retain(|_, e| {
            now.saturating_sub(e.last_used.load(Ordering::Relaxed)) < idle
                || !e.breaker.is_evictable()
        });
        before - map.len()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A layer keeping one [`CircuitBreaker`] per key, the key chosen from each
/// request by `key_fn` (e.g. the authority, or the instance id).
///
/// ```
/// use forten_core::circuit::{CircuitBreaker, CircuitState, KeyedCircuitBreakerLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let config = CircuitBreaker::builder("upstream").count_window(2).minimum_calls(2).config()?;
/// let layer = KeyedCircuitBreakerLayer::new(config, |req: &http::Request<()>| {
///     req.uri().authority().map(|a| a.to_string()).unwrap_or_default()
/// });
/// let breakers = layer.breakers().clone();
/// let svc = layer.layer(service_fn(|req: http::Request<()>| async move {
///     let mut response = http::Response::new(());
///     if req.uri().host() == Some("down.internal") {
///         *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
///     }
///     Ok::<_, std::convert::Infallible>(response)
/// }));
/// for uri in ["http://down.internal/", "http://down.internal/", "http://up.internal/"] {
///     let _ = svc.clone().oneshot(http::Request::get(uri).body(())?).await;
/// }
/// assert_eq!(breakers.state(&"down.internal".to_owned()), Some(CircuitState::Open));
/// assert_eq!(breakers.state(&"up.internal".to_owned()), Some(CircuitState::Closed));
/// # Ok::<_, forten_core::BoxError>(())
/// # }).unwrap();
/// ```
pub struct KeyedCircuitBreakerLayer<K, F, C = HttpClassifier> {
    breakers: KeyedCircuitBreakers<K>,
    key_fn: F,
    classifier: C,
}

impl<K, F> KeyedCircuitBreakerLayer<K, F>
where
    K: Hash + Eq + Clone + Display,
{
    /// One breaker per `key_fn(&request)`, each configured like `template`.
    pub fn new(template: CircuitBreakerConfig, key_fn: F) -> Self {
        KeyedCircuitBreakerLayer {
            breakers: KeyedCircuitBreakers::new(template),
            key_fn,
            classifier: HttpClassifier,
        }
    }

    /// Uses an existing registry (shared with other layers or kept to watch it).
    pub fn with_breakers(breakers: KeyedCircuitBreakers<K>, key_fn: F) -> Self {
        KeyedCircuitBreakerLayer {
            breakers,
            key_fn,
            classifier: HttpClassifier,
        }
    }
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C> {
    /// Uses `classifier` to decide what counts as a failure.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, F, C2> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            key_fn: self.key_fn,
            classifier,
        }
    }

    /// The registry of breakers (look keys up, subscribe, evict).
    pub fn breakers(&self) -> &KeyedCircuitBreakers<K> {
        &self.breakers
    }
}

impl<K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers.clone(),
            key_fn: self.key_fn.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreakerService<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService {
            inner,
            breakers: self.breakers.clone(),
            key_fn: self.key_fn.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// The service built by [`KeyedCircuitBreakerLayer`].
pub struct KeyedCircuitBreakerService<S, K, F, C = HttpClassifier> {
    inner: S,
    breakers: KeyedCircuitBreakers<K>,
    key_fn: F,
    classifier: C,
}

impl<S, K, F, C> KeyedCircuitBreakerService<S, K, F, C> {
    /// The registry of breakers.
    pub fn breakers(&self) -> &KeyedCircuitBreakers<K> {
        &self.breakers
    }
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerService<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakerService {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
            key_fn: self.key_fn.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedCircuitBreakerService<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreakerService<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + Display,
    F: Fn(&Req) -> K,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key_fn)(&req);
        let breaker = self.breakers.get_or_create(&key);
        // `CircuitBreaker::run` by hand: through its closure the inner
        // future is built one move further away (callgrind-client, keyed:
        // +150 instructions per call).
        match breaker.start() {
            Ok(guard) => {
                ResponseFuture::admitted(self.inner.call(req), guard, self.classifier.clone())
            }
            Err(error) => ResponseFuture::rejected(error, self.classifier.clone()),
        }
    }
}

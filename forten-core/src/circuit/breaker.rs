//! [`CircuitBreaker`]: the shared handle, and the per-call guard.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::classify::Classify;
use super::config::{CircuitBreakerBuilder, CircuitBreakerConfig};
use super::error::rejection;
use super::events::{CircuitEvents, Emitter};
use super::future::ResponseFuture;
use super::layer::CircuitBreakerLayer;
use super::state::{Admission, CircuitMetrics, CircuitState, Clock, Core};
use super::window::Outcome;
use crate::BoxError;
use crate::spare;

/// A circuit breaker: cheap to clone, every clone is the same breaker.
///
/// Wrap services with [`layer`](Self::layer) (or [`CircuitBreakerLayer::new`]);
/// keep a clone to watch and steer it: [`state`](Self::state),
/// [`metrics`](Self::metrics), [`subscribe`](Self::subscribe),
/// [`force_open`](Self::force_open), [`disable`](Self::disable),
/// [`reset`](Self::reset).
#[derive(Clone)]
pub struct CircuitBreaker {
    handle: Arc<Handle>,
}

/// What every clone of a breaker shares: one reference count per clone.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    /// One reference per stripe: a call takes its thread's (see [`SPARE`]),
    /// so the reference count a call touches is not shared with other threads.
    stripes: Box<[Arc<Stripe>]>,
    /// The events' sending side. The shared state only holds a weak one, so
    /// [`CircuitBreaker::subscribe`]'s streams end when the last handle is
    /// dropped, whatever in-flight calls still hold.
    emitter: Emitter,
}

#[derive(Debug)]
pub(crate) struct Shared {
    core: Core,
    base: Instant,
}

#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Stripe {
    shared: Arc<Shared>,
    index: usize,
}

struct TokioClock<'a>(&'a Instant);

impl Clock for TokioClock<'_> {
    fn now(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(*self.0).as_nanos())
            .unwrap_or(u64::MAX)
    }
}

impl Shared {
    fn clock(&self) -> TokioClock<'_> {
        TokioClock(&self.base)
    }
}

/// Stripes per breaker: twice the CPUs, a power of two in 4..=64.
fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(4, std::num::NonZero::get);
        (cpus * 2).next_power_of_two().clamp(4, 64)
    })
}

thread_local! {
    /// The stripe reference this thread's last finished call gave back (see
    /// [`crate::spare`]): a closed breaker's call then costs one atomic
    /// operation (its count), not three. It keeps the breaker's state, not its
    /// event channel, alive.
    static SPARE: spare::Slot<Stripe> = const { Cell::new(None) };
}

/// A small number per thread, handed out in turn: threads pick stripes with it.
#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // const-initialised: no lazy-init bookkeeping on each access
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut index = i.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            i.set(index);
        }
        index
    })
}

impl CircuitBreaker {
    /// Starts a builder; see [`CircuitBreakerBuilder`] for the settings.
    pub fn builder(name: impl Into<Arc<str>>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new(name)
    }

    /// A breaker with a validated configuration.
    pub fn from_config(config: CircuitBreakerConfig) -> Self {
        let emitter = Emitter::new(config.event_capacity);
        Self::with_emitter(config, emitter)
    }

    pub(crate) fn with_emitter(config: CircuitBreakerConfig, emitter: Emitter) -> Self {
        let shared = Arc::new(Shared {
            core: Core::new(config, stripe_count(), emitter.downgrade()),
            base: Instant::now(),
        });
        let stripes = (0..shared.core.stripe_count())
            .map(|index| {
                Arc::new(Stripe {
                    shared: Arc::clone(&shared),
                    index,
                })
            })
            .collect();
        CircuitBreaker {
            handle: Arc::new(Handle {
                shared,
                stripes,
                emitter,
            }),
        }
    }

    /// A layer wrapping services in this breaker, with the default HTTP classifier.
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone())
    }

    /// One call through this breaker, for code that holds a future rather
    /// than a tower service: what [`CircuitBreakerService`] does for each
    /// request, without a service around it. When the breaker admits the
    /// call, `call` runs and its outcome is recorded as `classifier` judges
    /// it; when it refuses, `call` does not run and the future answers the
    /// [`Error::CircuitOpen`](crate::Error::CircuitOpen) error.
    ///
    /// ```
    /// use forten_core::circuit::{CircuitBreaker, HttpClassifier};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let breaker = CircuitBreaker::builder("events").build().unwrap();
    /// let answer = breaker
    ///     .run(HttpClassifier, || async {
    ///         Ok::<_, std::io::Error>(http::Response::new(()))
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(answer.status(), 200);
    /// assert_eq!((breaker.metrics().calls, breaker.metrics().failures), (1, 0));
    /// # });
    /// ```
    ///
    /// [`CircuitBreakerService`]: super::CircuitBreakerService
    pub fn run<F, C, T, E>(
        &self,
        classifier: C,
        call: impl FnOnce() -> F,
    ) -> ResponseFuture<F, C, E>
    where
        F: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
        E: Into<BoxError>,
    {
        match self.start() {
            Ok(guard) => ResponseFuture::admitted(call(), guard, classifier),
            Err(error) => ResponseFuture::rejected(error, classifier),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.handle.shared.core.config().name
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        self.handle.shared.core.config()
    }

    /// The current state. An Open breaker whose wait has ended stays Open
    /// until the next call, which moves it to HalfOpen and probes.
    pub fn state(&self) -> CircuitState {
        self.handle.shared.core.state()
    }

    /// A snapshot of the state and the window's counts.
    pub fn metrics(&self) -> CircuitMetrics {
        let shared = &self.handle.shared;
        shared.core.metrics(&shared.clock())
    }

    /// A stream of every later transition and rejection.
    pub fn subscribe(&self) -> CircuitEvents {
        self.handle.emitter.subscribe()
    }

    /// Opens the breaker by hand: every call is rejected until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.set_state(CircuitState::ForcedOpen);
    }

    /// Switches the breaker off: every call passes, nothing is recorded,
    /// until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.set_state(CircuitState::Disabled);
    }

    /// Closes the breaker with an empty window and no wait growth, whatever
    /// state it was in.
    pub fn reset(&self) {
        self.set_state(CircuitState::Closed);
    }

    /// Closed, or Open with its wait over: nothing would be lost by
    /// replacing it with a fresh breaker.
    pub(crate) fn is_evictable(&self) -> bool {
        match self.state() {
            CircuitState::Closed => true,
            CircuitState::Open => self.metrics().time_left_open == Some(Duration::ZERO),
            _ => false,
        }
    }

    fn set_state(&self, to: CircuitState) {
        let shared = &self.handle.shared;
        shared.core.set_state(to, &shared.clock());
    }

    /// Admits a call or returns the rejection error.
    #[inline]
    pub(crate) fn start(&self) -> Result<CallGuard, BoxError> {
        let handle = &*self.handle;
        let shared = &handle.shared;
        match shared.core.admit(&shared.clock()) {
            Ok(Admission::Passthrough) => Ok(CallGuard { call: None }),
            Ok(admission) => {
                let stripe = &handle.stripes[thread_index() & (handle.stripes.len() - 1)];
                let started = shared
                    .core
                    .config()
                    .slow_call_duration
                    .map(|_| Instant::now());
                Ok(CallGuard {
                    call: Some(Call {
                        stripe: spare::take(&SPARE, stripe),
                        admission,
                        started,
                    }),
                })
            }
            Err(rejected) => {
                tracing::debug!(
                    circuit = %shared.core.config().name,
                    state = %rejected.state,
                    retry_after_ms = rejected.retry_after.as_millis() as u64,
                    "call rejected by circuit breaker"
                );
                Err(rejection(&shared.core.config().name, rejected.retry_after))
            }
        }
    }
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// One admitted call. Records the outcome when finished; a half-open probe
/// dropped before it finished gives its permit back.
#[derive(Debug)]
pub(crate) struct CallGuard {
    call: Option<Call>,
}

#[derive(Debug)]
struct Call {
    stripe: Arc<Stripe>,
    admission: Admission,
    started: Option<Instant>,
}

impl CallGuard {
    /// Records the call's outcome (`failure` as the classifier decided).
    #[inline]
    pub(crate) fn finish(&mut self, failure: bool) {
        let Some(call) = self.call.take() else {
            return;
        };
        let shared = &call.stripe.shared;
        let slow = match (call.started, shared.core.config().slow_call_duration) {
            (Some(started), Some(limit)) => started.elapsed() > limit,
            _ => false,
        };
        let outcome = Outcome { failure, slow };
        let clock = shared.clock();
        match call.admission {
            Admission::Closed(word) => {
                shared
                    .core
                    .record_closed(word, call.stripe.index, outcome, &clock);
            }
            Admission::Probe(word) => shared.core.record_probe(word, outcome, &clock),
            Admission::Passthrough => {}
        }
        spare::give(&SPARE, call.stripe);
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(Call {
            stripe,
            admission: Admission::Probe(word),
            ..
        }) = &self.call
        {
            stripe.shared.core.release_probe(*word);
        }
    }
}

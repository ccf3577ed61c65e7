//! The state machine. No I/O and no tokio: time comes in through [`Clock`]
//! as nanoseconds since the breaker was created, so it unit-tests with a fake
//! clock.
//!
//! The state lives in one atomic word (`generation << 8 | state`): a call in
//! Closed reads it once when admitted and once when recording, and records
//! only if the word did not change meanwhile, so an outcome never lands in a
//! window of a later generation. Transitions take a short `std::sync::Mutex`
//! (never held across an `.await`); half-open probes go through it too.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::config::CircuitBreakerConfig;
use super::events::{CircuitEvent, WeakEmitter};
use super::window::{Outcome, Padded, Window};
use crate::metrics::emit::BreakerHandles;

/// Nanoseconds since the breaker was created.
pub(crate) trait Clock {
    fn now(&self) -> u64;
}

/// What a half-open breaker answers to a call when every probe is taken.
pub(crate) const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

const STATE_MASK: u64 = 0xFF;
const GENERATION: u64 = 1 << 8;
const NANOS_PER_SEC: u64 = 1_000_000_000;
const PPM: u64 = 1_000_000;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls flow; outcomes are recorded in the sliding window.
    Closed,
    /// Calls are rejected until the wait ends; the next call after it probes.
    Open,
    /// A bounded number of probe calls decide whether to close or re-open.
    HalfOpen,
    /// Opened by hand ([`force_open`](super::CircuitBreaker::force_open)) until
    /// [`reset`](super::CircuitBreaker::reset).
    ForcedOpen,
    /// Switched off by hand ([`disable`](super::CircuitBreaker::disable)): every
    /// call passes and nothing is recorded, until [`reset`](super::CircuitBreaker::reset).
    Disabled,
}

impl CircuitState {
    pub(crate) fn code(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::ForcedOpen => 3,
            CircuitState::Disabled => 4,
        }
    }

    fn from_word(word: u64) -> Self {
        match word & STATE_MASK {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::ForcedOpen,
            _ => CircuitState::Disabled,
        }
    }

    /// The state's name in logs: `closed`, `open`, `half_open`, `forced_open`, `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of a breaker, from [`metrics`](super::CircuitBreaker::metrics).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitMetrics {
    /// The state.
    pub state: CircuitState,
    /// Calls in the sliding window (Closed), or probes answered (HalfOpen).
    pub calls: u64,
    /// Failed calls among them.
    pub failures: u64,
    /// Slow calls among them.
    pub slow_calls: u64,
    /// `failures / calls`, 0 with no calls.
    pub failure_rate: f64,
    /// `slow_calls / calls`, 0 with no calls.
    pub slow_call_rate: f64,
    /// Calls rejected since the breaker was created.
    pub rejected: u64,
    /// Openings in a row without closing in between (drives the wait growth).
    pub consecutive_openings: u32,
    /// Time left before an open breaker lets a probe through (`None` unless Open).
    pub time_left_open: Option<Duration>,
}

/// Why `admit` let a call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed: record the outcome in the window if `word` is still current.
    Closed(u64),
    /// Half-open probe holding one permit of generation `word`.
    Probe(u64),
    /// Disabled: nothing to record.
    Passthrough,
}

/// Why `admit` refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) state: CircuitState,
    pub(crate) retry_after: Duration,
}

#[derive(Debug)]
struct Hot {
    state: AtomicU64,
    open_until: AtomicU64,
    /// Evaluate after every success: the window is short of `minimum_calls`
    /// but holds failures, so a success can be the call that trips it.
    eager: AtomicBool,
}

#[derive(Debug, Default)]
struct Machine {
    consecutive_openings: u32,
    permits_left: u32,
    probes_done: u32,
    probe_failures: u32,
    probe_slow: u32,
}

/// The shared state machine of one breaker.
#[derive(Debug)]
pub(crate) struct Core {
    hot: Padded<Hot>,
    window: Window,
    rejected: Padded<AtomicU64>,
    machine: Mutex<Machine>,
    config: CircuitBreakerConfig,
    failure_ppm: u64,
    slow_ppm: u64,
    emitter: WeakEmitter,
    metrics: BreakerHandles,
}

fn ppm(rate: f64) -> u64 {
    (rate * PPM as f64).round() as u64
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Core {
    pub(crate) fn new(config: CircuitBreakerConfig, stripes: usize, emitter: WeakEmitter) -> Self {
        Core {
            hot: Padded(Hot {
                state: AtomicU64::new(CircuitState::Closed.code()),
                open_until: AtomicU64::new(0),
                eager: AtomicBool::new(false),
            }),
            window: Window::new(config.window, stripes),
            rejected: Padded(AtomicU64::new(0)),
            machine: Mutex::new(Machine::default()),
            failure_ppm: ppm(config.failure_rate_threshold),
            slow_ppm: ppm(config.slow_call_rate_threshold),
            metrics: BreakerHandles::new(&config.name),
            config,
            emitter,
        }
    }

    pub(crate) fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    pub(crate) fn stripe_count(&self) -> usize {
        self.window.stripe_count()
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // The machine's fields stay consistent at every await-free step, so a
        // panic elsewhere while holding the lock leaves nothing half-done.
        self.machine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> CircuitState {
        CircuitState::from_word(self.hot.state.load(Ordering::Acquire))
    }

    /// Lets a call through or says why not. Closed and Disabled read one
    /// atomic and no clock.
    #[inline]
    pub(crate) fn admit(&self, clock: &impl Clock) -> Result<Admission, Rejection> {
        let word = self.hot.state.load(Ordering::Acquire);
        match CircuitState::from_word(word) {
            CircuitState::Closed => Ok(Admission::Closed(word)),
            CircuitState::Disabled => Ok(Admission::Passthrough),
            _ => self.admit_slow(clock),
        }
    }

    #[cold]
    fn admit_slow(&self, clock: &impl Clock) -> Result<Admission, Rejection> {
        let now = clock.now();
        let word = self.hot.state.load(Ordering::Acquire);
        let state = CircuitState::from_word(word);
        if state == CircuitState::Open {
            let until = self.hot.open_until.load(Ordering::Acquire);
            if now < until {
                return Err(self.reject(state, Duration::from_nanos(until - now)));
            }
        }
        if state == CircuitState::ForcedOpen {
            return Err(self.reject(state, self.config.wait_duration));
        }
        let mut m = self.lock();
        let mut word = self.hot.state.load(Ordering::Acquire);
        match CircuitState::from_word(word) {
            CircuitState::Closed => return Ok(Admission::Closed(word)),
            CircuitState::Disabled => return Ok(Admission::Passthrough),
            CircuitState::ForcedOpen => {
                drop(m);
                return Err(self.reject(CircuitState::ForcedOpen, self.config.wait_duration));
            }
            CircuitState::Open => {
                let until = self.hot.open_until.load(Ordering::Acquire);
                if now < until {
                    drop(m);
                    return Err(self.reject(CircuitState::Open, Duration::from_nanos(until - now)));
                }
                word = self.transition(&mut m, word, CircuitState::HalfOpen, now);
            }
            CircuitState::HalfOpen => {}
        }
        if m.permits_left > 0 {
            m.permits_left -= 1;
            Ok(Admission::Probe(word))
        } else {
            drop(m);
            Err(self.reject(CircuitState::HalfOpen, HALF_OPEN_RETRY_AFTER))
        }
    }

    fn reject(&self, state: CircuitState, retry_after: Duration) -> Rejection {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejected();
        if self.emitter.has_subscribers() {
            self.emitter.emit(CircuitEvent::Rejected {
                name: self.config.name.clone(),
                state,
                retry_after,
            });
        }
        Rejection { state, retry_after }
    }

    /// Records the outcome of a call admitted in Closed with `word`, from
    /// stripe `stripe`.
    #[inline]
    pub(crate) fn record_closed(
        &self,
        word: u64,
        stripe: usize,
        outcome: Outcome,
        clock: &impl Clock,
    ) {
        if self.hot.state.load(Ordering::Relaxed) != word {
            return; // the breaker moved on: this outcome belongs to no window
        }
        let now = if self.window.needs_clock() {
            Some(clock.now())
        } else {
            None
        };
        let now_sec = now.map_or(0, |n| n / NANOS_PER_SEC);
        let full = self.window.record(stripe, outcome, now_sec);
        if outcome.is_bad() || self.hot.eager.load(Ordering::Relaxed) {
            self.evaluate(word, now, clock);
        } else if full {
            self.window.flush_stripe(stripe, now_sec);
        }
    }

    /// Counts the window and opens the breaker if a threshold is reached.
    #[cold]
    fn evaluate(&self, word: u64, now: Option<u64>, clock: &impl Clock) {
        let now_sec = now.map_or(0, |n| n / NANOS_PER_SEC);
        let c = self.window.evaluate(now_sec);
        let minimum = u64::from(self.config.minimum_calls);
        let trip = c.calls >= minimum && self.over_threshold(c.calls, c.failures, c.slow);
        let eager = !trip && c.calls < minimum && (c.failures > 0 || c.slow > 0);
        self.hot.eager.store(eager, Ordering::Relaxed);
        if trip {
            let mut m = self.lock();
            if self.hot.state.load(Ordering::Acquire) == word {
                let now = now.unwrap_or_else(|| clock.now());
                self.transition(&mut m, word, CircuitState::Open, now);
            }
        }
    }

    fn over_threshold(&self, calls: u64, failures: u64, slow: u64) -> bool {
        calls > 0
            && (failures * PPM >= self.failure_ppm * calls
                || (self.config.slow_call_duration.is_some()
                    && slow * PPM >= self.slow_ppm * calls))
    }

    /// Records a half-open probe's outcome; the last permit's answer decides.
    pub(crate) fn record_probe(&self, word: u64, outcome: Outcome, clock: &impl Clock) {
        let mut m = self.lock();
        if self.hot.state.load(Ordering::Acquire) != word {
            return;
        }
        m.probes_done += 1;
        m.probe_failures += u32::from(outcome.failure);
        m.probe_slow += u32::from(outcome.slow);
        if m.probes_done >= self.config.half_open_permits {
            let reopen = self.over_threshold(
                u64::from(m.probes_done),
                u64::from(m.probe_failures),
                u64::from(m.probe_slow),
            );
            let to = if reopen {
                CircuitState::Open
            } else {
                CircuitState::Closed
            };
            self.transition(&mut m, word, to, clock.now());
        }
    }

    /// A probe went away unanswered (its future was dropped): its permit
    /// goes back.
    pub(crate) fn release_probe(&self, word: u64) {
        let mut m = self.lock();
        if self.hot.state.load(Ordering::Acquire) == word {
            m.permits_left += 1;
        }
    }

    /// Moves to `to` by hand (force_open, disable, reset).
    pub(crate) fn set_state(&self, to: CircuitState, clock: &impl Clock) {
        let mut m = self.lock();
        let word = self.hot.state.load(Ordering::Acquire);
        if CircuitState::from_word(word) != to {
            self.transition(&mut m, word, to, clock.now());
        } else if to == CircuitState::Closed {
            // reset() of a closed breaker: a fresh window and generation (calls
            // in flight will not record), but no transition to report.
            m.consecutive_openings = 0;
            self.window.reset();
            self.hot.eager.store(false, Ordering::Relaxed);
            let next = (word & !STATE_MASK).wrapping_add(GENERATION) | to.code();
            self.hot.state.store(next, Ordering::Release);
        }
    }

    /// Performs a transition under the lock; returns the new state word.
    fn transition(&self, m: &mut Machine, from_word: u64, to: CircuitState, now: u64) -> u64 {
        let from = CircuitState::from_word(from_word);
        match to {
            CircuitState::Open => {
                m.consecutive_openings = m.consecutive_openings.saturating_add(1);
                let wait = self.config.wait_for_opening(m.consecutive_openings);
                self.hot
                    .open_until
                    .store(now.saturating_add(nanos(wait)), Ordering::Release);
            }
            CircuitState::HalfOpen => {
                m.permits_left = self.config.half_open_permits;
                m.probes_done = 0;
                m.probe_failures = 0;
                m.probe_slow = 0;
            }
            CircuitState::Closed => {
                m.consecutive_openings = 0;
                self.window.reset();
                self.hot.eager.store(false, Ordering::Relaxed);
            }
            CircuitState::ForcedOpen | CircuitState::Disabled => {}
        }
        let word = ((from_word & !STATE_MASK).wrapping_add(GENERATION)) | to.code();
        self.hot.state.store(word, Ordering::Release);
        let name = &self.config.name;
        match to {
            CircuitState::Open | CircuitState::ForcedOpen => tracing::warn!(
                circuit = %name, %from, %to,
                consecutive_openings = m.consecutive_openings,
                "circuit breaker opened"
            ),
            _ => tracing::info!(circuit = %name, %from, %to, "circuit breaker changed state"),
        }
        self.metrics.transition(name, from, to);
        // Emitted under the lock, so subscribers see transitions in order.
        self.emitter.emit(CircuitEvent::Transition {
            name: name.clone(),
            from,
            to,
        });
        word
    }

    pub(crate) fn metrics(&self, clock: &impl Clock) -> CircuitMetrics {
        let now = clock.now();
        let m = self.lock();
        let word = self.hot.state.load(Ordering::Acquire);
        let state = CircuitState::from_word(word);
        let (calls, failures, slow) = if state == CircuitState::HalfOpen {
            (
                u64::from(m.probes_done),
                u64::from(m.probe_failures),
                u64::from(m.probe_slow),
            )
        } else {
            let c = self.window.evaluate(now / NANOS_PER_SEC);
            (c.calls, c.failures, c.slow)
        };
        let rate = |n: u64| {
            if calls == 0 {
                0.0
            } else {
                n as f64 / calls as f64
            }
        };
        let time_left_open = (state == CircuitState::Open).then(|| {
            Duration::from_nanos(
                self.hot
                    .open_until
                    .load(Ordering::Acquire)
                    .saturating_sub(now),
            )
        });
        CircuitMetrics {
            state,
            calls,
            failures,
            slow_calls: slow,
            failure_rate: rate(failures),
            slow_call_rate: rate(slow),
            rejected: self.rejected.load(Ordering::Relaxed),
            consecutive_openings: m.consecutive_openings,
            time_left_open,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::circuit::CircuitBreakerBuilder;
    use crate::circuit::events::Emitter;

    struct Fake(Cell<u64>);
    impl Clock for Fake {
        fn now(&self) -> u64 {
            self.0.get()
        }
    }

    const OK: Outcome = Outcome {
        failure: false,
        slow: false,
    };
    const FAIL: Outcome = Outcome {
        failure: true,
        slow: false,
    };

    fn core(b: CircuitBreakerBuilder) -> Core {
        Core::new(b.config().unwrap(), 2, Emitter::new(8).downgrade())
    }

    fn call(core: &Core, clock: &Fake, outcome: Outcome) -> Result<(), Rejection> {
        match core.admit(clock)? {
            Admission::Closed(w) => core.record_closed(w, 0, outcome, clock),
            Admission::Probe(w) => core.record_probe(w, outcome, clock),
            Admission::Passthrough => {}
        }
        Ok(())
    }

    #[test]
    fn opens_waits_probes_and_closes_on_a_fake_clock() {
        let clock = Fake(Cell::new(0));
        let c = core(
            CircuitBreakerBuilder::new("t")
                .count_window(4)
                .minimum_calls(4)
                .wait_duration(Duration::from_secs(10))
                .half_open_permits(2),
        );
        for o in [OK, FAIL, OK] {
            call(&c, &clock, o).unwrap();
        }
        assert_eq!(c.state(), CircuitState::Closed);
        call(&c, &clock, FAIL).unwrap(); // 2 of 4 failed: 50 %
        assert_eq!(c.state(), CircuitState::Open);
        let rejected = call(&c, &clock, OK).unwrap_err();
        assert_eq!(rejected.retry_after, Duration::from_secs(10));
        clock.0.set(10 * NANOS_PER_SEC);
        let first = c.admit(&clock).unwrap();
        assert_eq!(c.state(), CircuitState::HalfOpen);
        let second = c.admit(&clock).unwrap();
        assert!(c.admit(&clock).is_err(), "only two permits");
        for a in [first, second] {
            let Admission::Probe(w) = a else {
                panic!("expected a probe")
            };
            c.record_probe(w, OK, &clock);
        }
        assert_eq!(c.state(), CircuitState::Closed);
        assert_eq!(c.metrics(&clock).calls, 0, "closing starts a fresh window");
    }
}

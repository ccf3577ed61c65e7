//! The builder and its validated configuration.

use std::sync::Arc;
use std::time::Duration;

use super::{CircuitBreaker, ConfigError};

/// The largest count window (calls) and time window (seconds).
pub const MAX_WINDOW: u32 = 1 << 20;

/// Which recent calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `n` seconds, kept in one-second buckets.
    Time(u32),
}

/// A validated circuit breaker configuration; see [`CircuitBreakerBuilder`]
/// for the meaning and default of each setting.
#[derive(Debug, Clone)]
pub struct CircuitBreakerConfig {
    pub(crate) name: Arc<str>,
    pub(crate) window: SlidingWindow,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) minimum_calls: u32,
    pub(crate) wait_duration: Duration,
    pub(crate) wait_growth: f64,
    pub(crate) max_wait_duration: Duration,
    pub(crate) half_open_permits: u32,
    pub(crate) event_capacity: usize,
}

impl CircuitBreakerConfig {
    /// The breaker's name (errors, events, logs).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    /// The sliding window.
    pub fn window(&self) -> SlidingWindow {
        self.window
    }
    /// Failure rate in (0, 1] at which the breaker opens.
    pub fn failure_rate_threshold(&self) -> f64 {
        self.failure_rate_threshold
    }
    /// Slow-call rate in (0, 1] at which the breaker opens.
    pub fn slow_call_rate_threshold(&self) -> f64 {
        self.slow_call_rate_threshold
    }
    /// Calls slower than this count as slow; `None` when slow calls are not tracked.
    pub fn slow_call_duration(&self) -> Option<Duration> {
        self.slow_call_duration
    }
    /// Calls the window must hold before the rates are acted on.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }
    /// How long the breaker stays open the first time.
    pub fn wait_duration(&self) -> Duration {
        self.wait_duration
    }
    /// Factor the wait grows by per consecutive opening (1.0 = constant).
    pub fn wait_growth(&self) -> f64 {
        self.wait_growth
    }
    /// The longest wait, however many consecutive openings.
    pub fn max_wait_duration(&self) -> Duration {
        self.max_wait_duration
    }
    /// Probes admitted in half-open.
    pub fn half_open_permits(&self) -> u32 {
        self.half_open_permits
    }

    /// How long the breaker stays open on its `n`-th consecutive opening (n >= 1):
    /// `wait_duration * growth^(n-1)`, capped at `max_wait_duration`.
    pub fn wait_for_opening(&self, n: u32) -> Duration {
        let exp = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.wait_duration.as_secs_f64() * self.wait_growth.powi(exp);
        let max = self.max_wait_duration;
        if !secs.is_finite() || secs >= max.as_secs_f64() {
            max
        } else {
            Duration::from_secs_f64(secs).min(max)
        }
    }
}

/// Builds a [`CircuitBreaker`]; every setting has a default, [`build`](Self::build)
/// checks them together.
///
/// ```
/// use std::time::Duration;
/// use forten_core::circuit::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder("events-service")
///     .count_window(50)
///     .minimum_calls(10)
///     .failure_rate_threshold(0.5)
///     .slow_call_duration(Duration::from_secs(2))
///     .wait_duration(Duration::from_secs(5))
///     .wait_growth(2.0, Duration::from_secs(60))
///     .half_open_permits(3)
///     .build()
///     .unwrap();
/// assert_eq!(breaker.name(), "events-service");
///
/// let err = CircuitBreaker::builder("x").failure_rate_threshold(50.0).build().unwrap_err();
/// assert!(err.to_string().contains("use a fraction in (0, 1]"));
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerBuilder {
    config: CircuitBreakerConfig,
    max_wait: Option<Duration>,
}

impl CircuitBreakerBuilder {
    /// A builder with the defaults: a count window of 100 calls, at least 20
    /// calls before acting, opening at 50 % failures, slow calls not tracked
    /// (slow-call rate threshold 100 % once a duration is set), open for 30 s
    /// with no growth, 3 half-open probes, 64 buffered events.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        CircuitBreakerBuilder {
            config: CircuitBreakerConfig {
                name: name.into(),
                window: SlidingWindow::Count(100),
                failure_rate_threshold: 0.5,
                slow_call_rate_threshold: 1.0,
                slow_call_duration: None,
                minimum_calls: 20,
                wait_duration: Duration::from_secs(30),
                wait_growth: 1.0,
                max_wait_duration: Duration::from_secs(30),
                half_open_permits: 3,
                event_capacity: 64,
            },
            max_wait: None,
        }
    }

    /// The rates cover the last `calls` calls.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.config.window = SlidingWindow::Count(calls);
        self
    }

    /// The rates cover the calls of the last `seconds` seconds (one-second buckets).
    /// Costs one clock read per call.
    pub fn time_window(mut self, seconds: u32) -> Self {
        self.config.window = SlidingWindow::Time(seconds);
        self
    }

    /// Opens when the failure rate reaches `rate`, a fraction in (0, 1].
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.config.failure_rate_threshold = rate;
        self
    }

    /// Opens when the slow-call rate reaches `rate`, a fraction in (0, 1].
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.config.slow_call_rate_threshold = rate;
        self
    }

    /// Tracks slow calls: a call taking longer than `duration` counts as slow,
    /// whatever its outcome. Costs two clock reads per call.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = Some(duration);
        self
    }

    /// The window must hold at least `calls` calls before the rates are acted on.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// How long the breaker stays open before probing (zero probes at once).
    pub fn wait_duration(mut self, wait: Duration) -> Self {
        self.config.wait_duration = wait;
        self
    }

    /// Each consecutive opening (half-open probes failed again) waits `factor`
    /// times longer than the last, up to `max`. Closing resets the growth.
    pub fn wait_growth(mut self, factor: f64, max: Duration) -> Self {
        self.config.wait_growth = factor;
        self.max_wait = Some(max);
        self
    }

    /// How many probes half-open admits; once all have answered, their rates
    /// against the thresholds close or re-open the breaker.
    pub fn half_open_permits(mut self, permits: u32) -> Self {
        self.config.half_open_permits = permits;
        self
    }

    /// Events buffered per subscriber before a slow one starts missing some.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.config.event_capacity = capacity;
        self
    }

    /// Checks the settings together.
    pub fn config(self) -> Result<CircuitBreakerConfig, ConfigError> {
        let mut c = self.config;
        c.max_wait_duration = self.max_wait.unwrap_or(c.wait_duration);
        if c.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        let (kind, size) = match c.window {
            SlidingWindow::Count(n) => ("count", n),
            SlidingWindow::Time(n) => ("time", n),
        };
        if size == 0 {
            return Err(ConfigError::EmptyWindow);
        }
        if size > MAX_WINDOW {
            return Err(ConfigError::WindowTooLarge {
                kind,
                size,
                max: MAX_WINDOW,
            });
        }
        for (which, value) in [
            ("failure_rate_threshold", c.failure_rate_threshold),
            ("slow_call_rate_threshold", c.slow_call_rate_threshold),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(ConfigError::ThresholdOutOfRange { which, value });
            }
        }
        if c.minimum_calls == 0 {
            return Err(ConfigError::MinimumCallsZero);
        }
        if let SlidingWindow::Count(window) = c.window {
            if c.minimum_calls > window {
                return Err(ConfigError::MinimumCallsAboveWindow {
                    minimum: c.minimum_calls,
                    window,
                });
            }
        }
        if c.half_open_permits == 0 {
            return Err(ConfigError::HalfOpenPermitsZero);
        }
        if !(c.wait_growth.is_finite() && c.wait_growth >= 1.0) {
            return Err(ConfigError::InvalidWaitGrowth {
                value: c.wait_growth,
            });
        }
        if c.max_wait_duration < c.wait_duration {
            return Err(ConfigError::MaxWaitBelowWait {
                wait: c.wait_duration,
                max: c.max_wait_duration,
            });
        }
        if c.slow_call_duration == Some(Duration::ZERO) {
            return Err(ConfigError::SlowCallDurationZero);
        }
        if c.event_capacity == 0 {
            return Err(ConfigError::EventCapacityZero);
        }
        Ok(c)
    }

    /// Checks the settings and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        Ok(CircuitBreaker::from_config(self.config()?))
    }
}

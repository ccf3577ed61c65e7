//! What the circuit breaker produces: the rejection error and config errors.

use std::sync::Arc;
use std::time::Duration;

use crate::BoxError;

/// The error a rejected call returns: [`Error::CircuitOpen`](crate::Error::CircuitOpen),
/// boxed as the stack's [`BoxError`]. Kept in one place so the mapping is one line.
pub(crate) fn rejection(name: &Arc<str>, retry_after: Duration) -> BoxError {
    Box::new(crate::Error::CircuitOpen {
        name: Arc::clone(name),
        retry_after,
    })
}

/// A circuit breaker configuration that cannot work, and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The breaker needs a name: it appears in errors, events and logs.
    #[error("the circuit breaker name is empty; name it after the upstream it guards")]
    EmptyName,
    /// A window of zero calls or zero seconds never holds anything.
    #[error("the sliding window is empty; use at least 1 call or 1 second")]
    EmptyWindow,
    /// The window is larger than the breaker supports.
    #[error("a {kind} window of {size} is too large; use at most {max}")]
    WindowTooLarge {
        /// "count" or "time".
        kind: &'static str,
        /// The requested size.
        size: u32,
        /// The largest supported size.
        max: u32,
    },
    /// A rate threshold outside (0, 1].
    #[error("{which} is {value}; use a fraction in (0, 1], e.g. 0.5 for 50 %")]
    ThresholdOutOfRange {
        /// Which threshold.
        which: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `minimum_calls` of zero would open the breaker on nothing.
    #[error("minimum_calls is 0; use at least 1")]
    MinimumCallsZero,
    /// `minimum_calls` larger than a count window can ever hold.
    #[error(
        "minimum_calls ({minimum}) exceeds the count window ({window}); the breaker could never open: lower it or widen the window"
    )]
    MinimumCallsAboveWindow {
        /// The requested minimum.
        minimum: u32,
        /// The window size.
        window: u32,
    },
    /// Half-open needs at least one probe to ever close again.
    #[error("half_open_permits is 0; use at least 1 so the breaker can close again")]
    HalfOpenPermitsZero,
    /// The wait growth factor must not shrink the wait.
    #[error("wait growth factor is {value}; use a finite factor >= 1.0 (1.0 = constant wait)")]
    InvalidWaitGrowth {
        /// The rejected factor.
        value: f64,
    },
    /// The wait cap is below the base wait.
    #[error(
        "max_wait_duration ({max:?}) is below wait_duration ({wait:?}); raise the cap or lower the wait"
    )]
    MaxWaitBelowWait {
        /// The base wait.
        wait: Duration,
        /// The cap.
        max: Duration,
    },
    /// A slow-call duration of zero would make every call slow.
    #[error("slow_call_duration is zero; every call would be slow: use a positive duration")]
    SlowCallDurationZero,
    /// The event buffer must hold at least one event.
    #[error("event_capacity is 0; use at least 1")]
    EventCapacityZero,
}

//! The one error type of forten-health.

use std::time::Duration;

/// What went wrong while configuring or starting a [`HealthMonitor`](crate::HealthMonitor).
///
/// Every variant says what to change. Checks themselves never produce this error:
/// a failing dependency is a [`CheckResult`](crate::CheckResult) with status `fail`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A check name is not of the form `component:measurement` (or a bare `component`).
    #[error(
        "check name {name:?} is invalid: {reason}; use `component:measurement`, e.g. \"postgres:connections\""
    )]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Two checks share a name; the `checks` object of the response is keyed by name.
    #[error("two checks are named {name:?}; give each check a unique `component:measurement` name")]
    DuplicateName {
        /// The name used twice.
        name: String,
    },
    /// A check's timeout is zero.
    #[error("check {name:?} has a zero timeout; give it a timeout above zero (e.g. 2s)")]
    ZeroTimeout {
        /// The check.
        name: String,
    },
    /// A failure or success threshold is zero.
    #[error(
        "check {name:?} has a {which} threshold of 0; thresholds count consecutive results and start at 1"
    )]
    ZeroThreshold {
        /// The check.
        name: String,
        /// `"failure"` or `"success"`.
        which: &'static str,
    },
    /// The interval between check rounds is zero.
    #[error("the check interval is zero; use an interval above zero (e.g. 10s)")]
    ZeroInterval,
    /// Results would go stale between two rounds of checks.
    #[error(
        "stale_after ({stale_after:?}) must exceed the interval plus check {name:?}'s timeout ({needed:?}), \
         or every result would go stale before the next round; raise stale_after or lower the interval/timeout"
    )]
    StaleTooSoon {
        /// The configured staleness limit.
        stale_after: Duration,
        /// The check whose timeout makes it too short.
        name: String,
        /// interval + that check's timeout.
        needed: Duration,
    },
    /// A TCP or Redis address is not `host:port`.
    #[error("check {name:?}: address {address:?} is not `host:port` ({reason})")]
    InvalidAddress {
        /// The check.
        name: String,
        /// The rejected address.
        address: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An HTTP check's URL is unusable.
    #[error("check {name:?}: URL {url:?} is invalid: {reason}")]
    InvalidUrl {
        /// The check.
        name: String,
        /// The rejected URL.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// [`HealthMonitor::start`](crate::HealthMonitor::start) was called twice.
    #[error("the health monitor's background task is already running; call start() once")]
    AlreadyStarted,
    /// [`HealthMonitor::start`](crate::HealthMonitor::start) was called outside a tokio runtime.
    #[error("no tokio runtime: call start() from inside a tokio runtime")]
    NoRuntime,
}

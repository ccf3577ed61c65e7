//! Deadlines that propagate across services (DESIGN 4.2).
//!
//! - [`DeadlineLayer`] (server): reads the caller's budget from
//!   `x-request-timeout-ms` or `grpc-timeout`, caps it with the service's own
//!   maximum, makes it the request's [`Deadline`] and fails the request with a
//!   timeout when it passes.
//! - [`TimeoutLayer`] (client): gives each outbound call min(its own timeout,
//!   what remains of the current deadline), sends that budget as
//!   `x-request-timeout-ms`, and never sends a request whose deadline passed.
//!
//! ```
//! use std::time::Duration;
//! use forten_core::deadline::Deadline;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let left = Deadline::after(Duration::from_secs(2))
//!     .scope(async { Deadline::current().map(|d| d.remaining()) })
//!     .await;
//! assert!(left.is_some_and(|d| d <= Duration::from_secs(2)));
//! # });
//! ```

mod future;
mod layer;
mod parse;
mod timeout;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

pub use future::{TimedFuture, armed_within, report_armed};
pub use layer::{DeadlineLayer, DeadlineService};
pub use parse::{
    InvalidTimeout, encode_grpc_timeout, parse_grpc_timeout, parse_request_timeout_ms,
};
pub use timeout::{TimeoutLayer, TimeoutService};

tokio::task_local! {
    static CURRENT: Deadline;
}

/// The instant by which a request must be answered.
///
/// Found in the request's extensions and, inside a handler behind
/// [`DeadlineLayer`], as [`Deadline::current`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

/// Far enough to mean "no deadline" without overflowing `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Deadline {
    /// A deadline `budget` from now (saturating far in the future).
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(budget)
            .or_else(|| now.checked_add(FAR_FUTURE))
            .unwrap_or(now);
        Deadline { at }
    }

    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Deadline { at }
    }

    /// The deadline of the current task, if it runs inside one.
    pub fn current() -> Option<Deadline> {
        CURRENT.try_with(|d| *d).ok()
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.at
    }

    /// Time left before the deadline; zero once it passed.
    pub fn remaining(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        if other.at < self.at { other } else { self }
    }

    /// Runs `fut` with this deadline as [`current`](Self::current).
    pub fn scope<F: Future>(self, fut: F) -> tokio::task::futures::TaskLocalFuture<Deadline, F> {
        CURRENT.scope(self, fut)
    }

    /// Runs `f` synchronously with this deadline as current.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

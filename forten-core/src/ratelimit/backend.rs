//! The [`RateLimitBackend`] trait and its [`Decision`].

use std::future::Future;
use std::time::Duration;

use super::config::{LimitKey, RateLimitPolicy};
use crate::BoxError;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (it has been counted if so).
    pub allowed: bool,
    /// Requests left in the current burst after this one.
    pub remaining: u32,
    /// Until the budget is full again.
    pub reset_after: Duration,
    /// When a refused request may be retried.
    pub retry_after: Option<Duration>,
}

/// Where the limiter's state lives: in-process or shared.
pub trait RateLimitBackend: Send + Sync + 'static {
    /// The future of one check.
    type Future: Future<Output = Result<Decision, BoxError>> + Send;

    /// Counts one request against `key`'s budget.
    fn check(&self, key: &LimitKey) -> Self::Future;

    /// Counts one request against `key`'s budget when the decision needs no
    /// waiting (an in-process limiter): the layer then calls its inner
    /// service at once, instead of keeping a clone of it and the request in
    /// its future until [`check`](Self::check) answers.
    ///
    /// `None` (the default) means "ask [`check`](Self::check)"; a backend
    /// that answers `Some` has counted the request, and the layer does not
    /// call `check` for it as well.
    fn check_now(&self, key: &LimitKey) -> Option<Result<Decision, BoxError>> {
        let _ = key;
        None
    }

    /// The policy enforced.
    fn policy(&self) -> &RateLimitPolicy;
}

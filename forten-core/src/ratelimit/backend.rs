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

    /// The policy enforced.
    fn policy(&self) -> &RateLimitPolicy;
}

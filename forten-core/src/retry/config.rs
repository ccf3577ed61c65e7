//! [`RetryConfig`]: backoff, budget and attempt bound of a retry layer.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;

use super::RetryBudget;

/// Most retries a config accepts: beyond this a retry loop amplifies load
/// rather than riding out a blip.
pub const MAX_RETRIES_LIMIT: u32 = 100;

/// A retry configuration the builder refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// The backoff allows more retries than [`MAX_RETRIES_LIMIT`].
    #[error(
        "the backoff allows {0} retries; at most {MAX_RETRIES_LIMIT} are accepted, 2 to 5 is typical"
    )]
    TooManyRetries(u32),
}

/// How a [`Retry`](super::Retry) retries: the backoff schedule (which also
/// bounds the attempts: `1 + max_retries`), the shared [`RetryBudget`] (none
/// means unbounded), and an optional seed for reproducible jitter.
///
/// Default: [`ExponentialBackoff`](crate::backoff::ExponentialBackoff)'s
/// defaults (50 ms doubling to 5 s, full jitter, 3 retries) and a fresh
/// default budget (20 % + 10/s over 10 s).
#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub(super) backoff: Backoff,
    pub(super) budget: Option<RetryBudget>,
    pub(super) seed: Option<u64>,
    pub(super) max_retry_after: Option<Duration>,
    /// The `service` label of its metrics; `None` is `default` (and keeps a
    /// first-attempt success off any reference count).
    pub(super) name: Option<Arc<str>>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            backoff: Backoff::default(),
            budget: Some(RetryBudget::new()),
            seed: None,
            max_retry_after: None,
            name: None,
        }
    }
}

impl RetryConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder {
            config: RetryConfig::default(),
        }
    }

    /// The backoff schedule.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The retry budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The longest delay a `Retry-After` (or [`Action::RetryAfter`](super::Action::RetryAfter))
    /// may set: [`RetryConfigBuilder::max_retry_after`], else the backoff's maximum delay.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
            .unwrap_or_else(|| self.backoff.max_delay())
    }

    /// The name its metrics carry as `service` (`default` when unset).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The same config named `name` in its metrics (for a config built
    /// elsewhere; see [`RetryConfigBuilder::name`]).
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Most attempts per request, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.backoff.max_retries() + 1
    }
}

/// Builds a validated [`RetryConfig`].
#[derive(Debug, Clone)]
pub struct RetryConfigBuilder {
    config: RetryConfig,
}

impl RetryConfigBuilder {
    /// The backoff schedule; its `max_retries` bounds the attempts.
    pub fn backoff(mut self, backoff: impl Into<Backoff>) -> Self {
        self.config.backoff = backoff.into();
        self
    }

    /// The budget retries draw from. Pass a clone of one budget to several
    /// layers to bound them together.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// No budget: every retryable failure is retried up to the attempt bound.
    /// Under an outage this multiplies load by the attempt count.
    pub fn no_budget(mut self) -> Self {
        self.config.budget = None;
        self
    }

    /// Seeds the jitter of every request with `seed` (for tests: every request
    /// then waits the same sequence of delays).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Caps the delay a peer may ask for with `Retry-After` (default: the
    /// backoff's maximum delay). A longer request is honoured up to this cap;
    /// the deadline still applies.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.config.max_retry_after = Some(cap);
        self
    }

    /// Names the layer in its metrics (`forten_retry_attempts_total{service}`):
    /// usually the upstream service. Unnamed layers are labelled `default`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<RetryConfig, RetryConfigError> {
        let retries = self.config.backoff.max_retries();
        if retries > MAX_RETRIES_LIMIT {
            return Err(RetryConfigError::TooManyRetries(retries));
        }
        Ok(self.config)
    }
}

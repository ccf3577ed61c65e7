//! Backoff schedules: exponential with jitter, and constant (DESIGN 4.5).
//!
//! A schedule is a small `Copy` value; [`Backoff::delays`] turns it into an
//! iterator of the delays to wait before each retry. The iterator yields at
//! most `max_retries` items, each within `[0, max_delay]` (the cap is applied
//! after jitter). Seed it with [`Backoff::delays_seeded`] for reproducible
//! sequences in tests.
//!
//! | jitter | delay for un-jittered `d` |
//! |---|---|
//! | [`Jitter::None`] | `d` |
//! | [`Jitter::Full`] | `U(0, d)` |
//! | [`Jitter::Equal`] | `d/2 + U(0, d/2)` |
//! | [`Jitter::Decorrelated`] | `min(cap, U(base, prev * 3))` |
//!
//! ```
//! use std::time::Duration;
//! use forten_core::backoff::{Backoff, ExponentialBackoff, Jitter};
//!
//! let backoff = ExponentialBackoff::builder()
//!     .base(Duration::from_millis(100))
//!     .factor(2.0)
//!     .max_delay(Duration::from_millis(500))
//!     .max_retries(5)
//!     .jitter(Jitter::None)
//!     .build()
//!     .unwrap();
//! let delays: Vec<u64> = Backoff::from(backoff)
//!     .delays()
//!     .map(|d| d.as_millis() as u64)
//!     .collect();
//! assert_eq!(delays, [100, 200, 400, 500, 500]);
//! ```

mod delays;

use std::time::Duration;

pub use delays::Delays;

/// How randomness is mixed into each delay (AWS's "Exponential Backoff And
/// Jitter" variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: exactly `base * factor^n`, capped.
    None,
    /// Uniform in `[0, d]`: the best spread, the default.
    #[default]
    Full,
    /// `d/2` plus uniform in `[0, d/2]`: never shorter than half the delay.
    Equal,
    /// `min(cap, U(base, previous * 3))`: each delay depends on the previous
    /// one rather than on the attempt number; always within `[base, cap]`.
    Decorrelated,
}

/// Largest delay a schedule accepts (it must fit in `u64` nanoseconds with room to spare).
const MAX_DELAY_LIMIT: Duration = Duration::from_secs(86_400 * 365);

/// A configuration a backoff builder refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffError {
    /// The base delay is zero.
    #[error("the base delay must be greater than zero; use Constant for a fixed delay")]
    ZeroBase,
    /// The growth factor is below 1, NaN or infinite.
    #[error("the growth factor must be a finite number >= 1.0, got {0}")]
    InvalidFactor(f64),
    /// The cap is below the base delay.
    #[error("max_delay ({max_delay:?}) must be at least the base delay ({base:?})")]
    CapBelowBase {
        /// The base delay.
        base: Duration,
        /// The cap.
        max_delay: Duration,
    },
    /// A delay above one year.
    #[error("delays above one year are not supported, got {0:?}; lower the delay")]
    TooLong(Duration),
}

/// Exponential backoff: `base * factor^n` for retry `n` (from 0), jittered,
/// then capped at `max_delay`; at most `max_retries` delays.
///
/// Defaults: base 50 ms, factor 2, cap 5 s, 3 retries, [`Jitter::Full`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    base: Duration,
    factor: f64,
    max_delay: Duration,
    max_retries: u32,
    jitter: Jitter,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        ExponentialBackoff {
            base: Duration::from_millis(50),
            factor: 2.0,
            max_delay: Duration::from_secs(5),
            max_retries: 3,
            jitter: Jitter::Full,
        }
    }
}

impl ExponentialBackoff {
    /// A builder starting from the defaults.
    pub fn builder() -> ExponentialBackoffBuilder {
        ExponentialBackoffBuilder {
            inner: ExponentialBackoff::default(),
        }
    }

    /// The first un-jittered delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth per retry.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The cap applied after jitter.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// How many delays (retries) the schedule allows.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The jitter variant.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }
}

/// Builds a validated [`ExponentialBackoff`].
#[derive(Debug, Clone)]
pub struct ExponentialBackoffBuilder {
    inner: ExponentialBackoff,
}

impl ExponentialBackoffBuilder {
    /// The first delay (default 50 ms); must be above zero.
    pub fn base(mut self, base: Duration) -> Self {
        self.inner.base = base;
        self
    }

    /// Growth per retry (default 2.0); must be finite and >= 1.
    pub fn factor(mut self, factor: f64) -> Self {
        self.inner.factor = factor;
        self
    }

    /// The cap applied after jitter (default 5 s); must be >= base.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.inner.max_delay = max_delay;
        self
    }

    /// How many retries (delays) at most (default 3). Zero disables retries.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.inner.max_retries = max_retries;
        self
    }

    /// The jitter variant (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.inner.jitter = jitter;
        self
    }

    /// Validates and returns the schedule.
    pub fn build(self) -> Result<ExponentialBackoff, BackoffError> {
        let b = self.inner;
        if b.base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if !b.factor.is_finite() || b.factor < 1.0 {
            return Err(BackoffError::InvalidFactor(b.factor));
        }
        if b.max_delay < b.base {
            return Err(BackoffError::CapBelowBase {
                base: b.base,
                max_delay: b.max_delay,
            });
        }
        if b.max_delay > MAX_DELAY_LIMIT {
            return Err(BackoffError::TooLong(b.max_delay));
        }
        Ok(b)
    }
}

/// The same delay before every retry, no jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constant {
    delay: Duration,
    max_retries: u32,
}

impl Constant {
    /// `max_retries` retries, each after `delay` (at most one year).
    pub fn new(delay: Duration, max_retries: u32) -> Result<Self, BackoffError> {
        if delay > MAX_DELAY_LIMIT {
            return Err(BackoffError::TooLong(delay));
        }
        Ok(Constant { delay, max_retries })
    }

    /// The delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// How many delays (retries) the schedule allows.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
}

/// Any backoff schedule forten's retry understands.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// See [`ExponentialBackoff`].
    Exponential(ExponentialBackoff),
    /// See [`Constant`].
    Constant(Constant),
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential(ExponentialBackoff::default())
    }
}

impl From<ExponentialBackoff> for Backoff {
    fn from(b: ExponentialBackoff) -> Self {
        Backoff::Exponential(b)
    }
}

impl From<Constant> for Backoff {
    fn from(b: Constant) -> Self {
        Backoff::Constant(b)
    }
}

impl Backoff {
    /// How many retries the schedule allows.
    pub fn max_retries(&self) -> u32 {
        match self {
            Backoff::Exponential(b) => b.max_retries,
            Backoff::Constant(c) => c.max_retries,
        }
    }

    /// The longest delay the schedule produces (its cap).
    pub fn max_delay(&self) -> Duration {
        match self {
            Backoff::Exponential(b) => b.max_delay,
            Backoff::Constant(c) => c.delay,
        }
    }

    /// The delays, randomised from a fresh generator seeded from the
    /// thread's generator.
    pub fn delays(&self) -> Delays {
        Delays::new(
            *self,
            rand::SeedableRng::seed_from_u64(crate::random::u64()),
        )
    }

    /// The delays from a generator seeded with `seed`: the same seed gives the
    /// same sequence (on one platform and rand version).
    pub fn delays_seeded(&self, seed: u64) -> Delays {
        Delays::new(*self, rand::SeedableRng::seed_from_u64(seed))
    }
}

#[cfg(test)]
mod tests;

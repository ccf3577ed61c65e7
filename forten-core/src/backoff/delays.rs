//! The iterator of delays.

use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;

use super::{Backoff, Jitter};

/// The delays of a [`Backoff`] schedule, one per retry.
#[derive(Debug, Clone)]
pub struct Delays {
    schedule: Backoff,
    remaining: u32,
    /// Un-jittered delay of the next retry, in nanoseconds.
    current: f64,
    /// Previous delay (Decorrelated jitter), in nanoseconds.
    previous: u64,
    rng: SmallRng,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Delays {
    pub(super) fn new(schedule: Backoff, rng: SmallRng) -> Self {
        let (current, previous) = match schedule {
            Backoff::Exponential(b) => (nanos(b.base) as f64, nanos(b.base)),
            Backoff::Constant(c) => (nanos(c.delay) as f64, nanos(c.delay)),
        };
        Delays {
            schedule,
            remaining: schedule.max_retries(),
            current,
            previous,
            rng,
        }
    }

    /// How many delays are left.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let b = match self.schedule {
            Backoff::Constant(c) => return Some(c.delay),
            Backoff::Exponential(b) => b,
        };
        let cap = nanos(b.max_delay);
        // float -> int casts saturate; `current` never exceeds `cap`
        let d = (self.current as u64).min(cap);
        self.current = (self.current * b.factor).min(cap as f64);
        let jittered = match b.jitter {
            Jitter::None => d,
            Jitter::Full => self.rng.random_range(0..=d),
            Jitter::Equal => d / 2 + self.rng.random_range(0..=d - d / 2),
            Jitter::Decorrelated => {
                let base = nanos(b.base);
                let hi = self.previous.saturating_mul(3).max(base);
                let next = self.rng.random_range(base..=hi).min(cap);
                self.previous = next;
                next
            }
        };
        Some(Duration::from_nanos(jittered.min(cap)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Delays {}

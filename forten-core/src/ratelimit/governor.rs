//! [`GovernorBackend`]: in-process GCRA limits on the governor crate.

use std::future::{Ready, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use super::backend::{Decision, RateLimitBackend};
use super::config::{LimitKey, RateLimitPolicy};
use crate::BoxError;

/// governor's clock on `tokio::time::Instant`, so limits follow paused time in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

type Limiter =
    RateLimiter<LimitKey, DashMapStateStore<LimitKey>, TokioClock, StateInformationMiddleware>;

/// Keyed GCRA limits kept in this process (governor's keyed limiter on a
/// sharded map), one budget per [`LimitKey`].
///
/// The `t` it reports (time until the budget is full) is counted in whole
/// emission intervals from the remaining burst, so between refills it may
/// exceed the exact figure by less than one interval (a conservative bound:
/// governor does not expose the exact arrival time).
///
/// Keys whose budget is full again carry no information and are dropped:
/// every [`HOUSEKEEPING_EVERY`](Self::HOUSEKEEPING_EVERY) checks the backend
/// runs [`retain_recent`](Self::retain_recent) itself, so keys from unbounded
/// sets such as IPs do not grow the map forever.
#[derive(Debug)]
pub struct GovernorBackend {
    limiter: Limiter,
    policy: RateLimitPolicy,
    checks: AtomicU64,
}

impl GovernorBackend {
    /// A limiter enforcing `policy`.
    pub fn new(policy: RateLimitPolicy) -> Self {
        let quota = Quota::with_period(policy.emission_interval())
            .unwrap_or_else(|| Quota::per_second(nonzero_ext_one()))
            .allow_burst(std::num::NonZeroU32::new(policy.quota()).unwrap_or_else(nonzero_ext_one));
        let limiter: Limiter =
            RateLimiter::new(quota, DashMapStateStore::default(), TokioClock::default());
        GovernorBackend {
            limiter,
            policy,
            checks: AtomicU64::new(0),
        }
    }

    /// How many checks pass between two automatic [`retain_recent`](Self::retain_recent) runs
    /// (a power of two).
    pub const HOUSEKEEPING_EVERY: u64 = 1 << 16;

    /// Forgets keys whose budget is full again.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    fn decide(&self, key: &LimitKey) -> Decision {
        let n = self.checks.fetch_add(1, Ordering::Relaxed) + 1;
        if n & (Self::HOUSEKEEPING_EVERY - 1) == 0 {
            self.limiter.retain_recent();
        }
        let t = self.policy.emission_interval();
        let quota = self.policy.quota();
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    reset_after: t * (quota - remaining.min(quota)),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset_after: wait + t * (quota - 1),
                    retry_after: Some(wait.max(Duration::from_millis(1))),
                }
            }
        }
    }
}

fn nonzero_ext_one() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::MIN
}

impl RateLimitBackend for GovernorBackend {
    type Future = Ready<Result<Decision, BoxError>>;

    fn check(&self, key: &LimitKey) -> Self::Future {
        ready(Ok(self.decide(key)))
    }

    fn check_now(&self, key: &LimitKey) -> Option<Result<Decision, BoxError>> {
        Some(Ok(self.decide(key)))
    }

    fn policy(&self) -> &RateLimitPolicy {
        &self.policy
    }
}

//! [`Subscription`]: which queue, which event types, how failures are retried.

use std::time::Duration;

use crate::error::Error;
use crate::topic;

/// A validated subscription: a named, durable queue bound to event-type
/// patterns, with its retry policy and consumption limits.
///
/// ```
/// use std::time::Duration;
/// use forten_events::Subscription;
///
/// let sub = Subscription::builder("notifications.user-events")
///     .bind("user.*")
///     .max_retries(3)
///     .retry_delays([Duration::from_secs(1), Duration::from_secs(10)])
///     .prefetch(50)
///     .concurrency(8)
///     .build()
///     .unwrap();
/// assert_eq!(sub.retry_delay(1), Duration::from_secs(1));
/// assert_eq!(sub.retry_delay(3), Duration::from_secs(10)); // the last tier repeats
/// assert!(Subscription::builder("q").build().is_err()); // no pattern bound
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub(crate) queue: String,
    pub(crate) patterns: Vec<String>,
    pub(crate) max_retries: u32,
    pub(crate) retry_delays: Vec<Duration>,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    pub(crate) dedup: Option<usize>,
    pub(crate) shutdown_grace: Duration,
}

impl Subscription {
    /// Starts a subscription on the durable queue `queue`
    /// (`<service>.<event-type>` by convention).
    pub fn builder(queue: impl Into<String>) -> SubscriptionBuilder {
        SubscriptionBuilder {
            sub: Subscription {
                queue: queue.into(),
                patterns: Vec::new(),
                max_retries: 3,
                retry_delays: vec![Duration::from_secs(1)],
                prefetch: 100,
                concurrency: 10,
                dedup: None,
                shutdown_grace: Duration::from_secs(10),
            },
        }
    }

    /// The queue name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The dead-letter queue name: `<queue>.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.queue)
    }

    /// The event-type patterns bound to the queue.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Retries after the first attempt before an event is dead-lettered.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The distinct retry delay tiers.
    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    /// The delay before retry number `retry` (1-based); the last tier repeats.
    pub fn retry_delay(&self, retry: u32) -> Duration {
        let i = (retry.max(1) - 1) as usize;
        self.retry_delays
            .get(i)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or_default()
    }

    /// Unacknowledged deliveries the broker sends ahead (basic.qos).
    pub fn prefetch(&self) -> u16 {
        self.prefetch
    }

    /// Handlers run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The dedup window (event ids remembered), if dedup is on.
    pub fn dedup(&self) -> Option<usize> {
        self.dedup
    }

    /// How long a closing subscription waits for in-flight handlers.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }
}

/// Builds a [`Subscription`]; [`build`](Self::build) validates it.
#[derive(Clone, Debug)]
pub struct SubscriptionBuilder {
    sub: Subscription,
}

impl SubscriptionBuilder {
    /// Binds an event-type pattern (`user.registered`, `user.*`, `order.#`).
    pub fn bind(mut self, pattern: impl Into<String>) -> Self {
        self.sub.patterns.push(pattern.into());
        self
    }

    /// Retries after the first attempt (default 3; 0 dead-letters on the first failure).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.sub.max_retries = n;
        self
    }

    /// One delay for every retry (default 1 s).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.sub.retry_delays = vec![delay];
        self
    }

    /// A delay per retry: the first retry waits the first, and so on; the last
    /// repeats. On RabbitMQ each distinct delay is one TTL queue.
    pub fn retry_delays(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.sub.retry_delays = delays.into_iter().collect();
        self
    }

    /// Deliveries sent ahead unacknowledged (default 100).
    pub fn prefetch(mut self, n: u16) -> Self {
        self.sub.prefetch = n;
        self
    }

    /// Handlers run at once (default 10).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.sub.concurrency = n;
        self
    }

    /// Skips events whose id was already handled successfully, remembering
    /// the last `window` ids (effectively-once within that window).
    pub fn dedup(mut self, window: usize) -> Self {
        self.sub.dedup = Some(window);
        self
    }

    /// How long closing waits for in-flight handlers (default 10 s); those
    /// still running then are abandoned and their events redelivered.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.sub.shutdown_grace = grace;
        self
    }

    /// Validates and returns the subscription.
    pub fn build(self) -> Result<Subscription, Error> {
        let s = self.sub;
        let bad = |m: String| Err(Error::Config(m));
        if s.queue.is_empty() || s.queue.len() > 200 {
            return bad(format!(
                "queue name {:?} must be 1 to 200 bytes (the broker adds suffixes up to 255)",
                s.queue
            ));
        }
        if s.patterns.is_empty() {
            return bad(format!(
                "subscription {:?} binds no event type: call .bind(\"event.type\")",
                s.queue
            ));
        }
        for p in &s.patterns {
            topic::validate_pattern(p).map_err(Error::Config)?;
        }
        if s.max_retries > 0 && s.retry_delays.is_empty() {
            return bad("retries need at least one retry delay".to_owned());
        }
        if s.retry_delays
            .iter()
            .any(|d| *d < Duration::from_millis(1) || d.as_millis() > u128::from(u32::MAX))
        {
            return bad("retry delays must be between 1 ms and 49 days".to_owned());
        }
        if s.prefetch == 0 {
            return bad("prefetch must be at least 1".to_owned());
        }
        if s.concurrency == 0 {
            return bad("concurrency must be at least 1".to_owned());
        }
        if s.dedup == Some(0) {
            return bad("a dedup window must remember at least 1 id".to_owned());
        }
        Ok(s)
    }
}

//! Helpers shared by the test binaries.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::time::Duration;

use forten_core::backoff::Constant;
use forten_core::circuit::CircuitBreaker;
use forten_core::retry::RetryConfig;
use wiremock::MockServer;

/// `retries` retries after a constant `delay`, no budget.
pub(crate) fn constant_retry(delay: Duration, retries: u32) -> RetryConfig {
    RetryConfig::builder()
        .backoff(Constant::new(delay, retries).unwrap())
        .no_budget()
        .build()
        .unwrap()
}

/// No retries at all.
pub(crate) fn no_retry() -> RetryConfig {
    constant_retry(Duration::from_millis(1), 0)
}

/// A breaker that never opens within a test (huge window).
pub(crate) fn lenient_breaker(name: &str) -> forten_core::circuit::CircuitBreakerConfig {
    CircuitBreaker::builder(name)
        .count_window(100_000)
        .minimum_calls(100_000)
        .config()
        .unwrap()
}

/// How many requests `server` received.
pub(crate) async fn received(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// Waits (real time, bounded) until `condition` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

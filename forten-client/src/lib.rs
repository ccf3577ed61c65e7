//! `ServiceClient`: an HTTP client for one upstream service with the whole
//! forten resilience stack around a pooled hyper-util client.
//!
//! One builder, sensible defaults, every pattern on:
//!
//! ```
//! use std::time::Duration;
//! use forten_client::{ClientError, ServiceClient};
//! use forten_core::circuit::CircuitBreaker;
//!
//! # #[derive(serde::Deserialize)] struct Event { id: u32 }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let upstream = wiremock::MockServer::start().await;
//! # wiremock::Mock::given(wiremock::matchers::path("/events/7"))
//! #     .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": 7})))
//! #     .mount(&upstream).await;
//! # wiremock::Mock::given(wiremock::matchers::path("/events/8"))
//! #     .respond_with(wiremock::ResponseTemplate::new(404).set_body_json(serde_json::json!({"errors": [{
//! #         "id": "1", "status": "404", "code": "NOT_FOUND", "title": "Not found",
//! #         "detail": "no event 8", "meta": {"timestamp": "2026-11-22T00:00:00Z"}}]})))
//! #     .mount(&upstream).await;
//! # let base_url = upstream.uri();
//! let events = ServiceClient::builder("events-service")
//!     .base_url(base_url)                       // or .discovery(discovery_client)
//!     .timeout(Duration::from_secs(2))          // each attempt
//!     .total_timeout(Duration::from_secs(5))    // all attempts and backoffs
//!     .circuit_breaker(CircuitBreaker::builder("events-service").minimum_calls(10).config()?)
//!     .build()?;
//!
//! let event: Event = events.get("/events/7").send_json().await?;
//! assert_eq!(event.id, 7);
//!
//! // A non-2xx answer keeps its status and JSON:API error document.
//! match events.get("/events/8").send_json::<Event>().await {
//!     Err(ClientError::Status { status, document: Some(doc), .. }) => {
//!         assert_eq!(status, 404);
//!         assert_eq!(doc.errors[0].code, "NOT_FOUND");
//!     }
//!     other => panic!("expected a 404, got {:?}", other.map(|e| e.id)),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The stack
//!
//! Outermost first; every request goes through all of it:
//!
//! 1. **Correlation propagation** ([`PropagateCorrelationLayer`](forten_core::correlation::PropagateCorrelationLayer)):
//!    `x-correlation-id`, `traceparent` and `tracestate` of the calling task (or a
//!    new root) are written once, so every attempt of one call carries the same
//!    context.
//! 2. **Idempotency key** ([`IdempotencyKeyLayer`](forten_core::idempotency::IdempotencyKeyLayer)):
//!    POST and PATCH get an `Idempotency-Key` unless they have one. It sits
//!    outside retry so every attempt carries the *same* key, which is also what
//!    makes the retry policy treat the POST as safe to retry.
//! 3. **Total deadline**: the earliest of `now + total_timeout` and the calling
//!    task's deadline becomes the call's [`Deadline`](forten_core::deadline::Deadline)
//!    (the layers below read it as [`Deadline::current`](forten_core::deadline::Deadline::current));
//!    it bounds all attempts and backoffs together.
//! 4. **Retry with budget** ([`RetryLayer`](forten_core::retry::RetryLayer)):
//!    retries only what is safe (DESIGN 4.5), honours `Retry-After`, stops at the
//!    deadline and when the shared budget is empty. It sits outside instance
//!    selection so that a retry may go to another instance.
//! 5. **Instance selection**: each attempt picks an instance (round robin over
//!    base URLs, or the discovery client's load balancer), skipping instances
//!    whose breaker is open, and rewrites the URI to it.
//! 6. **Per-instance circuit breaker** ([`KeyedCircuitBreakerLayer`](forten_core::circuit::KeyedCircuitBreakerLayer)),
//!    keyed by the selected instance: one bad instance opens its own breaker
//!    while the others serve. Inside selection because the key is the instance;
//!    outside the per-attempt timeout so a timeout counts as a failure and a
//!    half-open probe cannot hang.
//! 7. **Per-attempt timeout** ([`TimeoutLayer`](forten_core::deadline::TimeoutLayer)):
//!    min(`timeout`, what is left of the deadline), sent as
//!    `x-request-timeout-ms`, so the upstream sees a shrinking budget.
//! 8. **Service auth** ([`ServiceTokenLayer`](forten_auth::ServiceTokenLayer), when
//!    configured): the cached token for this target, added per attempt so a
//!    retry after the token's renewal carries the new one.
//! 9. **Transport**: hyper-util's pooled client (HTTP/1.1 keep-alive or h2c),
//!    behind an optional in-flight limit; the response body is read inside the
//!    attempt, bounded by `max_response_body`, so a slow or broken body counts
//!    against the attempt's timeout and its breaker.
//!
//! Around the stack, [`ServiceClient::execute`] applies the optional client rate
//! limit (before anything is sent), the [`Fallback`] (after everything failed),
//! and opens one tracing span per call, `forten_client.call`, with the fields
//! `service`, `correlation_id`, `method`, `path`, `instance`, `attempts`, `status`, `outcome`
//! (`ok`, `upstream_error`, `error`, `fallback`) and `latency_ms`. Each attempt
//! logs a debug event with its instance and number.
//!
//! # Errors
//!
//! [`ClientError`] is concrete: [`ClientError::Status`] for a non-2xx answer
//! (with the upstream's JSON:API document), [`ClientError::Resilience`] for a
//! forten-core [`Error`](forten_core::Error) (timeout, circuit open, retries
//! exhausted, rate limited, no instance), and a few more. It converts into
//! `forten_core::Error`, and [`ClientError::to_response`] renders what a gateway
//! should answer.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
mod error;
mod fallback;
mod request;
mod select;
mod total;
mod transport;

pub use builder::{
    DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, ServiceClientBuilder,
};
pub use client::{ResponseFuture, ServiceClient};
pub use error::{ClientBuildError, ClientError};
pub use fallback::{DEFAULT_STALE_CAPACITY, Fallback, FallbackContext, STALE_WARNING};
pub use request::RequestBuilder;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

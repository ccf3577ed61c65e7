//! Tower layers for resilient service-to-service communication.
//!
//! forten-core holds the middlewares every forten service stands on:
//!
//! - [`circuit`]: a circuit breaker for any tower service, plain or keyed per host;
//! - [`correlation`]: correlation ids and W3C Trace Context, server and client side;
//! - [`deadline`]: deadlines that shrink across hops (`x-request-timeout-ms`, `grpc-timeout`);
//! - [`backoff`] and [`retry`]: retries with jittered backoff, a retry budget and
//!   deadline awareness;
//! - [`error`]: one error model and its JSON:API mapping ([`Error`], [`error::ErrorResponseLayer`]);
//! - [`idempotency`]: Idempotency-Key handling (server layer, client key layer, memory and Redis stores);
//! - [`ratelimit`]: keyed GCRA rate limits with the ratelimit-headers draft fields, and bulkheads;
//! - [`metrics`]: metric names and the server RED layer, through the `metrics` facade;
//! - [`headers`] and [`time`]: the wire contracts' names and timestamp format.
//!
//! Every layer is a plain `tower::Layer`, so it wraps the services you already have.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod circuit;
pub mod correlation;
pub mod deadline;
pub mod error;
pub mod headers;
pub mod idempotency;
pub mod metrics;
mod random;
pub mod ratelimit;
pub mod retry;
mod spare;
pub mod time;

pub use error::Error;

/// The boxed error type every tower middleware in forten speaks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

//! EventBoard, the forten example system: four axum services assembled from
//! the forten crates.
//!
//! - [`gateway`]: `api-gateway` (:3000), the BFF;
//! - [`auth`]: `auth-service` (:3001): signup, login, me, validate;
//! - [`events`]: `events-service` (:3002): events and their approval workflow;
//! - [`notifications`]: `notification-service` (:3003): notifications from domain events;
//! - [`runtime`]: what they share (server stack, registration, health, graceful stop, auth, input);
//! - [`system`]: all four in one process ([`system::RunningSystem`]), as `forten-demo` and the
//!   end-to-end tests run them.
//!
//! # A request's way through
//!
//! ```text
//! client --Bearer user JWT--> api-gateway                     (forten-core, forten-auth)
//!   correlation id + trace context, deadline, JSON:API errors
//!   JwtAuthLayer (401) -> RateLimitLayer per user (429) -> IdempotencyLayer (replay / 409 / 422)
//!   service breaker -> ServiceClient: discovery pick, retries + budget,     (forten-client,
//!                      breaker per instance, per-attempt timeout,            forten-discovery)
//!                      service token in Authorization, user JWT in x-user-token
//!     --> events-service
//!         correlation (same id, fresh span), deadline (what is left), JSON:API errors
//!         ServiceAuthLayer (only api-gateway) -> IdempotencyLayer (a retried POST replays)
//!         handler: CurrentUser (the user JWT verified again), Policy permissions (403),
//!                  workflow (409), repository, publish event.* on the bus   (forten-events)
//!           ~~> notification-service consumes it (retries, dead letters, dedup by eventId)
//! ```
//!
//! Every service registers itself in the gateway's registry with its
//! `/health/ready` URL, heartbeats, and on a graceful stop fails readiness,
//! deregisters, finishes what it accepted and drains its consumers
//! ([`runtime::RunningService::stop`]). The gateway degrades instead of
//! failing: a service that is down answers its routes with 503
//! (`UPSTREAM_UNAVAILABLE`, then `CIRCUIT_OPEN` with `Retry-After` once its
//! breaker opens) and leaves its part of `/api/v1/dashboard` `null`, named in
//! `meta.degraded`.
//!
//! Run it with `cargo run -p forten-examples --bin forten-demo`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod events;
pub mod gateway;
pub mod notifications;
pub mod runtime;
pub mod system;
pub mod walkthrough;

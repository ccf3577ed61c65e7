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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod events;
pub mod gateway;
pub mod notifications;
pub mod runtime;
pub mod system;
pub mod walkthrough;

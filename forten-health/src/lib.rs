//! Health checks for tower services, answered in `application/health+json`.
//!
//! A [`HealthMonitor`] runs its [`Check`]s concurrently in a background task on an interval,
//! each bounded by its own timeout, and caches the results with their time. The endpoints read
//! the cache and never wait on a dependency:
//!
//! - `GET /health`: every check;
//! - `GET /health/live`: the process alone (it answers, so it lives), never a dependency;
//! - `GET /health/ready`: the readiness checks, and `fail` as soon as
//!   [`HealthMonitor::shutting_down`] is called.
//!
//! pass and warn answer 200, fail 503, always with `Cache-Control: no-store`. The body follows
//! the IETF draft "Health Check Response Format for HTTP APIs" ([`HealthReport`]).
//!
//! Checks: [`Check::tcp`], [`Check::http`], [`Check::redis`] (RESP `PING`),
//! [`Check::postgres`] (the `pg_isready` question; these two speak the wire protocol themselves,
//! no client library), [`Check::from_fn`] / [`Check::from_bool`] for anything else (a message
//! bus's `is_connected()`, a pool's size), and [`Check::upstream`], the gateway's view of its
//! peers' `/health/ready`. Each check has a timeout, a criticality (`fail` or only `warn`), a
//! kind (readiness or informational) and failure/success thresholds that damp flapping.
//!
//! Cargo features, all on by default: `http-check` ([`Check::http`], [`Check::upstream`];
//! pulls in hyper-util's client), `redis` and `postgres` (no dependency).
//!
//! ```
//! use std::time::Duration;
//! use forten_health::{Check, CheckResult, ComponentType, HealthMonitor};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = HealthMonitor::builder("auth-service", "1.0.0")
//!     .interval(Duration::from_secs(10))
//!     .check(
//!         Check::from_fn("postgres:connections", || async { CheckResult::pass().with_observed_value(3) })
//!             .component_type(ComponentType::Datastore)
//!             .timeout(Duration::from_secs(2))
//!             .failure_threshold(3),
//!     )
//!     .check(Check::from_bool("cache:warm", || false).non_critical())
//!     .build()?;
//! let _task = monitor.start()?;
//! monitor.run_checks_once().await;
//!
//! // In axum: `Router::new().route(...).fallback_service(monitor.routes())`.
//! let response = monitor
//!     .routes()
//!     .oneshot(http::Request::get("/health/ready").body(())?)
//!     .await?;
//! assert_eq!(response.status(), 200); // a non-critical failure only warns
//!
//! let report = monitor.report(forten_health::Endpoint::Ready);
//! let json = serde_json::to_value(&report)?;
//! assert_eq!(json["status"], "warn");
//! assert_eq!(json["checks"]["postgres:connections"][0]["observedValue"], 3);
//! assert_eq!(json["checks"]["cache:warm"][0]["status"], "warn");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
mod checks;
mod error;
mod monitor;
mod report;
mod routes;

pub use check::{Check, CheckKind, CheckResult, DEFAULT_TIMEOUT, Probe, ProbeFuture};
pub use error::Error;
pub use monitor::{DEFAULT_INTERVAL, Endpoint, HealthMonitor, HealthMonitorBuilder};
pub use report::{CheckReport, ComponentType, HEALTH_JSON_CONTENT_TYPE, HealthReport, Status};
pub use routes::HealthRoutes;

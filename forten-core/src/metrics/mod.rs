//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (issue 11).
//!
//! forten emits counters, gauges and histograms with the names below and
//! forces no exporter on you: install any `metrics` recorder (for Prometheus,
//! `metrics-exporter-prometheus`) and they appear; install none and they cost
//! nothing beyond a branch, except that [`ServerMetricsLayer`] and the
//! client's duration histogram still read the clock and look up their
//! handles per request. A closed breaker's call and a retry layer's
//! first-attempt success run no metric code at all. The README's "Metrics"
//! section has the same table with each metric's labels.
//!
//! **Install the recorder before building** breakers, clients, buses and
//! [`ServerMetricsLayer`]s: handles that are touched on every call (a
//! breaker's state gauge and rejection counter, the request counters and
//! histograms) are resolved against the recorder in force when they are
//! first needed and then kept, which is what makes them cheap. Metrics of
//! cold paths (state transitions, a retry decision after a failed attempt,
//! budget exhaustion, replays, rate-limit refusals) are resolved each time.
//!
//! Call [`describe`] once after installing the recorder to give every metric
//! its help text and unit (the `# HELP` lines of Prometheus text).
//!
//! **Cardinality.** Every label value comes from a bounded set: breaker names
//! you chose (a keyed breaker adds one per key, `<name>/<key>`, and keys are
//! instance ids or authorities, so as many as you have upstream instances;
//! an idle key's breaker is evicted and its series keeps its last value),
//! service names, HTTP methods (unknown methods become `OTHER`), status codes,
//! event types and queue names. Raw request paths are never a label: a server
//! labels requests by the route your [`ServerMetricsLayer::route`] function
//! returns (an axum `MatchedPath`, say), `unmatched` without one, because one
//! label value per distinct URL (ids in paths) grows a Prometheus series per
//! request.
//!
//! The `metrics` cargo feature (on by default) compiles this in; without it
//! the constants below remain and nothing is emitted.
//!
//! Serving them in Prometheus text format from an axum service:
//!
//! ```ignore
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! // once, first thing in main: before breakers, clients and buses are built
//! let prometheus = PrometheusBuilder::new().install_recorder()?;
//! let app = axum::Router::new()
//!     .route("/metrics", axum::routing::get(move || std::future::ready(prometheus.render())))
//!     // ... your routes, then the server RED layer labelled by matched route
//!     // (`Router::layer`, so the route is matched before the layer runs):
//!     .layer(forten_core::metrics::ServerMetricsLayer::new().route(|parts| {
//!         parts.extensions
//!             .get::<axum::extract::MatchedPath>()
//!             .map(|p| p.as_str().to_owned().into())
//!     }));
//! ```
//! (`forten-core/tests/metrics_prometheus.rs` runs this with a local
//! recorder, and parses what /metrics serves.)

#[cfg(feature = "metrics")]
pub(crate) mod emit;
#[cfg(not(feature = "metrics"))]
#[path = "noop.rs"]
pub(crate) mod emit;
#[cfg(feature = "metrics")]
mod request;
#[cfg(feature = "metrics")]
mod server;

#[cfg(feature = "metrics")]
pub use emit::describe;
#[cfg(feature = "metrics")]
pub use request::{RequestMetrics, method_label};
#[cfg(feature = "metrics")]
pub use server::{ServerMetrics, ServerMetricsFuture, ServerMetricsLayer};

/// Gauge `{breaker}`: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled.
pub const CIRCUIT_STATE: &str = "forten_circuit_state";
/// Counter `{breaker, from, to}`: state transitions (`closed`, `open`,
/// `half_open`, `forced_open`, `disabled`).
pub const CIRCUIT_TRANSITIONS: &str = "forten_circuit_transitions_total";
/// Counter `{breaker}`: calls refused without reaching the inner service.
pub const CIRCUIT_REJECTED: &str = "forten_circuit_rejected_total";
/// Counter `{service, outcome}`: attempts whose outcome was retryable, by what
/// followed: `retried`, or the reason retries stopped: `attempts_exhausted`,
/// `deadline`, `budget_exhausted`. First attempts that succeed are not counted
/// (the request rate is the count of [`CLIENT_REQUEST_DURATION`]).
pub const RETRY_ATTEMPTS: &str = "forten_retry_attempts_total";
/// Counter `{service}`: retries refused because the retry budget was empty.
pub const RETRY_BUDGET_EXHAUSTED: &str = "forten_retry_budget_exhausted_total";
/// Histogram `{service, method, status}` in seconds: whole client calls
/// (retries included); `status` is the code, or `error` when no response came.
pub const CLIENT_REQUEST_DURATION: &str = "forten_client_request_duration_seconds";
/// Counter `{route, status}`: requests a server answered.
pub const SERVER_REQUESTS: &str = "forten_server_requests_total";
/// Histogram `{route, status}` in seconds: time until a server's response
/// head was ready.
pub const SERVER_REQUEST_DURATION: &str = "forten_server_request_duration_seconds";
/// Counter `{event_type, outcome}`: publishes, by outcome `ok`, `unroutable`, `error`.
pub const EVENTS_PUBLISHED: &str = "forten_events_published_total";
/// Counter `{queue, outcome}`: deliveries handled, by outcome `ok`,
/// `duplicate` (skipped by dedup), `retry` (sent to a retry delay),
/// `dead_lettered` (handler failed for good, or the envelope was undecodable).
pub const EVENTS_HANDLED: &str = "forten_events_handled_total";
/// Counter `{queue}`: events moved to the dead-letter queue.
pub const EVENTS_DEAD_LETTERED: &str = "forten_events_dead_lettered_total";
/// Counter (no labels): responses replayed from the idempotency store.
pub const IDEMPOTENCY_REPLAYS: &str = "forten_idempotency_replays_total";
/// Counter `{policy}`: requests refused by a rate limit (429).
pub const RATE_LIMITED: &str = "forten_rate_limited_total";

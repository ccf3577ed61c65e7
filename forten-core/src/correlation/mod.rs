//! Correlation ids and W3C Trace Context propagation (DESIGN 4.1).
//!
//! - [`CorrelationLayer`] (server): extracts or starts the request's
//!   [`CorrelationContext`] and runs the handler inside it.
//! - [`PropagateCorrelationLayer`] (client): copies the current context into
//!   outbound requests, one fresh parent-id per hop.
//! - [`CorrelationId`], [`TraceParent`], [`TraceState`]: the parsers, public,
//!   with `FromStr` / `Display` round trips.
//!
//! With the `opentelemetry` feature and a `tracing-opentelemetry` layer in
//! the application's subscriber, the trace context *is* the active span's:
//! [`CorrelationLayer`] makes the incoming traceparent the remote parent of
//! its request span, and [`PropagateCorrelationLayer`] (and the event bus)
//! send the current span's trace id and span id, so a peer instrumented with
//! OpenTelemetry sees forten's spans as parents and children of its own.
//! Without the feature, or without such a layer, each hop gets a fresh
//! random parent-id as before.

mod context;
mod id;
mod layer;
#[cfg(feature = "opentelemetry")]
mod otel;
mod propagate;
mod traceparent;
mod tracestate;

pub use context::CorrelationContext;
pub use id::{CorrelationId, InvalidCorrelationId, MAX_CORRELATION_ID_LEN};
pub use layer::{Correlation, CorrelationFuture, CorrelationLayer};
pub use propagate::{PropagateCorrelation, PropagateCorrelationLayer};
pub use traceparent::{InvalidTraceParent, SpanId, TraceFlags, TraceId, TraceParent};
pub use tracestate::{InvalidTraceState, MAX_MEMBERS, TraceState};

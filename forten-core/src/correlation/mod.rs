//! Correlation ids and W3C Trace Context propagation (DESIGN 4.1).
//!
//! - [`CorrelationLayer`] (server): extracts or starts the request's
//!   [`CorrelationContext`] and runs the handler inside it.
//! - [`PropagateCorrelationLayer`] (client): copies the current context into
//!   outbound requests, one fresh parent-id per hop.
//! - [`CorrelationId`], [`TraceParent`], [`TraceState`]: the parsers, public,
//!   with `FromStr` / `Display` round trips.

mod context;
mod id;
mod layer;
mod propagate;
mod traceparent;
mod tracestate;

pub use context::CorrelationContext;
pub use id::{CorrelationId, InvalidCorrelationId, MAX_CORRELATION_ID_LEN};
pub use layer::{Correlation, CorrelationFuture, CorrelationLayer};
pub use propagate::{PropagateCorrelation, PropagateCorrelationLayer};
pub use traceparent::{InvalidTraceParent, SpanId, TraceFlags, TraceId, TraceParent};
pub use tracestate::{InvalidTraceState, MAX_MEMBERS, TraceState};

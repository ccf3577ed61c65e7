//! [`CorrelationContext`]: what one request carries across services.

use std::future::Future;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::{CorrelationId, TraceParent, TraceState};
use crate::headers::{TRACEPARENT, TRACESTATE, X_CORRELATION_ID, X_REQUEST_ID};

tokio::task_local! {
    static CURRENT: CorrelationContext;
}

/// The correlation id and W3C trace context of the request being handled.
///
/// The server-side [`CorrelationLayer`](super::CorrelationLayer) builds one per
/// request, puts it into the request's extensions and runs the handler inside
/// it, so handler code reaches it with [`CorrelationContext::current`]. The
/// client-side [`PropagateCorrelationLayer`](super::PropagateCorrelationLayer)
/// and the event bus copy it into whatever leaves the process.
///
/// ```
/// use forten_core::correlation::CorrelationContext;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let ctx = CorrelationContext::from_values(Some("order-42"), None, None);
/// let seen = ctx.clone().scope(async {
///     CorrelationContext::current().map(|c| c.correlation_id().as_str().to_owned())
/// }).await;
/// assert_eq!(seen.as_deref(), Some("order-42"));
/// assert!(CorrelationContext::current().is_none()); // outside the scope
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorrelationContext {
    correlation_id: CorrelationId,
    trace_parent: TraceParent,
    trace_state: Option<TraceState>,
}

impl CorrelationContext {
    /// A new context from its parts.
    pub fn new(
        correlation_id: CorrelationId,
        trace_parent: TraceParent,
        trace_state: Option<TraceState>,
    ) -> Self {
        CorrelationContext {
            correlation_id,
            trace_parent,
            trace_state,
        }
    }

    /// A fresh context: a new correlation id and a new trace.
    pub fn new_root() -> Self {
        CorrelationContext::new(CorrelationId::generate(), TraceParent::new_root(), None)
    }

    /// The context of the task this is called from, if it runs inside one
    /// (a request handled behind `CorrelationLayer`, or a future run with
    /// [`scope`](Self::scope)).
    pub fn current() -> Option<CorrelationContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this context as [`current`](Self::current): for
    /// background tasks and event handlers.
    pub fn scope<F: Future>(
        self,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<CorrelationContext, F> {
        CURRENT.scope(self, fut)
    }

    /// Runs `f` synchronously with this context as current.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// Builds a context from string values (HTTP headers, AMQP headers, ...):
    /// each valid value is kept; a missing or invalid correlation id is
    /// generated; a missing or invalid traceparent starts a new trace and then
    /// the tracestate is dropped too (W3C Trace Context).
    pub fn from_values(
        correlation_id: Option<&str>,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
    ) -> Self {
        let correlation_id = correlation_id
            .and_then(|v| CorrelationId::new(v).ok())
            .unwrap_or_else(CorrelationId::generate);
        match traceparent.and_then(|v| TraceParent::parse(v).ok()) {
            Some(trace_parent) => CorrelationContext {
                correlation_id,
                trace_parent,
                trace_state: tracestate.and_then(|v| TraceState::parse(v).ok()),
            },
            None => CorrelationContext::new(correlation_id, TraceParent::new_root(), None),
        }
    }

    /// Extracts the context of an incoming request (DESIGN 4.1):
    /// `x-correlation-id`, else `x-request-id`, else a new id; exactly one
    /// valid `traceparent`, else a new trace without tracestate; every
    /// `tracestate` line joined, dropped whole when invalid.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let correlation_id = match headers.get(X_CORRELATION_ID) {
            Some(v) => id_from(v),
            None => headers.get(X_REQUEST_ID).and_then(id_from),
        }
        .unwrap_or_else(CorrelationId::generate);

        let mut parents = headers.get_all(TRACEPARENT).iter();
        let trace_parent = match (parents.next(), parents.next()) {
            // Two traceparent lines are ambiguous: restart the trace.
            (Some(v), None) => v.to_str().ok().and_then(|s| TraceParent::parse(s).ok()),
            _ => None,
        };
        let Some(trace_parent) = trace_parent else {
            return CorrelationContext::new(correlation_id, TraceParent::new_root(), None);
        };
        let mut lines = Vec::new();
        let mut readable = true;
        for v in headers.get_all(TRACESTATE) {
            match v.to_str() {
                Ok(s) => lines.push(s),
                Err(_) => readable = false,
            }
        }
        let trace_state = if readable && !lines.is_empty() {
            TraceState::parse_lines(lines).ok()
        } else {
            None
        };
        CorrelationContext {
            correlation_id,
            trace_parent,
            trace_state,
        }
    }

    /// The same correlation id, trace id, flags and tracestate with a fresh
    /// parent-id: the context one outbound hop carries.
    pub fn child(&self) -> Self {
        CorrelationContext {
            correlation_id: self.correlation_id.clone(),
            trace_parent: self.trace_parent.child(),
            trace_state: self.trace_state.clone(),
        }
    }

    /// The context one outbound hop carries: with the `opentelemetry`
    /// feature and the current `tracing` span recorded by
    /// `tracing-opentelemetry`, that span's trace id and span id (so the
    /// parent-id a peer receives is a reported span; the sampled flag is
    /// OpenTelemetry's); otherwise [`child`](Self::child).
    pub fn hop(&self) -> Self {
        #[cfg(feature = "opentelemetry")]
        if let Some(hop) = super::otel::current_span_hop(self) {
            return hop;
        }
        self.child()
    }

    /// This context as the current `tracing` span's OpenTelemetry context
    /// sees it, if the `opentelemetry` feature is on and a
    /// `tracing-opentelemetry` layer records the span: the same as
    /// [`hop`](Self::hop) without the fallback. Always `None` without the feature.
    pub fn from_current_span(&self) -> Option<Self> {
        #[cfg(feature = "opentelemetry")]
        return super::otel::current_span_hop(self);
        #[cfg(not(feature = "opentelemetry"))]
        None
    }

    /// Makes this context's traceparent the remote parent of `span` (call it
    /// before the span is first entered), so the span joins the caller's
    /// trace. With the `opentelemetry` feature and a `tracing-opentelemetry`
    /// layer; otherwise it does nothing.
    pub fn set_parent_of(&self, span: &tracing::Span) {
        #[cfg(feature = "opentelemetry")]
        super::otel::set_parent(self, span);
        #[cfg(not(feature = "opentelemetry"))]
        let _ = span;
    }

    /// Writes `x-correlation-id`, `traceparent` and `tracestate` (removing a
    /// stale one) into `headers`, replacing what was there.
    ///
    /// The first two values share one heap buffer, reference counted: one
    /// allocation for both, and copies of the headers (a retry layer's copy
    /// of the request) cost a count each rather than an allocation.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let id = self.correlation_id.as_str().as_bytes();
        let mut buf = HeaderBuf {
            len: id.len() + TRACEPARENT_LEN,
            bytes: [0; HEADER_BUF],
        };
        buf.bytes[..id.len()].copy_from_slice(id);
        buf.bytes[id.len()..buf.len].copy_from_slice(&self.trace_parent.to_header_bytes());
        let mut traceparent = Bytes::from_owner(buf);
        let correlation_id = traceparent.split_to(id.len());
        if let Ok(v) = HeaderValue::from_maybe_shared(correlation_id) {
            headers.insert(X_CORRELATION_ID, v);
        }
        if let Ok(v) = HeaderValue::from_maybe_shared(traceparent) {
            headers.insert(TRACEPARENT, v);
        }
        match self
            .trace_state
            .as_ref()
            .and_then(|s| HeaderValue::from_str(s.as_str()).ok())
        {
            Some(v) => {
                headers.insert(TRACESTATE, v);
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> &CorrelationId {
        &self.correlation_id
    }

    /// The W3C traceparent.
    pub fn trace_parent(&self) -> &TraceParent {
        &self.trace_parent
    }

    /// The W3C tracestate, if the caller sent a valid one.
    pub fn trace_state(&self) -> Option<&TraceState> {
        self.trace_state.as_ref()
    }
}

/// A `traceparent` of version 00.
const TRACEPARENT_LEN: usize = 55;
const HEADER_BUF: usize = super::MAX_CORRELATION_ID_LEN + TRACEPARENT_LEN;

/// The correlation id then the traceparent, inline: the owner of the
/// [`Bytes`] both header values are slices of.
struct HeaderBuf {
    len: usize,
    bytes: [u8; HEADER_BUF],
}

impl AsRef<[u8]> for HeaderBuf {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn id_from(v: &HeaderValue) -> Option<CorrelationId> {
    v.to_str().ok().and_then(|s| CorrelationId::new(s).ok())
}

//! Carries the correlation context into published events and back out into
//! handlers (DESIGN 4.1): the only place that touches forten-core's
//! task-local, plus this crate's own "event being handled" task-local that
//! gives new events their causation id.

use std::future::Future;

use forten_core::correlation::CorrelationContext;

tokio::task_local! {
    static HANDLING: String;
}

/// What an event takes from the task that creates it.
pub(crate) struct Captured {
    pub(crate) correlation_id: String,
    pub(crate) causation_id: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
}

/// The correlation context of the current task, or a fresh one outside any
/// scope (an event always carries a correlation id), and the id of the event
/// being handled, if any, as the causation id.
pub(crate) fn capture() -> Captured {
    let ctx = CorrelationContext::current().unwrap_or_else(CorrelationContext::new_root);
    // Under forten-core's `opentelemetry` feature the event carries the
    // publishing span's ids, so its handling joins the publisher's trace.
    let ctx = ctx.from_current_span().unwrap_or(ctx);
    Captured {
        correlation_id: ctx.correlation_id().as_str().to_owned(),
        causation_id: HANDLING.try_with(Clone::clone).ok(),
        traceparent: Some(ctx.trace_parent().to_string()),
        tracestate: ctx.trace_state().map(ToString::to_string),
    }
}

/// Rebuilds the publisher's context from the values an event carried (each
/// validated; what is invalid is regenerated).
pub(crate) fn restore(
    correlation_id: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> CorrelationContext {
    CorrelationContext::from_values(Some(correlation_id), traceparent, tracestate)
}

/// Runs a handler future inside the event's correlation context, with
/// `event_id` as the causation id of anything it publishes.
pub(crate) fn scope<F: Future>(
    ctx: CorrelationContext,
    event_id: String,
    fut: F,
) -> impl Future<Output = F::Output> {
    ctx.scope(HANDLING.scope(event_id, fut))
}

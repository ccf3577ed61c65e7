//! The `opentelemetry` feature: forten's trace context and the active
//! `tracing` span's OpenTelemetry context are one and the same, so traces
//! from forten services join those of any OpenTelemetry-instrumented peer.
//!
//! Inbound, the incoming traceparent becomes the remote parent of the
//! request span (or an event's handling span); outbound, the traceparent
//! sent carries the current span's trace id and span id, so the parent-id a
//! peer sees is a span that the exporter really reports.

use std::str::FromStr;

use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags as OtelFlags,
    TraceId as OtelTraceId, TraceState as OtelTraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{CorrelationContext, SpanId, TraceFlags, TraceId, TraceParent};

/// W3C flag bits: sampled (OpenTelemetry's) and random (level 2, kept from
/// the context when the trace is the same).
const SAMPLED: u8 = TraceFlags::SAMPLED;
const RANDOM: u8 = TraceFlags::RANDOM;

/// Makes `ctx`'s traceparent the remote parent of `span`, which must not
/// have been entered yet. Does nothing when no OpenTelemetry layer records it.
pub(super) fn set_parent(ctx: &CorrelationContext, span: &tracing::Span) {
    if span.is_disabled() {
        return;
    }
    let tp = ctx.trace_parent();
    let state = ctx
        .trace_state()
        .and_then(|s| OtelTraceState::from_str(s.as_str()).ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        OtelTraceId::from(tp.trace_id().to_u128()),
        OtelSpanId::from(tp.parent_id().to_u64()),
        OtelFlags::new(tp.flags().bits() & SAMPLED),
        true,
        state,
    );
    // An error only says no OpenTelemetry layer is installed, or the span
    // already started: the trace then goes on as forten's own.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// `ctx` with the current span's OpenTelemetry ids as its traceparent, when
/// an OpenTelemetry layer records the current span.
pub(super) fn current_span_hop(ctx: &CorrelationContext) -> Option<CorrelationContext> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return None;
    }
    let trace_id = TraceId::from_u128(u128::from_be_bytes(sc.trace_id().to_bytes()))?;
    let span_id = SpanId::from_u64(u64::from_be_bytes(sc.span_id().to_bytes()))?;
    let mut flags = sc.trace_flags().to_u8() & SAMPLED;
    if trace_id == ctx.trace_parent().trace_id() {
        flags |= ctx.trace_parent().flags().bits() & RANDOM;
    }
    Some(CorrelationContext::new(
        ctx.correlation_id().clone(),
        TraceParent::new(trace_id, span_id, TraceFlags::new(flags)),
        ctx.trace_state().cloned(),
    ))
}

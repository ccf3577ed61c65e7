//! The `opentelemetry` feature: with tracing-opentelemetry in the subscriber,
//! a request that comes from an OpenTelemetry-instrumented peer and crosses
//! two forten services (in process) is one trace, and every traceparent
//! forten sends names a span the exporter reports.
#![cfg(feature = "opentelemetry")]
#![allow(missing_docs)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use forten_core::correlation::{CorrelationLayer, PropagateCorrelationLayer, TraceParent};
use http::{Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanId, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Layer, ServiceExt, service_fn};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

struct Otel {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

/// An OpenTelemetry SDK with the in-memory exporter, as this thread's subscriber.
fn otel() -> Otel {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("forten-test")));
    Otel {
        exporter,
        provider,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

impl Otel {
    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_spans().unwrap()
    }
}

fn span_id(tp: &TraceParent) -> SpanId {
    SpanId::from(tp.parent_id().to_u64())
}

#[tokio::test(flavor = "current_thread")]
async fn a_two_hop_request_from_an_otel_peer_is_one_trace() {
    let otel = otel();

    // service B records the traceparent it was sent
    let received = Arc::new(Mutex::new(None::<String>));
    let seen = received.clone();
    let b = CorrelationLayer::new().layer(service_fn(move |req: Request<()>| {
        let tp = req.headers()["traceparent"].to_str().unwrap().to_owned();
        *seen.lock().unwrap() = Some(tp);
        async { Ok::<_, Infallible>(Response::new(())) }
    }));
    // service A calls B through the client-side propagation layer
    let a = CorrelationLayer::new().layer(service_fn(move |_req: Request<()>| {
        let b = PropagateCorrelationLayer::new().layer(b.clone());
        async move { b.oneshot(Request::new(())).await }
    }));

    // the peer: an OpenTelemetry span, injected by the SDK's W3C propagator
    let peer = tracing::info_span!("peer");
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&peer.context(), &mut carrier);
    let peer_trace = peer.context().span().span_context().trace_id();
    let peer_span = peer.context().span().span_context().span_id();
    let req = Request::builder()
        .header("traceparent", &carrier["traceparent"])
        .body(())
        .unwrap();
    a.oneshot(req).instrument(peer).await.unwrap();

    let spans = otel.spans();
    let requests: Vec<&SpanData> = spans.iter().filter(|s| s.name == "request").collect();
    assert_eq!(requests.len(), 2, "{spans:#?}");
    for s in &spans {
        assert_eq!(
            s.span_context.trace_id(),
            peer_trace,
            "one trace: {}",
            s.name
        );
    }
    // A's request span is the child of the peer's span (a remote parent) ...
    let span_a = requests
        .iter()
        .find(|s| s.parent_span_id == peer_span)
        .expect("a request span under the peer's");
    assert!(span_a.parent_span_is_remote);
    // ... and B's is the child of A's, through the traceparent A sent,
    // whose parent-id is A's span id: a span the exporter reported.
    let sent: TraceParent = received.lock().unwrap().clone().unwrap().parse().unwrap();
    assert_eq!(span_id(&sent), span_a.span_context.span_id());
    let span_b = requests
        .iter()
        .find(|s| s.parent_span_id == span_a.span_context.span_id())
        .expect("a request span under A's");
    assert!(span_b.parent_span_is_remote);
    assert_eq!(
        u128::from_be_bytes(span_b.span_context.trace_id().to_bytes()),
        sent.trace_id().to_u128()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_plain_w3c_traceparent_parents_the_server_span() {
    let otel = otel();
    // a plain W3C caller (not OpenTelemetry): its ids are taken as they are
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let svc = CorrelationLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let req = Request::builder()
        .header("traceparent", tp)
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let spans = otel.spans();
    assert_eq!(spans.len(), 1);
    let parent: TraceParent = tp.parse().unwrap();
    assert_eq!(spans[0].parent_span_id, span_id(&parent));
    assert_eq!(
        u128::from_be_bytes(spans[0].span_context.trace_id().to_bytes()),
        parent.trace_id().to_u128()
    );
}

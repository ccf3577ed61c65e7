//! The `opentelemetry` feature through `ServiceClient`: the traceparent an
//! upstream receives is the client call span's, in the caller's trace.
#![allow(clippy::unwrap_used)]

use forten_client::ServiceClient;
use forten_core::correlation::TraceParent;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "current_thread")]
async fn the_upstream_sees_the_call_span_as_its_parent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("forten-test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .build()
        .unwrap();

    let caller = tracing::info_span!("caller");
    let trace: TraceId = caller.context().span().span_context().trace_id();
    client
        .get("/events")
        .send()
        .instrument(caller)
        .await
        .unwrap();

    let requests = upstream.received_requests().await.unwrap();
    let sent: TraceParent = requests[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let call = spans
        .iter()
        .find(|s| s.name == "forten_client.call")
        .unwrap_or_else(|| panic!("no client span in {spans:#?}"));
    assert_eq!(call.span_context.trace_id(), trace, "the caller's trace");
    assert_eq!(TraceId::from(sent.trace_id().to_u128()), trace);
    assert_eq!(
        SpanId::from(sent.parent_id().to_u64()),
        call.span_context.span_id()
    );
}

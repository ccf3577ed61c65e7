//! The `opentelemetry` feature on the bus: an event published inside an
//! OpenTelemetry-recorded span is handled in a span of the same trace, the
//! publishing span's child (through the traceparent the message carries).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use forten_core::correlation::TraceParent;
use forten_events::{Delivery, Event, MemoryBus, PublisherExt, Subscriber, Subscription};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "current_thread")]
async fn publish_then_handle_is_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("forten-test")));
    // this thread's subscriber: the bus's consumer task runs here too
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = MemoryBus::new("orders");
    let sub = Subscription::builder("billing.order-placed")
        .bind("order.placed")
        .build()
        .unwrap();
    let carried = Arc::new(Mutex::new(None::<String>));
    let c2 = carried.clone();
    let handle = bus
        .subscribe(
            sub,
            Arc::new(move |d: Delivery| {
                *c2.lock().unwrap() = d.event.traceparent.clone();
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();

    let publish = tracing::info_span!("place-order");
    let publisher_trace: TraceId = publish.context().span().span_context().trace_id();
    let publisher_span: SpanId = publish.context().span().span_context().span_id();
    // an event takes its context where it is created: inside the span
    let event = publish.in_scope(|| Event::new("order.placed", json!({ "id": 7 })));
    bus.publish(&event).instrument(publish).await.unwrap();

    // bounded wait for the handling span to end and be exported
    let finished = |exporter: &InMemorySpanExporter| -> Vec<SpanData> {
        provider.force_flush().unwrap();
        exporter.get_finished_spans().unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let event_span = loop {
        if let Some(s) = finished(&exporter).into_iter().find(|s| s.name == "event") {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event span exported"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(event_span.span_context.trace_id(), publisher_trace);
    assert_eq!(event_span.parent_span_id, publisher_span);
    assert!(event_span.parent_span_is_remote);
    // the message carried the publishing span's ids
    let tp: TraceParent = carried.lock().unwrap().clone().unwrap().parse().unwrap();
    assert_eq!(SpanId::from(tp.parent_id().to_u64()), publisher_span);
    assert_eq!(TraceId::from(tp.trace_id().to_u128()), publisher_trace);
    handle.close().await;
    bus.close().await;
}

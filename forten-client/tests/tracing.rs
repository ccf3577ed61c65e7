//! The per-call span and its fields (own binary: it installs a subscriber).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::constant_retry;
use forten_client::ServiceClient;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Every field recorded on `forten_client.call` spans, by span id.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<BTreeMap<u64, BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() == "forten_client.call" {
            let mut spans = self.0.lock().unwrap();
            attrs.record(&mut Fields(spans.entry(id.into_u64()).or_default()));
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some(fields) = spans.get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_call_has_a_span_with_service_instance_attempts_outcome_and_latency() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events-service")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(1), 2))
        .build()
        .unwrap();
    let ctx =
        forten_core::correlation::CorrelationContext::from_values(Some("order-7"), None, None);
    ctx.scope(client.get("/events").send()).await.unwrap();

    let spans = capture.0.lock().unwrap();
    let fields = spans.values().next().expect("one call span");
    assert_eq!(fields["service"], "events-service");
    assert_eq!(fields["correlation_id"], "order-7");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/events");
    assert_eq!(fields["instance"], upstream.uri());
    assert_eq!(fields["attempts"], "2");
    assert_eq!(fields["status"], "200");
    assert_eq!(fields["outcome"], "ok");
    assert!(fields["latency_ms"].parse::<f64>().unwrap() > 0.0);
}

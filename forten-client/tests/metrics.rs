//! The client's metrics in Prometheus text, as a service's /metrics would
//! render them: call durations by service, method and status; retries; and
//! the per-instance breaker opening under an outage.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::constant_retry;
use forten_client::ServiceClient;
use forten_core::circuit::CircuitBreaker;
use forten_core::metrics as names;
use metrics_exporter_prometheus::PrometheusBuilder;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Every sample of `name` whose labels include all of `labels`, from
/// Prometheus text (`name{k="v",...} value` lines).
fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let rest = rest.strip_suffix('}')?;
            let has =
                |(k, v): &(&str, &str)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\""));
            labels.iter().all(has).then(|| value.parse().ok())?
        })
        .collect()
}

/// The one sample of `name` with `labels`, a count.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let found = samples(text, name, labels);
    assert_eq!(found.len(), 1, "one {name} {labels:?} in:\n{text}");
    found[0] as u64
}

#[tokio::test]
async fn durations_and_retries_are_recorded_per_service_method_and_status() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&upstream)
        .await;
    Mock::given(path("/missing"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(1), 3))
        .build()
        .unwrap();
    assert_eq!(client.get("/events").send().await.unwrap().status(), 200);
    assert_eq!(client.get("/missing").send().await.unwrap().status(), 404);

    let text = prometheus.render();
    let count = format!("{}_count", names::CLIENT_REQUEST_DURATION);
    let ok = [("service", "events"), ("method", "GET"), ("status", "200")];
    let missing = [("service", "events"), ("method", "GET"), ("status", "404")];
    assert_eq!(sample(&text, &count, &ok), 1, "one call, retries inside it");
    assert_eq!(sample(&text, &count, &missing), 1);
    // the retry layer is named after the service
    let retried = [("service", "events"), ("outcome", "retried")];
    assert_eq!(sample(&text, names::RETRY_ATTEMPTS, &retried), 2);
}

#[tokio::test]
async fn an_outage_opens_the_instance_breaker_and_calls_are_rejected() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&upstream)
        .await;
    let breaker = CircuitBreaker::builder("events")
        .count_window(4)
        .minimum_calls(4)
        .wait_duration(Duration::from_secs(60))
        .config()
        .unwrap();
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(1), 0))
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    for _ in 0..4 {
        assert_eq!(client.get("/events").send().await.unwrap().status(), 500);
    }
    for _ in 0..2 {
        client.get("/events").send().await.unwrap_err();
    }

    let text = prometheus.render();
    let opened = [("from", "closed"), ("to", "open")];
    assert_eq!(sample(&text, names::CIRCUIT_TRANSITIONS, &opened), 1);
    // one breaker per instance, named <config name>/<instance id>
    let state = text
        .lines()
        .find(|l| l.starts_with(&format!("{}{{breaker=\"events/", names::CIRCUIT_STATE)))
        .unwrap_or_else(|| panic!("a per-instance state gauge in:\n{text}"));
    assert!(state.ends_with(" 1"), "open: {state}");
    assert_eq!(sample(&text, names::CIRCUIT_REJECTED, &[]), 2);
    let count = format!("{}_count", names::CLIENT_REQUEST_DURATION);
    let failed = [("service", "events"), ("status", "error")];
    assert_eq!(
        sample(&text, &count, &failed),
        2,
        "rejected calls have no status"
    );
}

#[tokio::test]
async fn refusals_of_the_client_rate_limit_are_counted_under_its_policy() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let upstream = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let policy =
        forten_core::ratelimit::RateLimitPolicy::new("to-events", 1, Duration::from_secs(60))
            .unwrap();
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .rate_limit(policy)
        .build()
        .unwrap();
    client.get("/x").send().await.unwrap();
    assert_eq!(client.get("/x").send().await.unwrap_err().status(), 429);
    assert_eq!(client.get("/x").send().await.unwrap_err().status(), 429);

    let text = prometheus.render();
    assert_eq!(
        sample(&text, names::RATE_LIMITED, &[("policy", "to-events")]),
        2,
        "each refused call once"
    );
}

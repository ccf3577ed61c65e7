//! Retries through the whole stack against wiremock upstreams (real sockets,
//! so real time with short delays and bounded waits).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{constant_retry, lenient_breaker, received};
use forten_client::{ClientError, ServiceClient};
use forten_core::backoff::Constant;
use forten_core::retry::{RetryBudget, RetryConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_get_is_retried_after_503_until_it_succeeds() {
    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(5), 3))
        .build()
        .unwrap();

    let response = client.get("/events").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), "ok");
    assert_eq!(received(&upstream).await, 3);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_bound_and_return_the_last_503() {
    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(1), 2))
        .build()
        .unwrap();

    let response = client.get("/events").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(received(&upstream).await, 3);
    // and as a typed error
    let err = client
        .get("/events")
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Status { status, .. } if status == 503));
}

#[tokio::test]
async fn retry_after_sets_the_delay_before_the_next_attempt() {
    let upstream = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&upstream)
        .await;
    // The schedule alone would wait 1 ms; Retry-After asks for 1 s, capped here at 300 ms.
    let retry = RetryConfig::builder()
        .backoff(Constant::new(Duration::from_millis(1), 3).unwrap())
        .max_retry_after(Duration::from_millis(300))
        .no_budget()
        .build()
        .unwrap();
    let client = ServiceClient::builder("slow")
        .base_url(upstream.uri())
        .retry(retry)
        .build()
        .unwrap();

    let started = Instant::now();
    let response = client.get("/slow").send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(received(&upstream).await, 2);
    assert!(
        waited >= Duration::from_millis(300),
        "waited only {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(1),
        "the cap was ignored: {waited:?}"
    );
}

#[tokio::test]
async fn a_post_without_idempotency_key_is_sent_once() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(1), 3))
        .idempotency_keys(false)
        .build()
        .unwrap();

    let response = client
        .post("/events")
        .json(&serde_json::json!({"title": "x"}))
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let requests = upstream.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].headers.contains_key("idempotency-key"));
}

#[tokio::test]
async fn a_post_with_a_key_is_retried_with_the_same_key_on_every_attempt() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": 1})))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(1), 3))
        .build()
        .unwrap();

    // the client adds the key itself (default)...
    let created: serde_json::Value = client
        .post("/events")
        .json(&serde_json::json!({"title": "x"}))
        .unwrap()
        .send_json()
        .await
        .unwrap();
    assert_eq!(created["id"], 1);
    let requests = upstream.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    let keys: Vec<_> = requests
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert!(keys.iter().all(|k| k == &keys[0]), "keys differ: {keys:?}");
    assert!(requests.iter().all(|r| r.body == br#"{"title":"x"}"#));

    // ...and keeps one the caller set, on every attempt
    upstream.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(constant_retry(Duration::from_millis(1), 2))
        .idempotency_keys(false)
        .build()
        .unwrap();
    let response = client
        .post("/events")
        .header("idempotency-key", "\"order-42\"")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let requests = upstream.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|r| r.headers["idempotency-key"] == "\"order-42\"")
    );
}

#[tokio::test]
async fn the_budget_stops_a_retry_storm() {
    let upstream = MockServer::start().await;
    Mock::given(path("/dead"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&upstream)
        .await;
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .min_per_second(0)
        .window(Duration::from_secs(60))
        .build()
        .unwrap();
    let retry = RetryConfig::builder()
        .backoff(Constant::new(Duration::from_millis(1), 3).unwrap())
        .budget(budget)
        .build()
        .unwrap();
    let client = ServiceClient::builder("dead")
        .base_url(upstream.uri())
        .retry(retry)
        .circuit_breaker(lenient_breaker("dead"))
        .build()
        .unwrap();

    let calls = 1_000;
    let mut tasks = Vec::new();
    for chunk in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..calls / 10 {
                let response = client.get("/dead").send().await.unwrap();
                assert_eq!(response.status(), 503, "chunk {chunk}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let sent = received(&upstream).await;
    // at most 10 % extra (plus the budget's documented batching blur of 30 x ratio)
    let extra = sent - calls;
    assert!(extra <= 100 + 3, "{extra} retries for {calls} calls");
    assert!(extra >= 50, "the budget allowed too few retries: {extra}");
}

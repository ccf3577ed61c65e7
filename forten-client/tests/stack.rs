//! Breakers, instances, deadlines, correlation, service auth and the
//! fallback through the whole stack against wiremock upstreams (real
//! sockets, so real time with short durations and bounded waits).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{constant_retry, eventually, no_retry, received};
use forten_auth::{KeySet, ServiceAuth, ServiceAuthLayer, SigningKey};
use forten_client::{ClientError, Fallback, STALE_WARNING, ServiceClient};
use forten_core::circuit::{CircuitBreaker, CircuitEvent, CircuitState};
use forten_core::correlation::{CorrelationContext, TraceParent};
use futures::StreamExt;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn next_transition(
    events: &mut forten_core::circuit::CircuitEvents,
) -> (CircuitState, CircuitState) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("a circuit event within 5 s")
            .expect("the stream is open");
        if let CircuitEvent::Transition { from, to, .. } = event {
            return (from, to);
        }
    }
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_probes_and_closes() {
    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&upstream)
        .await;
    let wait = Duration::from_millis(300);
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(no_retry())
        .circuit_breaker(
            CircuitBreaker::builder("events")
                .count_window(4)
                .minimum_calls(4)
                .wait_duration(wait)
                .half_open_permits(1)
                .config()
                .unwrap(),
        )
        .build()
        .unwrap();
    let instance = client.instances().remove(0);
    assert_eq!(instance, upstream.uri());
    let mut events = client.subscribe_circuit_events();

    for _ in 0..4 {
        let response = client.get("/events").send().await.unwrap();
        assert_eq!(response.status(), 500);
    }
    assert_eq!(
        next_transition(&mut events).await,
        (CircuitState::Closed, CircuitState::Open)
    );
    assert_eq!(client.circuit_state(&instance), Some(CircuitState::Open));

    // open: fails fast, the upstream sees nothing
    for _ in 0..10 {
        let err = client.get("/events").send().await.unwrap_err();
        let ClientError::Resilience(forten_core::Error::CircuitOpen { retry_after, .. }) = &err
        else {
            panic!("expected CircuitOpen, got {err:?}");
        };
        assert!(*retry_after <= wait);
        assert_eq!(err.status(), 503);
        assert_eq!(err.to_response(None).headers()["retry-after"], "1");
    }
    assert_eq!(received(&upstream).await, 4);

    // after the wait one probe goes through; its success closes the breaker
    upstream.reset().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let left = client
        .circuit_breakers()
        .breaker(&instance.as_str().into())
        .unwrap()
        .metrics()
        .time_left_open
        .unwrap();
    tokio::time::sleep(left + Duration::from_millis(10)).await;
    let response = client.get("/events").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(received(&upstream).await, 1);
    assert_eq!(
        next_transition(&mut events).await,
        (CircuitState::Open, CircuitState::HalfOpen)
    );
    assert_eq!(
        next_transition(&mut events).await,
        (CircuitState::HalfOpen, CircuitState::Closed)
    );
    assert_eq!(client.circuit_state(&instance), Some(CircuitState::Closed));
}

#[tokio::test]
async fn traffic_moves_to_the_healthy_instance_and_only_the_failing_breaker_opens() {
    let failing = MockServer::start().await;
    let healthy = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&failing)
        .await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&healthy)
        .await;
    let client = ServiceClient::builder("events")
        .base_urls([failing.uri(), healthy.uri()])
        .retry(constant_retry(Duration::from_millis(1), 2))
        .circuit_breaker(
            CircuitBreaker::builder("events")
                .count_window(4)
                .minimum_calls(4)
                .wait_duration(Duration::from_secs(60))
                .config()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut events = client.subscribe_circuit_events();

    for _ in 0..20 {
        let response = client.get("/events").send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "every call ends on the healthy instance"
        );
    }
    assert_eq!(
        received(&failing).await,
        4,
        "the failing instance stops getting traffic"
    );
    assert!(received(&healthy).await >= 20);
    assert_eq!(
        client.circuit_state(&failing.uri()),
        Some(CircuitState::Open)
    );
    assert_eq!(
        client.circuit_state(&healthy.uri()),
        Some(CircuitState::Closed)
    );
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.name(), format!("events/{}", failing.uri()));
}

#[tokio::test]
async fn the_total_timeout_bounds_all_attempts_and_the_budget_sent_shrinks() {
    let upstream = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("slow")
        .base_url(upstream.uri())
        .timeout(Duration::from_millis(600))
        .total_timeout(Duration::from_secs(1))
        .retry(constant_retry(Duration::from_millis(10), 5))
        .build()
        .unwrap();

    let started = Instant::now();
    let err = client.get("/slow").send().await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.status(), 504, "{err:?}");
    assert!(
        took >= Duration::from_millis(990),
        "gave up early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "the total timeout did not hold: {took:?}"
    );

    let budgets: Vec<u64> = upstream
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers["x-request-timeout-ms"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(budgets.len(), 2, "{budgets:?}");
    assert_eq!(budgets[0], 600);
    // what was left of the total after the first attempt's 600 ms (and a 10 ms backoff)
    assert!(budgets[1] <= 390 && budgets[1] > 0, "{budgets:?}");
}

#[tokio::test]
async fn a_call_inside_a_handlers_deadline_offers_what_is_left() {
    let upstream = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("x")
        .base_url(upstream.uri())
        .build()
        .unwrap();
    let deadline = forten_core::deadline::Deadline::after(Duration::from_millis(1500));
    deadline.scope(client.get("/x").send()).await.unwrap();
    let sent: u64 = upstream.received_requests().await.unwrap()[0].headers["x-request-timeout-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent <= 1500 && sent > 1000, "{sent}");
}

#[tokio::test]
async fn correlation_trace_context_and_the_service_token_reach_the_upstream() {
    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let key = SigningKey::hs256(b"a shared secret of 32 bytes or more!").unwrap();
    let keys = KeySet::new([key.verifying_key().unwrap()]);
    let auth = ServiceAuth::builder("api-gateway")
        .signing_key(key)
        .build()
        .unwrap();
    let client = ServiceClient::builder("events-service")
        .base_url(upstream.uri())
        .service_auth(auth)
        .build()
        .unwrap();

    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let ctx = CorrelationContext::from_values(Some("order-42"), Some(incoming), Some("vendor=x"));
    ctx.scope(client.get("/events").send()).await.unwrap();

    let request = &upstream.received_requests().await.unwrap()[0];
    assert_eq!(request.headers["x-correlation-id"], "order-42");
    let sent = TraceParent::parse(request.headers["traceparent"].to_str().unwrap()).unwrap();
    let parent = TraceParent::parse(incoming).unwrap();
    assert_eq!(sent.trace_id(), parent.trace_id());
    assert_ne!(
        sent.parent_id(),
        parent.parent_id(),
        "a fresh parent-id per hop"
    );
    assert_eq!(sent.flags(), parent.flags());
    assert_eq!(request.headers["tracestate"], "vendor=x");

    let bearer = request.headers["authorization"].to_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").unwrap();
    let events_side = ServiceAuthLayer::builder("events-service", keys.clone())
        .allow_callers(["api-gateway"])
        .build()
        .unwrap();
    assert_eq!(events_side.verify(token).unwrap().name, "api-gateway");
    let other_side = ServiceAuthLayer::builder("billing-service", keys)
        .allow_callers(["api-gateway"])
        .build()
        .unwrap();
    assert!(
        other_side.verify(token).is_err(),
        "the audience is the target service"
    );

    // outside any context a new one is started
    client.get("/events").send().await.unwrap();
    let request = &upstream.received_requests().await.unwrap()[1];
    assert!(request.headers.contains_key("x-correlation-id"));
    assert!(TraceParent::parse(request.headers["traceparent"].to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn the_stale_cache_serves_during_an_outage_and_stops_after_its_ttl() {
    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[1,2,3]"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let ttl = Duration::from_secs(1);
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(no_retry())
        .circuit_breaker(
            CircuitBreaker::builder("events")
                .count_window(2)
                .minimum_calls(2)
                .wait_duration(Duration::from_secs(60))
                .config()
                .unwrap(),
        )
        .fallback(Fallback::stale_cache(ttl))
        .build()
        .unwrap();
    let fresh = client.get("/events").send().await.unwrap();
    // the copy was stored before `send` returned: it expires by `stored + ttl`
    let stored = Instant::now();
    assert_eq!(fresh.body(), "[1,2,3]");
    assert!(!fresh.headers().contains_key("warning"));

    // the upstream answers 503: the stale copy is served, marked
    let stale = client.get("/events").send().await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.body(), "[1,2,3]");
    assert_eq!(stale.headers()["warning"], STALE_WARNING);
    assert_eq!(received(&upstream).await, 2);
    // now the breaker is open (2 calls, 50 % failed): still served, without a request
    assert_eq!(
        client.circuit_state(&upstream.uri()),
        Some(CircuitState::Open)
    );
    let stale = client.get("/events").send().await.unwrap();
    assert_eq!(stale.body(), "[1,2,3]");
    assert_eq!(received(&upstream).await, 2);
    // another path has nothing cached: the circuit-open error comes through
    let err = client.get("/other").send().await.unwrap_err();
    assert_eq!(err.status(), 503);

    // after the ttl nothing is served any more
    tokio::time::sleep(
        (stored + ttl + Duration::from_millis(20)).saturating_duration_since(Instant::now()),
    )
    .await;
    let err = client.get("/events").send().await.unwrap_err();
    assert!(matches!(
        err,
        ClientError::Resilience(forten_core::Error::CircuitOpen { .. })
    ));
}

#[tokio::test]
async fn a_fallback_closure_answers_failed_calls() {
    let upstream = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .retry(no_retry())
        .fallback(Fallback::from_fn(|ctx| {
            assert_eq!(ctx.service(), "events");
            (ctx.method() == http::Method::GET
                && ctx.path() == "/events"
                && ctx.response().is_some_and(|r| r.status() == 502))
            .then(|| http::Response::new(bytes::Bytes::from_static(b"[]")))
        }))
        .build()
        .unwrap();
    let answered = client.get("/events?page=2").send().await.unwrap();
    assert_eq!(answered.body(), "[]");
    let passed = client.post("/events").send().await.unwrap();
    assert_eq!(passed.status(), 502);
}

#[tokio::test]
async fn calls_run_in_spawned_tasks_and_the_events_stream_sees_rejections() {
    let upstream = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("x")
        .base_url(upstream.uri())
        .build()
        .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/x").send().await.map(|r| r.status()) })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap().unwrap(), 200);
    }
    let instance = client.instances().remove(0);
    client
        .circuit_breakers()
        .get_or_create(&instance.as_str().into())
        .force_open();
    let mut events = client.subscribe_circuit_events();
    assert!(client.get("/x").send().await.is_err());
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        event,
        CircuitEvent::Rejected {
            state: CircuitState::ForcedOpen,
            ..
        }
    ));
    eventually("the upstream saw exactly the 8 calls", || async {
        received(&upstream).await == 8
    })
    .await;
}

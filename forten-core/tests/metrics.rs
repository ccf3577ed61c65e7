//! Each forten-core metric moves, with its labels, when its behaviour happens
//! (a local `DebuggingRecorder` per test: tests run on their own threads).
//! A snapshot drains the recorder: counters read as the change since the
//! last snapshot, gauges as the value set since then.
#![cfg(feature = "metrics")]
#![allow(missing_docs)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use forten_core::backoff::Constant;
use forten_core::circuit::{CircuitBreaker, CircuitState};
use forten_core::idempotency::{IdempotencyLayer, MemoryStore};
use forten_core::metrics::{self as names, ServerMetricsLayer};
use forten_core::ratelimit::{GovernorBackend, KeyExtractor, RateLimitLayer, RateLimitPolicy};
use forten_core::retry::{RetryBudget, RetryConfig, RetryLayer};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics::{SharedString, Unit};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt, service_fn};

type Snapshot = Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>;

fn take(snap: &Snapshotter) -> Snapshot {
    snap.snapshot().into_vec()
}

/// The value of metric `name` whose labels include every pair of `labels`.
fn value<'s>(snap: &'s Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<&'s DebugValue> {
    snap.iter()
        .find(|(key, ..)| {
            let key = key.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| value)
}

fn counter(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snap, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

/// A gauge holding a whole number (the breaker state codes).
fn gauge(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> i64 {
    match value(snap, name, labels) {
        Some(DebugValue::Gauge(v)) => v.into_inner() as i64,
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

fn histogram_len(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> usize {
    match value(snap, name, labels) {
        Some(DebugValue::Histogram(v)) => v.len(),
        None => 0,
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

fn answering(
    status: StatusCode,
) -> impl tower::Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_req: Request<()>| async move {
        let mut response = Response::new(());
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn breaker_state_transitions_and_rejections() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let breaker = CircuitBreaker::builder("users")
        .count_window(4)
        .minimum_calls(4)
        .wait_duration(Duration::from_secs(10))
        .half_open_permits(1)
        .build()
        .unwrap();
    let b = [("breaker", "users")];
    let snap = take(&snapshotter);
    assert_eq!(
        gauge(&snap, names::CIRCUIT_STATE, &b),
        0,
        "closed when built"
    );

    let failing = breaker.layer().layer(answering(StatusCode::BAD_GATEWAY));
    for _ in 0..4 {
        failing.clone().oneshot(Request::new(())).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let snap = take(&snapshotter);
    let opened = [("breaker", "users"), ("from", "closed"), ("to", "open")];
    assert_eq!(counter(&snap, names::CIRCUIT_TRANSITIONS, &opened), 1);
    assert_eq!(gauge(&snap, names::CIRCUIT_STATE, &b), 1);
    assert_eq!(counter(&snap, names::CIRCUIT_REJECTED, &b), 0);

    for _ in 0..3 {
        failing.clone().oneshot(Request::new(())).await.unwrap_err();
    }
    let snap = take(&snapshotter);
    assert_eq!(counter(&snap, names::CIRCUIT_REJECTED, &b), 3);

    tokio::time::advance(Duration::from_secs(10)).await;
    let healthy = breaker.layer().layer(answering(StatusCode::OK));
    healthy.oneshot(Request::new(())).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    let snap = take(&snapshotter);
    let probing = [("breaker", "users"), ("from", "open"), ("to", "half_open")];
    let closed = [
        ("breaker", "users"),
        ("from", "half_open"),
        ("to", "closed"),
    ];
    assert_eq!(counter(&snap, names::CIRCUIT_TRANSITIONS, &probing), 1);
    assert_eq!(counter(&snap, names::CIRCUIT_TRANSITIONS, &closed), 1);
    assert_eq!(gauge(&snap, names::CIRCUIT_STATE, &b), 0);

    breaker.force_open();
    let snap = take(&snapshotter);
    assert_eq!(gauge(&snap, names::CIRCUIT_STATE, &b), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_count_each_retryable_attempt_by_what_followed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let config = RetryConfig::builder()
        .name("users")
        .backoff(Constant::new(Duration::from_millis(10), 2).unwrap())
        .no_budget()
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(answering(StatusCode::SERVICE_UNAVAILABLE));
    let response = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), 503);
    let snap = take(&snapshotter);
    let of = |outcome| [("service", "users"), ("outcome", outcome)];
    assert_eq!(counter(&snap, names::RETRY_ATTEMPTS, &of("retried")), 2);
    assert_eq!(
        counter(&snap, names::RETRY_ATTEMPTS, &of("attempts_exhausted")),
        1
    );
    assert_eq!(counter(&snap, names::RETRY_BUDGET_EXHAUSTED, &[]), 0);

    // a success at once is not an attempt worth counting
    let ok = RetryLayer::new(RetryConfig::default()).layer(answering(StatusCode::OK));
    ok.oneshot(Request::new(())).await.unwrap();
    let snap = take(&snapshotter);
    let unnamed = [("service", "default")];
    assert_eq!(counter(&snap, names::RETRY_ATTEMPTS, &unnamed), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_empty_budget_is_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    // no retries allowed at all: ratio 0, nothing per second
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .name("events")
        .backoff(Constant::new(Duration::from_millis(10), 3).unwrap())
        .budget(budget)
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(answering(StatusCode::SERVICE_UNAVAILABLE));
    for _ in 0..2 {
        svc.clone().oneshot(Request::new(())).await.unwrap();
    }
    let snap = take(&snapshotter);
    let s = [("service", "events")];
    assert_eq!(counter(&snap, names::RETRY_BUDGET_EXHAUSTED, &s), 2);
    let exhausted = [("service", "events"), ("outcome", "budget_exhausted")];
    assert_eq!(counter(&snap, names::RETRY_ATTEMPTS, &exhausted), 2);
    let retried = [("service", "events"), ("outcome", "retried")];
    assert_eq!(counter(&snap, names::RETRY_ATTEMPTS, &retried), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rate_limited_requests_are_counted_by_policy() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let policy = RateLimitPolicy::new("api", 2, Duration::from_secs(60)).unwrap();
    let svc = RateLimitLayer::keyed(GovernorBackend::new(policy), KeyExtractor::global())
        .layer(answering(StatusCode::OK));
    let mut refused = 0;
    for _ in 0..5 {
        if svc
            .clone()
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .status()
            == 429
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 3);
    let snap = take(&snapshotter);
    assert_eq!(counter(&snap, names::RATE_LIMITED, &[("policy", "api")]), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn idempotent_replays_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let handler = service_fn(|_req: Request<_>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"order"))))
    });
    let svc = IdempotencyLayer::new(MemoryStore::new()).layer(handler);
    let order = || {
        Request::post("/orders")
            .header("idempotency-key", "\"order-7\"")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    svc.clone().oneshot(order()).await.unwrap();
    let snap = take(&snapshotter);
    assert_eq!(counter(&snap, names::IDEMPOTENCY_REPLAYS, &[]), 0);
    let again = svc.clone().oneshot(order()).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let snap = take(&snapshotter);
    assert_eq!(counter(&snap, names::IDEMPOTENCY_REPLAYS, &[]), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn server_requests_are_counted_and_timed_by_route_and_status() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let handler = service_fn(|req: Request<()>| async move {
        let status = if req.uri().path().starts_with("/users/") {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    });
    // a route function that knows one template; everything else is unmatched
    let svc = ServerMetricsLayer::new()
        .route(|parts| {
            parts
                .uri
                .path()
                .starts_with("/users/")
                .then(|| "/users/{id}".into())
        })
        .layer(handler);
    for path in ["/users/1", "/users/2", "/users/3", "/nope"] {
        svc.clone()
            .oneshot(Request::get(path).body(()).unwrap())
            .await
            .unwrap();
    }
    let snap = take(&snapshotter);
    let users = [("route", "/users/{id}"), ("status", "200")];
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(counter(&snap, names::SERVER_REQUESTS, &users), 3);
    assert_eq!(counter(&snap, names::SERVER_REQUESTS, &unmatched), 1);
    assert_eq!(
        histogram_len(&snap, names::SERVER_REQUEST_DURATION, &users),
        3
    );
    assert_eq!(
        histogram_len(&snap, names::SERVER_REQUEST_DURATION, &unmatched),
        1
    );
    // no raw path ever becomes a label
    let raw = [("route", "/users/1")];
    assert_eq!(counter(&snap, names::SERVER_REQUESTS, &raw), 0);
}

//! Deterministic state-machine suite of the circuit breaker, on paused time.
#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use forten_core::circuit::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitEvent, CircuitState, ConfigError,
    KeyedCircuitBreakerLayer,
};
use forten_core::{BoxError, Error};
use http::Response;
use tokio::sync::oneshot;
use tokio::time::{advance, sleep};
use tokio_stream::StreamExt;
use tower::{Layer, Service, ServiceExt, service_fn};

/// What the fake upstream does with a request.
#[derive(Debug)]
enum Req {
    Status(u16),
    Fail,
    Slow(Duration),
    Gate(oneshot::Receiver<u16>),
}

type Fut = Pin<Box<dyn Future<Output = Result<Response<()>, BoxError>> + Send>>;

fn response(status: u16) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

fn upstream() -> impl Service<Req, Response = Response<()>, Error = BoxError, Future = Fut> + Clone
{
    service_fn(|req: Req| -> Fut {
        Box::pin(async move {
            match req {
                Req::Status(s) => Ok(response(s)),
                Req::Fail => Err("connection refused".into()),
                Req::Slow(d) => {
                    sleep(d).await;
                    Ok(response(200))
                }
                Req::Gate(rx) => Ok(response(rx.await?)),
            }
        })
    })
}

type Svc = forten_core::circuit::CircuitBreakerService<
    Box<dyn CloneSvc>,
    forten_core::circuit::HttpClassifier,
>;

trait CloneSvc:
    Service<Req, Response = Response<()>, Error = BoxError, Future = Fut> + Send + Sync
{
    fn clone_box(&self) -> Box<dyn CloneSvc>;
}
impl<T> CloneSvc for T
where
    T: Service<Req, Response = Response<()>, Error = BoxError, Future = Fut>
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn clone_box(&self) -> Box<dyn CloneSvc> {
        Box::new(self.clone())
    }
}
impl Clone for Box<dyn CloneSvc> {
    fn clone(&self) -> Self {
        self.as_ref().clone_box()
    }
}

fn setup(b: CircuitBreakerBuilder) -> (CircuitBreaker, Svc) {
    let breaker = b.build().unwrap();
    let inner: Box<dyn CloneSvc> = Box::new(upstream());
    let svc = breaker.layer().layer(inner);
    (breaker, svc)
}

async fn send(svc: &Svc, req: Req) -> Result<u16, BoxError> {
    svc.clone().oneshot(req).await.map(|r| r.status().as_u16())
}

/// The `retry_after` of a CircuitOpen rejection, or panic.
fn open_for(result: Result<u16, BoxError>) -> Duration {
    let err = result.expect_err("expected a rejection");
    match Error::find(err.as_ref()) {
        Some(Error::CircuitOpen { retry_after, .. }) => *retry_after,
        other => panic!("expected CircuitOpen, got {other:?} ({err})"),
    }
}

fn base() -> CircuitBreakerBuilder {
    CircuitBreaker::builder("upstream")
        .count_window(10)
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .wait_duration(Duration::from_secs(10))
        .half_open_permits(2)
}

#[tokio::test(start_paused = true)]
async fn opens_when_the_failure_rate_reaches_the_threshold() {
    let (breaker, svc) = setup(base());
    assert_eq!(send(&svc, Req::Status(200)).await.unwrap(), 200);
    assert_eq!(send(&svc, Req::Status(404)).await.unwrap(), 404); // 4xx: success
    assert!(send(&svc, Req::Fail).await.is_err());
    assert_eq!(breaker.state(), CircuitState::Closed, "3 calls < minimum 4");
    assert_eq!(send(&svc, Req::Status(503)).await.unwrap(), 503);
    // 2 failures of 4 = 50 %
    assert_eq!(breaker.state(), CircuitState::Open);
    let m = breaker.metrics();
    assert_eq!(m.consecutive_openings, 1);
    assert_eq!(m.time_left_open, Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_the_threshold_or_the_minimum() {
    let (breaker, svc) = setup(base().minimum_calls(6));
    for req in [Req::Fail, Req::Fail, Req::Fail, Req::Fail, Req::Fail] {
        let _ = send(&svc, req).await;
    }
    assert_eq!(breaker.state(), CircuitState::Closed, "5 calls < minimum 6");
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (5, 5));
    assert!((m.failure_rate - 1.0).abs() < f64::EPSILON);
    // The success that brings the window to the minimum is the one that trips it.
    send(&svc, Req::Status(200)).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);

    let (breaker, svc) = setup(base());
    for i in 0..40 {
        let req = if i % 3 == 2 {
            Req::Fail
        } else {
            Req::Status(200)
        };
        let _ = send(&svc, req).await;
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "a third failing stays below 50 %"
    );
}

#[tokio::test(start_paused = true)]
async fn the_window_forgets_calls_older_than_its_size() {
    let (breaker, svc) = setup(base().count_window(4));
    let _ = send(&svc, Req::Fail).await;
    for _ in 0..4 {
        send(&svc, Req::Status(200)).await.unwrap();
    }
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (4, 0));
    let _ = send(&svc, Req::Fail).await;
    assert_eq!(breaker.state(), CircuitState::Closed, "1 of the last 4");
    let _ = send(&svc, Req::Fail).await;
    assert_eq!(breaker.state(), CircuitState::Open, "2 of the last 4");
}

#[tokio::test(start_paused = true)]
async fn rejects_while_open_with_the_time_left() {
    let (breaker, svc) = setup(base());
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    assert_eq!(
        open_for(send(&svc, Req::Status(200)).await),
        Duration::from_secs(10)
    );
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        open_for(send(&svc, Req::Status(200)).await),
        Duration::from_secs(6)
    );
    let m = breaker.metrics();
    assert_eq!(m.rejected, 2);
    assert_eq!(m.time_left_open, Some(Duration::from_secs(6)));
    // The rejection maps to 503 + Retry-After.
    let err = send(&svc, Req::Status(200)).await.unwrap_err();
    let response = Error::render(err.as_ref(), None);
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "6");
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_its_permits_then_closes() {
    let (breaker, svc) = setup(base().half_open_permits(3));
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "moves on the next call"
    );

    let mut gates = Vec::new();
    let mut probes = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = oneshot::channel();
        gates.push(tx);
        let svc = svc.clone();
        probes.push(tokio::spawn(svc.oneshot(Req::Gate(rx))));
    }
    tokio::task::yield_now().await;
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    // every permit is taken: the fourth call is rejected
    let retry = open_for(send(&svc, Req::Status(200)).await);
    assert_eq!(retry, Duration::from_secs(1));
    for gate in gates {
        gate.send(200).unwrap();
    }
    for p in probes {
        assert_eq!(p.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.consecutive_openings), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_a_growing_wait() {
    let (breaker, svc) = setup(
        base()
            .half_open_permits(1)
            .wait_growth(2.0, Duration::from_secs(30)),
    );
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    let mut expected = Vec::new();
    for wait in [10, 20, 30, 30] {
        expected.push(wait);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.metrics().time_left_open,
            Some(Duration::from_secs(wait))
        );
        advance(Duration::from_millis(wait * 1000 - 1)).await;
        open_for(send(&svc, Req::Status(200)).await);
        advance(Duration::from_millis(1)).await;
        let _ = send(&svc, Req::Status(500)).await; // the probe fails
    }
    assert_eq!(breaker.metrics().consecutive_openings, 5);
    // a successful probe closes and resets the growth
    advance(Duration::from_secs(30)).await;
    send(&svc, Req::Status(200)).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    assert_eq!(
        breaker.metrics().time_left_open,
        Some(Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn probe_rates_decide_with_several_permits() {
    let (breaker, svc) = setup(base().half_open_permits(4).failure_rate_threshold(0.5));
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    advance(Duration::from_secs(10)).await;
    // 1 failure of 4 probes: 25 % < 50 %: closes
    for req in [Req::Fail, Req::Status(200), Req::Status(200)] {
        let _ = send(&svc, req).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
    }
    send(&svc, Req::Status(200)).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);

    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    advance(Duration::from_secs(10)).await;
    // 2 of 4: 50 %: re-opens
    for req in [Req::Fail, Req::Status(200), Req::Status(200), Req::Fail] {
        let _ = send(&svc, req).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_permit_back() {
    let (breaker, svc) = setup(base().half_open_permits(1));
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    advance(Duration::from_secs(10)).await;
    let (tx, rx) = oneshot::channel::<u16>();
    let mut probe = svc.clone();
    let fut = probe.call(Req::Gate(rx));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    open_for(send(&svc, Req::Status(200)).await);
    drop(fut);
    drop(tx);
    // the permit is back: the next call probes, and closes the breaker
    send(&svc, Req::Status(200)).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn forced_open_and_disabled_hold_until_reset() {
    let (breaker, svc) = setup(base());
    breaker.force_open();
    assert_eq!(breaker.state(), CircuitState::ForcedOpen);
    advance(Duration::from_secs(3600)).await;
    assert_eq!(
        open_for(send(&svc, Req::Status(200)).await),
        Duration::from_secs(10)
    );
    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
    send(&svc, Req::Status(200)).await.unwrap();

    breaker.disable();
    for _ in 0..20 {
        let _ = send(&svc, Req::Fail).await;
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Disabled,
        "disabled never trips"
    );
    assert_eq!(breaker.metrics().calls, 1, "disabled records nothing");
    breaker.reset();
    assert_eq!(breaker.metrics().calls, 0);
    // a closed breaker can be forced open from any state, and reset from Open too
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().consecutive_openings, 0);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_breaker() {
    let (breaker, svc) = setup(
        base()
            .slow_call_duration(Duration::from_secs(1))
            .slow_call_rate_threshold(0.5),
    );
    send(&svc, Req::Slow(Duration::from_millis(500)))
        .await
        .unwrap();
    send(&svc, Req::Slow(Duration::from_millis(1500)))
        .await
        .unwrap();
    send(&svc, Req::Status(200)).await.unwrap();
    assert_eq!(breaker.metrics().slow_calls, 1);
    send(&svc, Req::Slow(Duration::from_secs(2))).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open, "2 slow of 4");
}

#[tokio::test(start_paused = true)]
async fn the_time_window_forgets_old_seconds() {
    let (breaker, svc) = setup(base().time_window(5).minimum_calls(3));
    let _ = send(&svc, Req::Fail).await;
    let _ = send(&svc, Req::Fail).await;
    advance(Duration::from_secs(6)).await;
    send(&svc, Req::Status(200)).await.unwrap();
    send(&svc, Req::Status(200)).await.unwrap();
    let m = breaker.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (2, 0),
        "the failures left the window"
    );
    let _ = send(&svc, Req::Fail).await;
    assert_eq!(breaker.state(), CircuitState::Closed, "1 of 3");
    advance(Duration::from_secs(2)).await;
    let _ = send(&svc, Req::Fail).await;
    assert_eq!(breaker.state(), CircuitState::Open, "2 of 4 within 5 s");
}

#[tokio::test(start_paused = true)]
async fn an_outcome_from_before_a_reset_is_not_recorded() {
    let (breaker, svc) = setup(base());
    let (tx, rx) = oneshot::channel();
    let mut slow = svc.clone();
    let pending = tokio::spawn(slow.call(Req::Gate(rx)));
    breaker.reset();
    tx.send(500).unwrap();
    assert_eq!(pending.await.unwrap().unwrap().status(), 500);
    assert_eq!(breaker.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn events_arrive_in_order() {
    use CircuitState::{Closed, Disabled, ForcedOpen, HalfOpen, Open};
    let (breaker, svc) = setup(base().half_open_permits(1));
    let mut events = breaker.subscribe();
    for _ in 0..4 {
        let _ = send(&svc, Req::Fail).await;
    }
    let _ = send(&svc, Req::Status(200)).await;
    advance(Duration::from_secs(10)).await;
    send(&svc, Req::Status(200)).await.unwrap();
    breaker.force_open();
    breaker.disable();
    breaker.reset();
    drop(svc);
    let name: Arc<str> = "upstream".into();
    let t = |from, to| CircuitEvent::Transition {
        name: name.clone(),
        from,
        to,
    };
    let expected = vec![
        t(Closed, Open),
        CircuitEvent::Rejected {
            name: name.clone(),
            state: Open,
            retry_after: Duration::from_secs(10),
        },
        t(Open, HalfOpen),
        t(HalfOpen, Closed),
        t(Closed, ForcedOpen),
        t(ForcedOpen, Disabled),
        t(Disabled, Closed),
    ];
    let mut seen = Vec::new();
    for _ in 0..expected.len() {
        seen.push(
            tokio::time::timeout(Duration::from_secs(1), events.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(seen, expected);
    assert_eq!(events.lagged(), 0);
    drop(breaker);
    stream_ends(&mut events, "the stream ends with the breaker").await;
}

#[test]
fn invalid_configs_say_what_to_change() {
    let b = || CircuitBreaker::builder("x");
    let cases: Vec<(CircuitBreakerBuilder, ConfigError)> = vec![
        (CircuitBreaker::builder(""), ConfigError::EmptyName),
        (b().count_window(0), ConfigError::EmptyWindow),
        (b().time_window(0), ConfigError::EmptyWindow),
        (
            b().count_window(2_000_000),
            ConfigError::WindowTooLarge {
                kind: "count",
                size: 2_000_000,
                max: 1 << 20,
            },
        ),
        (
            b().failure_rate_threshold(0.0),
            ConfigError::ThresholdOutOfRange {
                which: "failure_rate_threshold",
                value: 0.0,
            },
        ),
        (
            b().slow_call_rate_threshold(1.5),
            ConfigError::ThresholdOutOfRange {
                which: "slow_call_rate_threshold",
                value: 1.5,
            },
        ),
        (b().minimum_calls(0), ConfigError::MinimumCallsZero),
        (
            b().count_window(10).minimum_calls(11),
            ConfigError::MinimumCallsAboveWindow {
                minimum: 11,
                window: 10,
            },
        ),
        (b().half_open_permits(0), ConfigError::HalfOpenPermitsZero),
        (
            b().wait_growth(0.5, Duration::from_secs(60)),
            ConfigError::InvalidWaitGrowth { value: 0.5 },
        ),
        (
            b().wait_duration(Duration::from_secs(10))
                .wait_growth(2.0, Duration::from_secs(5)),
            ConfigError::MaxWaitBelowWait {
                wait: Duration::from_secs(10),
                max: Duration::from_secs(5),
            },
        ),
        (
            b().slow_call_duration(Duration::ZERO),
            ConfigError::SlowCallDurationZero,
        ),
        (b().event_capacity(0), ConfigError::EventCapacityZero),
    ];
    for (builder, expected) in cases {
        assert_eq!(builder.build().unwrap_err(), expected);
        assert!(!expected.to_string().is_empty());
    }
    // a long wait without growth is fine: the cap follows the wait
    b().wait_duration(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert!(
        b().time_window(10).minimum_calls(1000).build().is_ok(),
        "a time window has no call limit"
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_independent_lazy_and_evicted_when_idle() {
    let config = base()
        .count_window(2)
        .minimum_calls(2)
        .wait_duration(Duration::from_hours(1))
        .config()
        .unwrap();
    let layer = KeyedCircuitBreakerLayer::new(config, |req: &(String, u16)| req.0.clone())
        .classifier(forten_core::circuit::ErrorClassifier);
    let breakers = layer.breakers().clone();
    let mut events = breakers.subscribe();
    let svc = layer.layer(service_fn(|req: (String, u16)| async move {
        if req.1 >= 500 {
            Err::<u16, BoxError>("down".into())
        } else {
            Ok(req.1)
        }
    }));
    assert!(breakers.is_empty(), "created lazily");
    for _ in 0..2 {
        let _ = svc.clone().oneshot(("a".into(), 500)).await;
        svc.clone().oneshot(("b".into(), 200)).await.unwrap();
    }
    assert_eq!(breakers.len(), 2);
    assert_eq!(breakers.state(&"a".into()), Some(CircuitState::Open));
    assert_eq!(breakers.state(&"b".into()), Some(CircuitState::Closed));
    assert_eq!(breakers.state(&"c".into()), None);
    let err = svc.clone().oneshot(("a".into(), 200)).await.unwrap_err();
    assert!(
        matches!(Error::find(err.as_ref()), Some(Error::CircuitOpen { name, .. }) if &**name == "upstream/a")
    );
    svc.clone().oneshot(("b".into(), 200)).await.unwrap();
    let first = events.next().await.unwrap();
    assert_eq!(first.name(), "upstream/a");

    let b = breakers.breaker(&"b".into()).unwrap();
    assert_eq!(b.name(), "upstream/b");
    // idle for the timeout: the closed breaker goes, the open one stays
    advance(Duration::from_secs(301)).await;
    assert_eq!(breakers.evict_idle(), 1);
    assert_eq!(breakers.keys(), vec!["a".to_owned()]);
    // once its wait is over, the open one may go too
    advance(Duration::from_hours(1)).await;
    assert_eq!(breakers.evict_idle(), 1);
    assert!(breakers.is_empty());
    // a new key triggers the sweep by itself
    let breakers2 = forten_core::circuit::KeyedCircuitBreakers::<String>::with_idle_timeout(
        base().config().unwrap(),
        Duration::from_secs(10),
    );
    breakers2.get_or_create(&"x".into());
    advance(Duration::from_secs(11)).await;
    breakers2.get_or_create(&"y".into());
    assert_eq!(breakers2.keys(), vec!["y".to_owned()]);
}

#[tokio::test(start_paused = true)]
async fn the_event_stream_ends_with_the_last_handle_even_with_a_call_in_flight() {
    let (breaker, svc) = setup(base());
    let mut events = breaker.subscribe();
    // a finished call first: its thread keeps a spare reference to the breaker's state
    assert_eq!(send(&svc, Req::Status(200)).await.unwrap(), 200);
    let (gate, rx) = oneshot::channel();
    let mut caller = svc.clone();
    caller.ready().await.unwrap();
    let in_flight = caller.call(Req::Gate(rx));
    drop((caller, svc, breaker));
    stream_ends(
        &mut events,
        "the stream ends when the last handle goes, not when the last call does",
    )
    .await;
    gate.send(200).unwrap();
    assert_eq!(
        in_flight.await.unwrap().status(),
        200,
        "the call still finishes"
    );
}

/// Asserts that `events` ends (within a second), with `why` if it does not.
async fn stream_ends(events: &mut forten_core::circuit::CircuitEvents, why: &str) {
    let next = tokio::time::timeout(Duration::from_secs(1), events.next())
        .await
        .expect("the stream neither ended nor yielded");
    assert!(next.is_none(), "{why}");
}

#[tokio::test(start_paused = true)]
async fn run_records_a_future_and_refuses_without_running_it_while_open() {
    use forten_core::circuit::HttpClassifier;
    let breaker = base().build().unwrap();
    let call = |status: u16| {
        let breaker = breaker.clone();
        async move {
            breaker
                .run(HttpClassifier, || async move {
                    Ok::<_, BoxError>(response(status))
                })
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(call(200).await.unwrap(), 200);
    assert_eq!(call(404).await.unwrap(), 404); // 4xx: success
    assert_eq!(call(503).await.unwrap(), 503);
    assert_eq!(breaker.state(), CircuitState::Closed, "3 calls < minimum 4");
    assert_eq!(call(500).await.unwrap(), 500);
    assert_eq!(breaker.state(), CircuitState::Open, "2 failures of 4");
    let ran = std::sync::atomic::AtomicBool::new(false);
    let refused = breaker
        .run(HttpClassifier, || {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, BoxError>(response(200)) }
        })
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(open_for(refused), Duration::from_secs(10));
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "not run while open"
    );
}

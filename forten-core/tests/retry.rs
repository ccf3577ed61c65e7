//! Behaviour of the retry layer on paused time.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use forten_core::backoff::{Constant, ExponentialBackoff, Jitter};
use forten_core::deadline::Deadline;
use forten_core::retry::{Action, Policy, RetryBudget, RetryConfig, RetryLayer};
use forten_core::{BoxError, Error};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[derive(Clone, Debug)]
enum Outcome {
    Status(u16),
    StatusWith(u16, &'static str, String),
    Io(io::ErrorKind),
    Timeout,
}

/// An upstream that answers from a script (repeating the last entry), records
/// when each call happened, and insists on `poll_ready` before every call.
#[derive(Clone)]
struct Upstream {
    script: Arc<Mutex<VecDeque<Outcome>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
    readies: Arc<AtomicU32>,
    ready: bool,
    // every other poll_ready answers Pending (and wakes at once)
    alternate: bool,
}

impl Upstream {
    fn new(script: impl IntoIterator<Item = Outcome>) -> Self {
        Upstream {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            calls: Arc::default(),
            readies: Arc::default(),
            ready: false,
            alternate: false,
        }
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl<B> Service<Request<B>> for Upstream {
    type Response = Response<()>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<()>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let n = self.readies.fetch_add(1, Ordering::SeqCst);
        if self.alternate && n % 2 == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        assert!(
            self.ready,
            "call without poll_ready on this service instance"
        );
        self.ready = false;
        self.calls.lock().unwrap().push(Instant::now());
        let mut script = self.script.lock().unwrap();
        let outcome = if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().unwrap()
        };
        let status = |code: u16| {
            let mut r = Response::new(());
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            r
        };
        std::future::ready(match outcome {
            Outcome::Status(code) => Ok(status(code)),
            Outcome::StatusWith(code, name, value) => {
                let mut r = status(code);
                r.headers_mut().insert(name, value.parse().unwrap());
                Ok(r)
            }
            Outcome::Io(kind) => Err(Box::new(io::Error::from(kind)) as BoxError),
            Outcome::Timeout => Err(Box::new(Error::Timeout { after: None }) as BoxError),
        })
    }
}

fn constant(ms: u64, retries: u32) -> RetryConfig {
    RetryConfig::builder()
        .backoff(Constant::new(Duration::from_millis(ms), retries).unwrap())
        .no_budget()
        .build()
        .unwrap()
}

fn get() -> Request<()> {
    Request::new(())
}

fn post() -> Request<()> {
    Request::builder().method(Method::POST).body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn exponential_delays_are_honoured() {
    let upstream = Upstream::new([
        Outcome::Status(503),
        Outcome::Status(503),
        Outcome::Status(502),
        Outcome::Status(200),
    ]);
    let backoff = ExponentialBackoff::builder()
        .base(Duration::from_millis(100))
        .factor(2.0)
        .max_delay(Duration::from_secs(1))
        .max_retries(5)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .backoff(backoff)
        .no_budget()
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(upstream.clone());
    let response = svc.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.gaps(), [100, 200, 400].map(Duration::from_millis));
}

#[tokio::test(start_paused = true)]
async fn retry_after_delta_seconds_sets_the_delay() {
    let upstream = Upstream::new([
        Outcome::StatusWith(503, "retry-after", "2".into()),
        Outcome::Status(200),
    ]);
    let config = RetryConfig::builder()
        .backoff(Constant::new(Duration::from_millis(10), 3).unwrap())
        .max_retry_after(Duration::from_secs(30))
        .no_budget()
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(upstream.clone());
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(upstream.gaps(), [Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_sets_the_delay() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let upstream = Upstream::new([
        Outcome::StatusWith(429, "retry-after", at),
        Outcome::Status(200),
    ]);
    let backoff = ExponentialBackoff::builder()
        .base(Duration::from_millis(10))
        .max_delay(Duration::from_secs(10))
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .backoff(backoff)
        .no_budget()
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(upstream.clone());
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
    // the date has one-second resolution: between 2 and 3 s from now
    let gap = upstream.gaps()[0];
    assert!(
        gap > Duration::from_secs(2) && gap <= Duration::from_secs(3),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_by_the_backoff_maximum() {
    let upstream = Upstream::new([
        Outcome::StatusWith(503, "retry-after", "3600".into()),
        Outcome::Status(200),
    ]);
    let svc = RetryLayer::new(constant(250, 3)).layer(upstream.clone());
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(upstream.gaps(), [Duration::from_millis(250)]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_retries() {
    let upstream = Upstream::new([Outcome::Status(503)]);
    let svc = RetryLayer::new(constant(400, 10)).layer(upstream.clone());
    let start = Instant::now();
    let response = Deadline::after(Duration::from_secs(1))
        .scope(svc.oneshot(get()))
        .await
        .unwrap();
    // attempts at 0, 400 and 800 ms; one at 1200 ms would be past the deadline
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.calls(), 3);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_in_the_request_extensions_stops_retries() {
    let upstream = Upstream::new([Outcome::Io(io::ErrorKind::ConnectionReset)]);
    let svc = RetryLayer::new(constant(300, 10)).layer(upstream.clone());
    let mut req = get();
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(700)));
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(upstream.calls(), 3);
    match Error::find(err.as_ref()) {
        Some(Error::RetriesExhausted { attempts, source }) => {
            assert_eq!(*attempts, 3);
            assert!(source.downcast_ref::<io::Error>().is_some());
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_amplification_under_an_outage() {
    let upstream = Upstream::new([Outcome::Status(503)]);
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .min_per_second(1)
        .window(Duration::from_secs(10))
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .backoff(Constant::new(Duration::from_millis(1), 3).unwrap())
        .budget(budget.clone())
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(upstream.clone());
    for _ in 0..200 {
        let response = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), 503);
    }
    // without a budget: 800 calls; with it: 200 requests + 20 % + the 10 s reserve
    let calls = upstream.calls();
    assert!(calls <= 200 + 40 + 10, "{calls} calls");
    assert!(calls >= 200 + 40, "{calls} calls");
    assert_eq!(budget.balance(), 0);

    // an empty budget returns the outcome at once, without waiting
    let start = Instant::now();
    let before = upstream.calls();
    let response = svc.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.calls(), before + 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_cannot_be_replayed_is_sent_once() {
    let upstream = Upstream::new([Outcome::Status(503), Outcome::Status(200)]);
    let svc = RetryLayer::new(constant(10, 3)).layer(upstream.clone());
    let body = http_body_util::Full::new(Bytes::from_static(b"stream")).boxed_unsync();
    let req = Request::builder().method(Method::PUT).body(body).unwrap();
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replayable_body_is_retried() {
    let upstream = Upstream::new([Outcome::Status(503), Outcome::Status(200)]);
    let svc = RetryLayer::new(constant(10, 3)).layer(upstream.clone());
    let body = http_body_util::Full::new(Bytes::from_static(b"payload"));
    let req = Request::builder().method(Method::PUT).body(body).unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_comes_before_every_attempt() {
    let upstream = Upstream::new([
        Outcome::Status(503),
        Outcome::Status(504),
        Outcome::Status(200),
    ]);
    let svc = RetryLayer::new(constant(10, 3)).layer(upstream.clone());
    // `Upstream::call` panics if its instance was not polled ready first
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(upstream.calls(), 3);
    assert_eq!(upstream.readies.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_service_to_be_ready() {
    let mut upstream = Upstream::new([
        Outcome::Status(503),
        Outcome::Status(503),
        Outcome::Status(200),
    ]);
    upstream.alternate = true;
    let svc = RetryLayer::new(constant(10, 3)).layer(upstream.clone());
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(upstream.calls(), 3);
    // each attempt: one Pending, then Ready
    assert_eq!(upstream.readies.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_but_post_with_an_idempotency_key_is() {
    let upstream = Upstream::new([Outcome::Status(503)]);
    let svc = RetryLayer::new(constant(10, 3)).layer(upstream.clone());
    assert_eq!(svc.clone().oneshot(post()).await.unwrap().status(), 503);
    assert_eq!(upstream.calls(), 1);

    let mut keyed = post();
    keyed
        .headers_mut()
        .insert("idempotency-key", "\"abc\"".parse().unwrap());
    assert_eq!(svc.oneshot(keyed).await.unwrap().status(), 503);
    assert_eq!(upstream.calls(), 1 + 4);
}

#[tokio::test(start_paused = true)]
async fn post_is_retried_only_when_the_connection_was_refused() {
    let refused = Upstream::new([
        Outcome::Io(io::ErrorKind::ConnectionRefused),
        Outcome::Status(201),
    ]);
    let svc = RetryLayer::new(constant(10, 3)).layer(refused.clone());
    assert_eq!(svc.oneshot(post()).await.unwrap().status(), 201);
    assert_eq!(refused.calls(), 2);

    let timed_out = Upstream::new([Outcome::Timeout, Outcome::Status(201)]);
    let svc = RetryLayer::new(constant(10, 3)).layer(timed_out.clone());
    let err = svc.oneshot(post()).await.unwrap_err();
    assert!(matches!(
        Error::find(err.as_ref()),
        Some(Error::Timeout { .. })
    ));
    assert_eq!(timed_out.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn exhausted_timeouts_map_to_504_with_the_attempt_count() {
    let upstream = Upstream::new([Outcome::Timeout]);
    let svc = RetryLayer::new(constant(10, 2)).layer(upstream.clone());
    let err = svc.oneshot(get()).await.unwrap_err();
    let found = Error::find(err.as_ref()).unwrap();
    assert!(
        matches!(found, Error::RetriesExhausted { attempts: 3, .. }),
        "{found:?}"
    );
    assert_eq!(found.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn other_client_errors_are_never_retried() {
    for code in [400, 401, 403, 404, 409, 422] {
        let upstream = Upstream::new([Outcome::Status(code), Outcome::Status(200)]);
        let svc = RetryLayer::new(constant(10, 3)).layer(upstream.clone());
        assert_eq!(svc.oneshot(get()).await.unwrap().status(), code);
        assert_eq!(upstream.calls(), 1, "{code}");
    }
    for code in [408, 429, 502, 503, 504] {
        let upstream = Upstream::new([Outcome::Status(code), Outcome::Status(200)]);
        let svc = RetryLayer::new(constant(10, 3)).layer(upstream.clone());
        assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
        assert_eq!(upstream.calls(), 2, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_last_retryable_response_is_returned_after_the_last_attempt() {
    let upstream = Upstream::new([Outcome::Status(502)]);
    let svc = RetryLayer::new(constant(10, 2)).layer(upstream.clone());
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 502);
    assert_eq!(upstream.calls(), 3);
}

/// A user policy over a non-HTTP service.
#[derive(Clone)]
struct RetryOddNumbers;

impl Policy<u32, u32> for RetryOddNumbers {
    fn clone_request(&self, req: &u32) -> Option<u32> {
        Some(*req)
    }

    fn classify(&self, _req: &u32, result: &Result<u32, BoxError>) -> Action {
        match result {
            Ok(n) if n % 2 == 1 => Action::RetryAfter(Duration::from_millis(5)),
            _ => Action::Return,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_generic_service_with_a_user_policy() {
    let counter = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn({
        let counter = counter.clone();
        move |req: u32| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Infallible>(req + n) }
        }
    });
    let svc = RetryLayer::with_policy(constant(100, 5), RetryOddNumbers).layer(svc);
    let start = Instant::now();
    // 1 + 0 odd, 1 + 1 even
    assert_eq!(svc.oneshot(1).await.unwrap(), 2);
    assert_eq!(counter.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn the_budget_refills_as_the_window_slides() {
    let budget = RetryBudget::builder()
        .ratio(0.5)
        .min_per_second(1)
        .window(Duration::from_secs(2))
        .build()
        .unwrap();
    // the reserve: 1/s over 2 s
    assert_eq!(budget.balance(), 2);
    for _ in 0..32 {
        budget.deposit();
    }
    assert_eq!(budget.balance(), 2 + 16);
    for _ in 0..18 {
        assert!(budget.try_withdraw());
    }
    assert!(!budget.try_withdraw());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!budget.try_withdraw());
    // two seconds on, the requests and the retries have both left the window
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(budget.balance(), 2);
}

#[test]
fn the_http_policy_splits_a_request_into_one_to_send_and_an_identical_copy() {
    #[derive(Clone, Debug, PartialEq)]
    struct Tag(u32);
    let mut req = Request::put("http://upstream:8080/events/7?draft=1")
        .version(http::Version::HTTP_2)
        .header("x-one", "1")
        .header("x-many", "a")
        .body(Bytes::from_static(b"{\"title\":\"x\"}"))
        .unwrap();
    req.headers_mut().append("x-many", "b".parse().unwrap());
    req.extensions_mut().insert(Tag(7));
    let policy = forten_core::retry::HttpPolicy;
    let (sent, copy) = Policy::<_, Response<()>>::split(&policy, req);
    let copy = copy.expect("a Bytes body replays");
    for r in [&sent, &copy] {
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri(), "http://upstream:8080/events/7?draft=1");
        assert_eq!(r.version(), http::Version::HTTP_2);
        assert_eq!(r.headers()["x-one"], "1");
        assert_eq!(r.headers().get_all("x-many").iter().count(), 2);
        assert_eq!(r.extensions().get::<Tag>(), Some(&Tag(7)));
        assert_eq!(r.body().as_ref(), b"{\"title\":\"x\"}");
    }

    // a body that cannot be replayed: the request goes out as it came, no copy
    let boxed = Request::get("/stream")
        .header("x-one", "1")
        .body(http_body_util::Full::new(Bytes::from_static(b"x")).boxed())
        .unwrap();
    let (sent, copy) = Policy::<_, Response<()>>::split(&policy, boxed);
    assert!(copy.is_none());
    assert_eq!(sent.uri(), "/stream");
    assert_eq!(sent.headers()["x-one"], "1");
}

/// An upstream that counts how often it is cloned.
struct Counted {
    inner: Upstream,
    clones: Arc<AtomicU32>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Counted {
            inner: self.inner.clone(),
            clones: Arc::clone(&self.clones),
        }
    }
}

impl<B> Service<Request<B>> for Counted {
    type Response = Response<()>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<()>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        <Upstream as Service<Request<B>>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}

/// One GET through `svc` itself (not a clone of it): its status.
async fn call_through(svc: &mut forten_core::retry::Retry<Counted>) -> StatusCode {
    let ready = ServiceExt::<Request<()>>::ready(svc).await.unwrap();
    ready.call(get()).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn a_first_success_clones_no_service_and_a_retried_request_one() {
    let upstream = Upstream::new([
        Outcome::Status(200),
        Outcome::Status(200),
        Outcome::Status(503),
        Outcome::Status(503),
        Outcome::Status(200),
    ]);
    let clones = Arc::new(AtomicU32::new(0));
    let mut svc = RetryLayer::new(constant(10, 3)).layer(Counted {
        inner: upstream.clone(),
        clones: Arc::clone(&clones),
    });
    // the layer keeps one clone to retry through
    let built = clones.load(Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(call_through(&mut svc).await, 200);
    }
    assert_eq!(
        clones.load(Ordering::SeqCst),
        built,
        "first successes clone nothing"
    );
    // two retries, through one clone made at the first of them
    assert_eq!(call_through(&mut svc).await, 200);
    assert_eq!(upstream.calls(), 5);
    assert_eq!(clones.load(Ordering::SeqCst), built + 1);
}

//! Deadlines across hops (DESIGN 4.2), on paused tokio time.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forten_core::deadline::{Deadline, DeadlineLayer, TimeoutLayer};
use forten_core::{BoxError, Error};
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};

fn timeout_error(e: &BoxError) -> bool {
    matches!(Error::find(e.as_ref()), Some(Error::Timeout { .. }))
}

#[tokio::test(start_paused = true)]
async fn server_takes_the_smaller_of_caller_budget_and_own_maximum() {
    let handler = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Deadline::current().expect("set").remaining()))
    });
    let svc = DeadlineLayer::new(Duration::from_secs(5)).layer(handler);
    let call = |headers: &[(&str, &str)]| {
        let mut b = Request::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        svc.clone().oneshot(b.body(()).unwrap())
    };
    let left = |r: Result<Response<Duration>, BoxError>| r.unwrap().into_body();
    assert_eq!(
        left(call(&[("x-request-timeout-ms", "1500")]).await),
        Duration::from_millis(1500)
    );
    assert_eq!(
        left(call(&[("x-request-timeout-ms", "60000")]).await),
        Duration::from_secs(5)
    );
    assert_eq!(
        left(call(&[]).await),
        Duration::from_secs(5),
        "no header: own maximum"
    );
    assert_eq!(
        left(call(&[("grpc-timeout", "200m")]).await),
        Duration::from_millis(200)
    );
    assert_eq!(
        left(call(&[("grpc-timeout", "1S"), ("x-request-timeout-ms", "700")]).await),
        Duration::from_millis(700),
        "both headers: the smaller"
    );
    assert_eq!(
        left(call(&[("x-request-timeout-ms", "soon")]).await),
        Duration::from_secs(5),
        "an unparseable header is ignored"
    );
}

#[tokio::test(start_paused = true)]
async fn server_drops_the_handler_and_answers_timeout_when_the_deadline_passes() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let handler = service_fn(move |_req: Request<()>| {
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(()))
        }
    });
    let svc = DeadlineLayer::new(Duration::from_secs(30)).layer(handler);
    let req = Request::builder()
        .header("x-request-timeout-ms", "250")
        .body(())
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(timeout_error(&err), "{err}");
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the handler's future was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_with_no_budget_never_runs_the_handler() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = service_fn(move |_req: Request<()>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let svc = DeadlineLayer::new(Duration::from_secs(30)).layer(handler);
    let req = Request::builder()
        .header("x-request-timeout-ms", "0")
        .body(())
        .unwrap();
    assert!(timeout_error(&svc.oneshot(req).await.unwrap_err()));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn client_fails_at_once_and_sends_nothing_when_the_deadline_passed() {
    let sent = Arc::new(AtomicUsize::new(0));
    let s = sent.clone();
    let upstream = service_fn(move |_req: Request<()>| {
        s.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let client = TimeoutLayer::new(Duration::from_secs(10)).layer(upstream);
    let deadline = Deadline::after(Duration::from_millis(100));
    tokio::time::advance(Duration::from_millis(150)).await;
    let err = deadline
        .scope(client.oneshot(Request::new(())))
        .await
        .unwrap_err();
    assert!(timeout_error(&err));
    assert_eq!(
        sent.load(Ordering::SeqCst),
        0,
        "an expired request is never sent"
    );
}

#[tokio::test(start_paused = true)]
async fn client_times_out_a_slow_upstream_with_its_own_timeout() {
    let upstream = service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(Response::new(()))
    });
    let client = TimeoutLayer::new(Duration::from_millis(300)).layer(upstream);
    let started = tokio::time::Instant::now();
    let err = client.oneshot(Request::new(())).await.unwrap_err();
    assert!(timeout_error(&err));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

/// The hops' error: a concrete type, because an async block whose output is
/// `Result<_, Box<dyn Error + Send + Sync>>` trips rust-lang/rust#64552
/// ("implementation of `From` is not general enough") inside a Send-checked
/// stack, with tower's own layers as with ours.
#[derive(Debug)]
struct HopError(BoxError);

impl std::fmt::Display for HopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HopError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

type Hop = tower::util::BoxCloneService<Request<()>, Response<()>, HopError>;

/// A server that records the budget it was offered, spends `spend`, then
/// calls `next` through `TimeoutLayer`.
fn hop(spend: Duration, next: Hop, budgets: Arc<Mutex<Vec<u64>>>) -> Hop {
    let svc = service_fn(move |req: Request<()>| {
        let offered = req.headers()["x-request-timeout-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        budgets.lock().unwrap().push(offered);
        let next = TimeoutLayer::new(Duration::from_secs(10)).layer(next.clone());
        async move {
            tokio::time::sleep(spend).await;
            next.oneshot(Request::new(())).await.map_err(HopError)
        }
    });
    Hop::new(
        DeadlineLayer::new(Duration::from_secs(30))
            .layer(svc)
            .map_err(HopError),
    )
}

/// gateway -> events -> notifications, each a server behind `DeadlineLayer`
/// that spends some time and then calls the next through `TimeoutLayer`.
#[tokio::test(start_paused = true)]
async fn a_deadline_shrinks_at_each_hop_and_an_expired_one_is_not_sent_on() {
    let budgets: Arc<Mutex<Vec<u64>>> = Arc::default();
    let reached_third = Arc::new(AtomicUsize::new(0));

    let b3 = budgets.clone();
    let r3 = reached_third.clone();
    let third =
        DeadlineLayer::new(Duration::from_secs(30)).layer(service_fn(move |req: Request<()>| {
            b3.lock().unwrap().push(
                req.headers()["x-request-timeout-ms"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
            r3.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(())) }
        }));

    let second = hop(
        Duration::from_millis(300),
        Hop::new(third.map_err(HopError)),
        budgets.clone(),
    );
    let first = hop(Duration::from_millis(200), second.clone(), budgets.clone());

    let req = Request::builder()
        .header("x-request-timeout-ms", "2000")
        .body(())
        .unwrap();
    first.oneshot(req).await.unwrap();
    assert_eq!(
        *budgets.lock().unwrap(),
        vec![2000, 1800, 1500],
        "each hop sees what remains"
    );
    assert_eq!(reached_third.load(Ordering::SeqCst), 1);

    // With 400 ms the second hop's 300 ms of work leaves the third hop only
    // what is left after the first hop's 200 ms: nothing. Its call is never sent.
    budgets.lock().unwrap().clear();
    let first = hop(Duration::from_millis(200), second, budgets.clone());
    let req = Request::builder()
        .header("x-request-timeout-ms", "400")
        .body(())
        .unwrap();
    let err = first.oneshot(req).await.unwrap_err();
    assert!(
        matches!(Error::find(&err), Some(Error::Timeout { .. })),
        "{err}"
    );
    assert_eq!(*budgets.lock().unwrap(), vec![400, 200]);
    assert_eq!(
        reached_third.load(Ordering::SeqCst),
        1,
        "the expired request was not sent on"
    );
}

/// A server deadline around a client timeout: the inner timer stands in for
/// the outer one only while it is armed, so the outer deadline still holds
/// once the inner call is over.
#[tokio::test(start_paused = true)]
async fn a_server_deadline_still_fires_after_an_inner_timeout_ended() {
    let upstream = service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(Response::new(()))
    });
    let handler = service_fn(move |_req: Request<()>| {
        let upstream = upstream;
        async move {
            // the client call: a 2 s timeout, answered after 1 s
            let client = TimeoutLayer::new(Duration::from_secs(2)).layer(upstream);
            client.oneshot(Request::new(())).await?;
            // then the handler waits on something that never comes
            std::future::pending::<()>().await;
            Ok::<_, BoxError>(Response::new(()))
        }
    });
    let server = DeadlineLayer::new(Duration::from_secs(10)).layer(handler);
    let started = tokio::time::Instant::now();
    // bounded: a server deadline that never armed would leave the call hanging
    let answer = tokio::time::timeout(Duration::from_secs(60), server.oneshot(Request::new(())))
        .await
        .expect("the server's deadline fired");
    let err = answer.unwrap_err();
    assert!(timeout_error(&err), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn the_earlier_of_nested_deadlines_fires_whichever_is_inside() {
    let hang =
        service_fn(|_req: Request<()>| std::future::pending::<Result<Response<()>, Infallible>>());
    for (outer, inner, fires_at) in [(10, 2, 2), (2, 10, 2), (3, 3, 3)] {
        let client = TimeoutLayer::new(Duration::from_secs(inner)).layer(hang);
        let handler = service_fn(move |_req: Request<()>| {
            let client = client.clone();
            async move { client.oneshot(Request::new(())).await }
        });
        let server = DeadlineLayer::new(Duration::from_secs(outer)).layer(handler);
        let started = tokio::time::Instant::now();
        let err = server.oneshot(Request::new(())).await.unwrap_err();
        assert!(timeout_error(&err), "{err}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(fires_at),
            "outer {outer} s, inner {inner} s"
        );
    }
}

//! Many tasks on a multi-threaded runtime hammering one breaker.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use forten_core::Error;
use forten_core::circuit::{CircuitBreaker, CircuitState, ErrorClassifier};
use tokio::sync::watch;
use tower::{Layer, ServiceExt, service_fn};

const TASKS: usize = 16;

/// A concrete error type: with `BoxError` as the inner service's error, rustc's
/// check that a spawned `async` block is `Send` fails on the `Into<BoxError>`
/// bound every tower middleware carries (rust-lang/rust#102211).
fn boom() -> std::io::Error {
    std::io::Error::other("boom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_from_every_thread_add_up() {
    let breaker = CircuitBreaker::builder("busy")
        .count_window(100_000)
        .minimum_calls(100_000)
        .build()
        .unwrap();
    let svc = breaker
        .layer()
        .classifier(ErrorClassifier)
        .layer(service_fn(|fail: bool| async move {
            tokio::task::yield_now().await;
            if fail {
                Err::<(), std::io::Error>(boom())
            } else {
                Ok(())
            }
        }));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..2_000 {
                let _ = svc.clone().oneshot((i + t) % 10 == 0).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = breaker.metrics();
    assert_eq!(m.state, CircuitState::Closed);
    assert_eq!(m.calls, (TASKS * 2_000) as u64);
    assert_eq!(m.failures, (TASKS * 200) as u64);
    assert_eq!(m.rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_never_admits_more_than_its_permits() {
    const PERMITS: usize = 5;
    const CALLERS: usize = 64;
    let breaker = CircuitBreaker::builder("probe")
        .count_window(4)
        .minimum_calls(4)
        .wait_duration(Duration::ZERO)
        .half_open_permits(PERMITS as u32)
        .build()
        .unwrap();
    let entered = Arc::new(AtomicUsize::new(0));
    let (release, released) = watch::channel(false);
    let svc = {
        let entered = entered.clone();
        breaker
            .layer()
            .classifier(ErrorClassifier)
            .layer(service_fn(move |fail: bool| {
                let entered = entered.clone();
                let mut released = released.clone();
                async move {
                    if fail {
                        return Err::<(), std::io::Error>(boom());
                    }
                    entered.fetch_add(1, Ordering::SeqCst);
                    released
                        .wait_for(|r| *r)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok(())
                }
            }))
    };
    for round in 0..20 {
        entered.store(0, Ordering::SeqCst);
        release.send_replace(false);
        for _ in 0..4 {
            let _ = svc.clone().oneshot(true).await;
        }
        assert_eq!(breaker.state(), CircuitState::Open, "round {round}");
        let rejected = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CALLERS {
            let svc = svc.clone();
            let rejected = rejected.clone();
            tasks.push(tokio::spawn(async move {
                match svc.oneshot(false).await {
                    Ok(()) => {}
                    Err(e) => {
                        assert!(matches!(
                            Error::find(e.as_ref()),
                            Some(Error::CircuitOpen { .. })
                        ));
                        rejected.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        // Wait (bounded) until every caller was either admitted or rejected.
        tokio::time::timeout(Duration::from_secs(10), async {
            while entered.load(Ordering::SeqCst) + rejected.load(Ordering::SeqCst) < CALLERS {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(entered.load(Ordering::SeqCst), PERMITS, "round {round}");
        assert_eq!(rejected.load(Ordering::SeqCst), CALLERS - PERMITS);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        release.send_replace(true);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_keep_the_breaker_consistent() {
    let breaker = CircuitBreaker::builder("race")
        .count_window(20)
        .minimum_calls(5)
        .wait_duration(Duration::ZERO)
        .half_open_permits(3)
        .build()
        .unwrap();
    let svc = breaker
        .layer()
        .classifier(ErrorClassifier)
        .layer(service_fn(|fail: bool| async move {
            tokio::task::yield_now().await;
            if fail {
                Err::<(), std::io::Error>(boom())
            } else {
                Ok(())
            }
        }));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let svc = svc.clone();
        let breaker = breaker.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..1_000usize {
                let _ = svc.clone().oneshot((i * 7 + t) % 3 == 0).await;
                if i % 250 == 0 && t == 0 {
                    breaker.reset();
                }
                let m = breaker.metrics();
                assert!(m.failures <= m.calls && m.slow_calls <= m.calls);
                assert!(m.calls <= 20);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    breaker.reset();
    for _ in 0..5 {
        svc.clone().oneshot(false).await.unwrap();
    }
    let m = breaker.metrics();
    assert_eq!((m.state, m.calls, m.failures), (CircuitState::Closed, 5, 0));
}

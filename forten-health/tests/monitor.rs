//! Behaviour of the monitor and its endpoints, on paused tokio time.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use forten_health::{
    Check, CheckResult, ComponentType, Endpoint, Error, HealthMonitor, HealthRoutes, Status,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::ServiceExt;

fn flag(initial: bool) -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(initial))
}

fn bool_check(name: &str, flag: &Arc<AtomicBool>) -> Check {
    let flag = Arc::clone(flag);
    Check::from_bool(name, move || flag.load(Ordering::SeqCst))
}

/// Calls the routes and requires the answer at the first poll: a probe never waits.
fn call_now(routes: &HealthRoutes, method: Method, path: &str) -> Response<Full<Bytes>> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap();
    let mut future = std::pin::pin!(routes.clone().oneshot(request));
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => panic!("the health endpoint did not answer at once"),
    }
}

async fn body_json(response: Response<Full<Bytes>>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn get(monitor: &HealthMonitor, path: &str) -> Response<Full<Bytes>> {
    call_now(&monitor.routes(), Method::GET, path)
}

#[tokio::test(start_paused = true)]
async fn hanging_check_is_cut_off_by_its_timeout_without_delaying_the_endpoint() {
    let monitor = HealthMonitor::builder("svc", "1.0.0")
        .check(
            Check::from_fn("slow:ping", std::future::pending::<CheckResult>)
                .timeout(Duration::from_secs(1)),
        )
        .check(Check::from_fn("fast:ping", || async {
            CheckResult::pass()
        }))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let round = tokio::spawn({
        let monitor = monitor.clone();
        async move { monitor.run_checks_once().await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // The round is in flight, hung on slow:ping; the endpoint still answers at once.
    let response = get(&monitor, "/health/ready");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let json = body_json(response).await;
    assert_eq!(json["checks"]["fast:ping"][0]["status"], "pass");
    assert_eq!(json["checks"]["slow:ping"][0]["status"], "fail");
    assert_eq!(json["checks"]["slow:ping"][0]["output"], "not checked yet");

    round.await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "cut off at the timeout"
    );
    let json = body_json(get(&monitor, "/health/ready")).await;
    assert_eq!(json["status"], "fail");
    assert_eq!(json["checks"]["slow:ping"][0]["status"], "fail");
    assert_eq!(
        json["checks"]["slow:ping"][0]["output"],
        "timed out after 1s"
    );
    assert_eq!(json["checks"]["fast:ping"][0]["status"], "pass");
}

#[tokio::test(start_paused = true)]
async fn flapping_is_damped_by_the_thresholds() {
    let up = flag(true);
    let monitor = HealthMonitor::builder("svc", "1.0.0")
        .check(
            bool_check("db:ping", &up)
                .failure_threshold(3)
                .success_threshold(2),
        )
        .build()
        .unwrap();
    // A check starts failing and becomes healthy after its success threshold.
    monitor.run_checks_once().await;
    assert_eq!(monitor.report(Endpoint::Ready).status, Status::Fail);
    monitor.run_checks_once().await;
    assert_eq!(monitor.report(Endpoint::Ready).status, Status::Pass);

    let mut seen = Vec::new();
    for ok in [
        false, false, true, false, false, // flaps: never three failures in a row
        false, // the third consecutive failure
        true,  // one success of the two needed
        true,  // recovered
    ] {
        up.store(ok, Ordering::SeqCst);
        monitor.run_checks_once().await;
        seen.push(get(&monitor, "/health/ready").status().as_u16());
    }
    assert_eq!(seen, [200, 200, 200, 200, 200, 503, 503, 200]);

    up.store(false, Ordering::SeqCst);
    monitor.run_checks_once().await;
    let json = body_json(get(&monitor, "/health/ready")).await;
    assert_eq!(json["status"], "warn");
    assert_eq!(
        json["checks"]["db:ping"][0]["output"],
        "not connected (failure 1 of 3 before this check fails)"
    );
}

#[tokio::test(start_paused = true)]
async fn live_stays_200_while_every_dependency_is_down() {
    let monitor = HealthMonitor::builder("svc", "1.0.0")
        .check(Check::from_fn("db:ping", || async {
            CheckResult::fail("down")
        }))
        .check(Check::from_bool("bus:connection", || false))
        .check(Check::from_fn("cache:ping", || async { CheckResult::fail("down") }).informational())
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    let live = get(&monitor, "/health/live");
    assert_eq!(live.status(), StatusCode::OK);
    let json = body_json(live).await;
    assert_eq!(json["status"], "pass");
    let checks = json["checks"].as_object().unwrap();
    assert_eq!(
        checks.keys().collect::<Vec<_>>(),
        ["uptime"],
        "no dependency on live"
    );
    assert_eq!(json["checks"]["uptime"][0]["componentType"], "system");
    assert_eq!(json["checks"]["uptime"][0]["observedUnit"], "s");

    assert_eq!(get(&monitor, "/health/ready").status(), 503);
    assert_eq!(get(&monitor, "/health").status(), 503);
    monitor.shutting_down();
    assert_eq!(get(&monitor, "/health/live").status(), 200);
}

#[tokio::test(start_paused = true)]
async fn ready_turns_503_on_a_critical_failure_and_on_shutdown() {
    let up = flag(true);
    let monitor = HealthMonitor::builder("svc", "1.0.0")
        .check(bool_check("db:ping", &up))
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    assert_eq!(get(&monitor, "/health/ready").status(), 200);

    up.store(false, Ordering::SeqCst);
    monitor.run_checks_once().await;
    let response = get(&monitor, "/health/ready");
    assert_eq!(response.status(), 503);
    let json = body_json(response).await;
    assert_eq!(json["status"], "fail");
    assert_eq!(json["output"], "db:ping fail");
    assert_eq!(json["checks"]["db:ping"][0]["output"], "not connected");

    up.store(true, Ordering::SeqCst);
    monitor.run_checks_once().await;
    assert_eq!(get(&monitor, "/health/ready").status(), 200);

    // Shutdown: at once, without another round of checks.
    monitor.shutting_down();
    assert!(monitor.is_shutting_down());
    let response = get(&monitor, "/health/ready");
    assert_eq!(response.status(), 503);
    let json = body_json(response).await;
    assert_eq!(json["status"], "fail");
    assert_eq!(json["output"], "shutting down");
    assert_eq!(json["checks"]["db:ping"][0]["status"], "pass");
    assert_eq!(get(&monitor, "/health").status(), 503);
    assert_eq!(get(&monitor, "/health/live").status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_warn_level_failure_still_answers_200() {
    let monitor = HealthMonitor::builder("svc", "1.0.0")
        .check(Check::from_fn("db:ping", || async { CheckResult::pass() }))
        .check(
            Check::from_fn("search:ping", || async { CheckResult::fail("refused") }).non_critical(),
        )
        .check(Check::from_fn("disk:free", || async {
            CheckResult::warn("90% full")
        }))
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    for path in ["/health/ready", "/health"] {
        let response = get(&monitor, path);
        assert_eq!(response.status(), 200, "{path}");
        let json = body_json(response).await;
        assert_eq!(json["status"], "warn");
        assert_eq!(json["checks"]["search:ping"][0]["status"], "warn");
        assert_eq!(json["checks"]["search:ping"][0]["output"], "refused");
        assert_eq!(json["checks"]["disk:free"][0]["status"], "warn");
        assert_eq!(json["checks"]["disk:free"][0]["output"], "90% full");
        assert_eq!(
            json["output"], "search:ping warn, disk:free warn",
            "in registration order"
        );
    }
}

fn assert_rfc3339(value: &Value) {
    let s = value.as_str().expect("time is a string");
    let b = s.as_bytes();
    assert_eq!(b.len(), 20, "{s}");
    assert!(
        b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':',
        "{s}"
    );
    assert_eq!(b[19], b'Z', "{s}");
}

#[tokio::test(start_paused = true)]
async fn json_matches_the_drafts_shape() {
    let monitor = HealthMonitor::builder("auth-service", "1.0.0")
        .description("signs users in")
        .check(
            Check::from_fn("postgres:connections", || async {
                CheckResult::pass().with_observed_value(3)
            })
            .component_type(ComponentType::Datastore),
        )
        .check(
            Check::from_fn("rabbitmq:connection", || async {
                CheckResult::fail("connection refused").with_component_id("node-1")
            })
            .non_critical(),
        )
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    let response = get(&monitor, "/health");
    assert_eq!(
        response.headers()["content-type"],
        "application/health+json"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let json = body_json(response).await;
    let top: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(
        top,
        [
            "checks",
            "description",
            "output",
            "releaseId",
            "serviceId",
            "status",
            "version"
        ]
    );
    assert_eq!(json["status"], "warn");
    assert_eq!(json["version"], "1");
    assert_eq!(json["releaseId"], "1.0.0");
    assert_eq!(json["serviceId"], "auth-service");
    assert_eq!(json["description"], "signs users in");

    let pg = &json["checks"]["postgres:connections"];
    assert_eq!(pg.as_array().unwrap().len(), 1);
    let pg = pg[0].as_object().unwrap();
    assert_eq!(
        pg.keys().collect::<Vec<_>>(),
        ["componentType", "observedValue", "status", "time"],
        "output omitted on pass"
    );
    assert_eq!(pg["componentType"], "datastore");
    assert_eq!(pg["observedValue"], 3);
    assert_eq!(pg["status"], "pass");
    assert_rfc3339(&pg["time"]);

    let mq = &json["checks"]["rabbitmq:connection"][0];
    assert_eq!(mq["componentType"], "component");
    assert_eq!(mq["componentId"], "node-1");
    assert_eq!(mq["status"], "warn");
    assert_eq!(mq["output"], "connection refused");
    assert_rfc3339(&mq["time"]);
    assert_rfc3339(&json["checks"]["uptime"][0]["time"]);

    // A passing service sends no top-level output.
    let monitor = HealthMonitor::builder("svc", "2.3.4").build().unwrap();
    let json = body_json(get(&monitor, "/health/ready")).await;
    assert_eq!(
        json,
        serde_json::json!({"status":"pass","version":"2","releaseId":"2.3.4","serviceId":"svc"})
    );
}

#[tokio::test(start_paused = true)]
async fn headers_methods_and_paths() {
    let monitor = HealthMonitor::builder("svc", "1").build().unwrap();
    let routes = monitor.routes();
    for path in ["/health", "/health/", "/health/live", "/health/ready"] {
        let response = call_now(&routes, Method::GET, path);
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/health+json"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let head = call_now(&routes, Method::HEAD, "/health/ready");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/health+json");
    assert!(
        head.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    let post = call_now(&routes, Method::POST, "/health/ready");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    for path in ["/", "/healthz", "/health/other", "/api/health"] {
        assert_eq!(call_now(&routes, Method::GET, path).status(), 404, "{path}");
    }

    let nested = monitor.routes().nested();
    for path in ["/", "/live", "/ready"] {
        let response = call_now(&nested, Method::GET, path);
        assert_eq!(response.status(), 200, "{path:?}");
        let json = body_json(response).await;
        assert_eq!(
            json["checks"].get("uptime").is_some(),
            path != "/ready",
            "{path:?}"
        );
    }
    assert_eq!(call_now(&nested, Method::GET, "/health").status(), 404);
}

#[tokio::test(start_paused = true)]
async fn a_check_not_run_yet_fails_readiness() {
    let monitor = HealthMonitor::builder("svc", "1")
        .check(Check::from_bool("db:ping", || true))
        .check(Check::from_bool("search:ping", || true).non_critical())
        .build()
        .unwrap();
    let json = body_json(get(&monitor, "/health/ready")).await;
    assert_eq!(json["status"], "fail");
    assert_eq!(json["checks"]["db:ping"][0]["status"], "fail");
    assert_eq!(json["checks"]["db:ping"][0]["output"], "not checked yet");
    assert!(json["checks"]["db:ping"][0].get("time").is_none());
    assert_eq!(json["checks"]["search:ping"][0]["status"], "warn");
}

#[tokio::test(start_paused = true)]
async fn a_stale_result_warns_and_a_stale_failure_still_fails() {
    let up = flag(true);
    let monitor = HealthMonitor::builder("svc", "1")
        .interval(Duration::from_secs(10))
        .stale_after(Duration::from_secs(30))
        .check(bool_check("db:ping", &up))
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        monitor.report(Endpoint::Ready).status,
        Status::Pass,
        "at the limit"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let response = get(&monitor, "/health/ready");
    assert_eq!(response.status(), 200);
    let json = body_json(response).await;
    assert_eq!(json["status"], "warn");
    assert_eq!(
        json["checks"]["db:ping"][0]["output"],
        "result is stale: 31s old (limit 30s)"
    );

    up.store(false, Ordering::SeqCst);
    monitor.run_checks_once().await;
    tokio::time::advance(Duration::from_secs(60)).await;
    let json = body_json(get(&monitor, "/health/ready")).await;
    assert_eq!(json["status"], "fail");
    assert_eq!(
        json["checks"]["db:ping"][0]["output"],
        "result is stale: 60s old (limit 30s); not connected"
    );
}

#[tokio::test(start_paused = true)]
async fn the_background_task_runs_checks_on_its_interval_until_the_monitor_is_dropped() {
    let runs = Arc::new(AtomicU32::new(0));
    let monitor = HealthMonitor::builder("svc", "1")
        .interval(Duration::from_secs(10))
        .check(Check::from_fn("db:ping", {
            let runs = Arc::clone(&runs);
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
                async { CheckResult::pass() }
            }
        }))
        .build()
        .unwrap();
    let task = monitor.start().unwrap();
    assert!(matches!(monitor.start(), Err(Error::AlreadyStarted)));
    tokio::time::sleep(Duration::from_millis(1)).await; // paused: only lets the first round run
    assert_eq!(runs.load(Ordering::SeqCst), 1, "a round at once");
    assert_eq!(monitor.report(Endpoint::Ready).status, Status::Pass);

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    // Results stay fresh while the task runs.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(monitor.report(Endpoint::Ready).status, Status::Pass);

    drop(monitor);
    tokio::time::timeout(Duration::from_secs(11), task)
        .await
        .expect("the task ends once the monitor is gone")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_fails_and_the_others_still_report() {
    let monitor = HealthMonitor::builder("svc", "1")
        .check(Check::from_fn("bad:ping", || async {
            panic!("boom");
        }))
        .check(Check::from_bool("bad:flag", || panic!("boom")))
        .check(Check::from_bool("good:ping", || true))
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    let json = body_json(get(&monitor, "/health")).await;
    for bad in ["bad:ping", "bad:flag"] {
        assert_eq!(json["checks"][bad][0]["status"], "fail");
        assert_eq!(json["checks"][bad][0]["output"], "check panicked");
    }
    assert_eq!(json["checks"]["good:ping"][0]["status"], "pass");
}

#[tokio::test(start_paused = true)]
async fn informational_checks_show_on_health_only() {
    let monitor = HealthMonitor::builder("svc", "1")
        .check(Check::from_bool("db:ping", || true))
        .check(Check::from_bool("batch:lastRun", || false).informational())
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    let ready = body_json(get(&monitor, "/health/ready")).await;
    assert_eq!(ready["status"], "pass");
    assert!(ready["checks"].get("batch:lastRun").is_none());
    let health = get(&monitor, "/health");
    assert_eq!(health.status(), 503);
    let health = body_json(health).await;
    assert_eq!(health["checks"]["batch:lastRun"][0]["status"], "fail");
}

#[test]
fn the_builder_says_what_is_wrong() {
    let build = |check: Check| HealthMonitor::builder("svc", "1").check(check).build();
    let ok = || Check::from_bool("db:ping", || true);
    assert!(matches!(
        build(Check::from_bool("a b", || true)),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        build(Check::from_bool("a:b:c", || true)),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        build(ok().timeout(Duration::ZERO)),
        Err(Error::ZeroTimeout { .. })
    ));
    assert!(matches!(
        build(ok().failure_threshold(0)),
        Err(Error::ZeroThreshold {
            which: "failure",
            ..
        })
    ));
    assert!(matches!(
        build(ok().success_threshold(0)),
        Err(Error::ZeroThreshold {
            which: "success",
            ..
        })
    ));
    assert!(matches!(
        build(Check::tcp("db:tcp", "localhost")),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        build(Check::tcp("db:tcp", ":5432")),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        build(Check::tcp("db:tcp", "h:0")),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(build(Check::tcp("db:tcp", "[::1]:5432")).is_ok());
    #[cfg(feature = "http-check")]
    assert!(matches!(
        build(Check::http("api:get", "/ping")),
        Err(Error::InvalidUrl { .. })
    ));
    #[cfg(feature = "redis")]
    assert!(matches!(
        build(Check::redis("redis:ping", "redis")),
        Err(Error::InvalidAddress { .. })
    ));

    let dup = HealthMonitor::builder("svc", "1")
        .check(ok())
        .check(ok())
        .build();
    assert!(matches!(dup, Err(Error::DuplicateName { .. })));
    let zero = HealthMonitor::builder("svc", "1")
        .interval(Duration::ZERO)
        .build();
    assert!(matches!(zero, Err(Error::ZeroInterval)));
    let stale = HealthMonitor::builder("svc", "1")
        .interval(Duration::from_secs(10))
        .stale_after(Duration::from_secs(11))
        .check(ok().timeout(Duration::from_secs(2)))
        .build();
    let err = stale.unwrap_err();
    assert!(matches!(err, Error::StaleTooSoon { .. }));
    assert!(err.to_string().contains("raise stale_after"), "{err}");

    let monitor = HealthMonitor::builder("svc", "1").build().unwrap();
    assert!(matches!(monitor.start(), Err(Error::NoRuntime)));
}

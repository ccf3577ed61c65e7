//! The built-in checks against real sockets: HTTP peers on wiremock, TCP and Redis on loopback.
//! Real time here (real I/O); nothing sleeps to wait, each round is awaited.
#![cfg(all(feature = "http-check", feature = "redis", feature = "postgres"))]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::time::Duration;

use forten_health::{Check, CheckReport, Endpoint, HealthMonitor, Status};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Builds a monitor with one check, runs it once and returns that check's observation.
async fn observe(check: Check) -> CheckReport {
    let name = check.name().to_owned();
    let monitor = HealthMonitor::builder("svc", "1")
        .check(check)
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    let mut report = monitor.report(Endpoint::Health);
    report.checks.remove(&name).unwrap().remove(0)
}

async fn mock(server: &MockServer, route: &str, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(response)
        .mount(server)
        .await;
}

#[tokio::test]
async fn http_check_passes_on_2xx_and_3xx_and_fails_otherwise() {
    let server = MockServer::start().await;
    mock(&server, "/ok", ResponseTemplate::new(204)).await;
    mock(
        &server,
        "/moved",
        ResponseTemplate::new(302).insert_header("location", "/ok"),
    )
    .await;
    mock(
        &server,
        "/broken",
        ResponseTemplate::new(500).set_body_string("boom"),
    )
    .await;
    mock(&server, "/missing", ResponseTemplate::new(404)).await;

    let ok = observe(Check::http("api:ok", format!("{}/ok", server.uri()))).await;
    assert_eq!(ok.status, Status::Pass);
    assert_eq!(ok.observed_unit.as_deref(), Some("ms"));
    assert!(
        ok.observed_value
            .as_ref()
            .is_some_and(serde_json::Value::is_f64)
    );
    assert_eq!(ok.output, None);

    let moved = observe(Check::http("api:moved", format!("{}/moved", server.uri()))).await;
    assert_eq!(moved.status, Status::Pass);

    let broken = observe(Check::http(
        "api:broken",
        format!("{}/broken", server.uri()),
    ))
    .await;
    assert_eq!(broken.status, Status::Fail);
    let output = broken.output.unwrap();
    assert!(
        output.ends_with("/broken answered 500 Internal Server Error"),
        "{output}"
    );

    let missing = observe(Check::http(
        "api:missing",
        format!("{}/missing", server.uri()),
    ))
    .await;
    assert_eq!(missing.status, Status::Fail);
}

#[tokio::test]
async fn http_check_times_out_on_a_slow_peer() {
    let server = MockServer::start().await;
    mock(
        &server,
        "/slow",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
    )
    .await;
    let start = std::time::Instant::now();
    let slow = observe(
        Check::http("api:slow", format!("{}/slow", server.uri()))
            .timeout(Duration::from_millis(100)),
    )
    .await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(slow.status, Status::Fail);
    assert_eq!(slow.output.as_deref(), Some("timed out after 100ms"));
}

/// A loopback port with nothing listening.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

#[tokio::test]
async fn http_check_fails_when_nothing_listens() {
    let address = closed_port().await;
    let down = observe(Check::http("api:down", format!("http://{address}/"))).await;
    assert_eq!(down.status, Status::Fail);
    let output = down.output.unwrap();
    assert!(
        output.starts_with(&format!("GET http://{address}/ failed")),
        "{output}"
    );
}

#[tokio::test]
async fn tcp_check_passes_when_the_port_accepts_and_fails_when_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let up = observe(Check::tcp("db:connect", &address)).await;
    assert_eq!(up.status, Status::Pass);
    assert_eq!(up.observed_unit.as_deref(), Some("ms"));

    let address = closed_port().await;
    let down = observe(Check::tcp("db:connect", &address)).await;
    assert_eq!(down.status, Status::Fail);
    assert!(
        down.output
            .unwrap()
            .starts_with(&format!("connect to {address} failed"))
    );
}

fn health_json(status: &str, extra: &serde_json::Value) -> ResponseTemplate {
    let mut body = json!({"status": status, "serviceId": "events-service", "releaseId": "1.0.0"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let code = if status == "fail" { 503 } else { 200 };
    ResponseTemplate::new(code).set_body_raw(body.to_string(), "application/health+json")
}

#[tokio::test]
async fn the_gateway_reports_each_upstream_as_a_component() {
    let events = MockServer::start().await;
    mock(&events, "/health/ready", health_json("pass", &json!({}))).await;
    let auth = MockServer::start().await;
    mock(
        &auth,
        "/health/ready",
        health_json(
            "fail",
            &json!({"serviceId": "auth-service", "output": "shutting down"}),
        ),
    )
    .await;
    let notify = MockServer::start().await;
    mock(
        &notify,
        "/health/ready",
        health_json(
            "warn",
            &json!({"serviceId": "notification-service",
                   "checks": {"rabbitmq:connection": [{"status": "warn", "output": "reconnecting"}]}}),
        ),
    )
    .await;
    let plain = MockServer::start().await;
    mock(
        &plain,
        "/health/ready",
        ResponseTemplate::new(200).set_body_string("OK"),
    )
    .await;

    let auth_url = format!("{}/health/ready", auth.uri());
    let monitor = HealthMonitor::builder("api-gateway", "1.0.0")
        .check(Check::upstream(
            "events-service",
            format!("{}/health/ready", events.uri()),
        ))
        .check(Check::upstream("auth-service", &auth_url))
        .check(Check::upstream(
            "notification-service",
            format!("{}/health/ready", notify.uri()),
        ))
        .check(Check::upstream(
            "legacy-service",
            format!("{}/health/ready", plain.uri()),
        ))
        .build()
        .unwrap();
    monitor.run_checks_once().await;
    let report = monitor.report(Endpoint::Ready);
    // A peer down degrades the gateway (non-critical by default) rather than failing it.
    assert_eq!(report.status, Status::Warn);
    let get = |name: &str| report.checks[name][0].clone();

    let events = get("events-service:ready");
    assert_eq!(events.status, Status::Pass);
    assert_eq!(events.component_id.as_deref(), Some("events-service"));
    assert_eq!(events.component_type.as_deref(), Some("component"));
    assert_eq!(events.observed_unit.as_deref(), Some("ms"));

    let auth = get("auth-service:ready");
    assert_eq!(
        auth.status,
        Status::Warn,
        "non-critical: fail shows as warn"
    );
    assert_eq!(auth.output.as_deref(), Some("shutting down"));
    assert_eq!(auth.component_id.as_deref(), Some("auth-service"));

    let notify = get("notification-service:ready");
    assert_eq!(notify.status, Status::Warn);
    assert_eq!(notify.output.as_deref(), Some("rabbitmq:connection warn"));

    assert_eq!(get("legacy-service:ready").status, Status::Pass);

    // A peer the gateway cannot work without.
    let critical = HealthMonitor::builder("api-gateway", "1.0.0")
        .check(Check::upstream("auth-service", &auth_url).critical(true))
        .build()
        .unwrap();
    critical.run_checks_once().await;
    let report = critical.report(Endpoint::Ready);
    assert_eq!(report.status, Status::Fail);
    assert_eq!(
        report.checks["auth-service:ready"][0].output.as_deref(),
        Some("shutting down")
    );
}

/// A one-connection fake Redis: checks the commands it receives and answers `replies` in turn.
async fn fake_redis(expect: &'static [u8], replies: &'static [&'static [u8]]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 256];
        for reply in replies {
            let n = socket.read(&mut buf).await.unwrap();
            received.extend_from_slice(&buf[..n]);
            socket.write_all(reply).await.unwrap();
        }
        assert!(
            received.starts_with(expect),
            "{:?}",
            String::from_utf8_lossy(&received)
        );
    });
    address
}

#[tokio::test]
async fn redis_check_speaks_resp() {
    let address = fake_redis(b"*1\r\n$4\r\nPING\r\n", &[b"+PONG\r\n"]).await;
    let up = observe(Check::redis("redis:ping", &address)).await;
    assert_eq!(up.status, Status::Pass);
    assert_eq!(up.component_type.as_deref(), Some("datastore"));

    let address = fake_redis(
        b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n",
        &[b"+OK\r\n", b"+PONG\r\n"],
    )
    .await;
    let up = observe(Check::redis_with_auth("redis:ping", &address, None, "pw")).await;
    assert_eq!(up.status, Status::Pass);

    let address = fake_redis(b"*2\r\n$4\r\nAUTH", &[b"-WRONGPASS invalid password\r\n"]).await;
    let down = observe(Check::redis_with_auth("redis:ping", &address, None, "bad")).await;
    assert_eq!(down.status, Status::Fail);
    assert_eq!(
        down.output.as_deref(),
        Some("AUTH was refused: -WRONGPASS invalid password")
    );

    let address = fake_redis(b"*1\r\n$4\r\nPING", &[b"-LOADING Redis is loading\r\n"]).await;
    let down = observe(Check::redis("redis:ping", &address)).await;
    assert_eq!(down.status, Status::Fail);
    assert_eq!(
        down.output.as_deref(),
        Some("PING answered \"-LOADING Redis is loading\", expected +PONG")
    );

    let down = observe(Check::redis("redis:ping", closed_port().await)).await;
    assert_eq!(down.status, Status::Fail);
}

#[tokio::test]
#[ignore = "needs Redis: run scripts/test"]
async fn redis_check_against_a_real_server() {
    let up = observe(Check::redis("redis:ping", "127.0.0.1:6379")).await;
    assert_eq!(up.status, Status::Pass, "{:?}", up.output);
}

/// A one-connection fake Postgres: reads the startup message, answers `reply`.
async fn fake_postgres(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let n = socket.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].windows(5).any(|w| w == b"user\0"),
            "a startup message"
        );
        socket.write_all(reply).await.unwrap();
        let _ = socket.read(&mut buf).await; // the client's Terminate
    });
    address
}

fn pg_message(tag: u8, body: &[u8]) -> &'static [u8] {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out.leak()
}

#[tokio::test]
async fn postgres_check_judges_like_pg_isready() {
    // SCRAM requested: up.
    let address = fake_postgres(pg_message(b'R', &10u32.to_be_bytes())).await;
    let up = observe(Check::postgres("postgres:ready", &address)).await;
    assert_eq!(up.status, Status::Pass);
    assert_eq!(up.component_type.as_deref(), Some("datastore"));
    assert_eq!(up.observed_unit.as_deref(), Some("ms"));

    let starting = pg_message(
        b'E',
        b"SFATAL\0C57P03\0Mthe database system is starting up\0\0",
    );
    let down = observe(Check::postgres(
        "postgres:ready",
        fake_postgres(starting).await,
    ))
    .await;
    assert_eq!(down.status, Status::Fail);
    assert_eq!(
        down.output.as_deref(),
        Some("rejecting connections: the database system is starting up")
    );

    let down = observe(Check::postgres("postgres:ready", closed_port().await)).await;
    assert_eq!(down.status, Status::Fail);
}

#[tokio::test]
#[ignore = "needs Postgres on 127.0.0.1:5432 (scripts/test must start it)"]
async fn postgres_check_against_a_real_server() {
    let up = observe(Check::postgres("postgres:ready", "127.0.0.1:5432")).await;
    assert_eq!(up.status, Status::Pass, "{:?}", up.output);
    let up = observe(Check::postgres_with_user(
        "postgres:ready",
        "127.0.0.1:5432",
        "forten-probe",
        "nope",
    ))
    .await;
    assert_eq!(up.status, Status::Pass, "{:?}", up.output);
}

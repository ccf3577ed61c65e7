//! The gateway: dashboard degradation, a service down answered 503 (never
//! 500), aggregated health, the registry, and the services' own guard
//! (service tokens on everything the gateway calls).

mod common;

use std::time::Duration;

use common::{Http, eventually, user};
use forten_examples::runtime::USER_TOKEN_HEADER;
use forten_examples::system::{RunningSystem, Service, SystemConfig};
use http::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_dashboard_degrades_when_a_service_is_down() {
    let mut system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (me, t) = user(&gw, "dee", "acme", "member").await;
    gw.post("/api/v1/events", Some(&t), json!({"title": "Dash"}))
        .await;

    let full = gw.get("/api/v1/dashboard", Some(&t)).await;
    assert_eq!(full.status, 200, "{}", full.json);
    assert_eq!(full.json["meta"]["degraded"], json!([]));
    assert_eq!(full.json["data"]["me"], me);
    assert_eq!(full.json["data"]["events"][0]["title"], "Dash");
    assert!(full.json["data"]["notifications"].is_array());

    system.stop_service(Service::Events).await.expect("stops");
    let part = gw.get("/api/v1/dashboard", Some(&t)).await;
    assert_eq!(part.status, 200, "{}", part.json);
    assert_eq!(part.json["meta"]["degraded"], json!(["events"]));
    assert_eq!(part.json["data"]["events"], json!(null));
    assert_eq!(part.json["data"]["me"], me);
    // the service's own routes: 503, never a 500
    gw.get("/api/v1/events", Some(&t))
        .await
        .assert_error(503, "UPSTREAM_UNAVAILABLE");
    gw.post("/api/v1/events", Some(&t), json!({"title": "x"}))
        .await
        .assert_error(503, "UPSTREAM_UNAVAILABLE");

    system.stop_service(Service::Auth).await.expect("stops");
    system
        .stop_service(Service::Notifications)
        .await
        .expect("stops");
    let none = gw.get("/api/v1/dashboard", Some(&t)).await;
    assert_eq!(none.status, 200);
    assert_eq!(
        none.json["meta"]["degraded"],
        json!(["me", "events", "notifications"])
    );

    for service in [Service::Auth, Service::Events, Service::Notifications] {
        system
            .restart_service(service)
            .await
            .expect("restarts on the same port");
    }
    // the service breakers opened meanwhile: back once each has probed
    let back = eventually(Duration::from_secs(15), "a full dashboard", || async {
        let r = gw.get("/api/v1/dashboard", Some(&t)).await;
        (r.json["meta"]["degraded"] == json!([])).then_some(r)
    })
    .await;
    assert_eq!(
        back.json["data"]["events"][0]["title"], "Dash",
        "the data outlived the restart"
    );
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn health_aggregates_the_services_and_the_registry_lists_them() {
    let mut system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let health = eventually(WAIT, "every service ready", || async {
        let r = gw.get("/health", None).await;
        (r.json["status"] == "pass").then_some(r)
    })
    .await;
    assert_eq!(health.header("content-type"), "application/health+json");
    for check in [
        "auth-service:ready",
        "events-service:ready",
        "notification-service:ready",
    ] {
        assert_eq!(
            health.json["checks"][check][0]["status"], "pass",
            "{}",
            health.json
        );
    }
    assert_eq!(gw.get("/health/ready", None).await.status, 200);
    assert_eq!(gw.get("/health/live", None).await.status, 200);

    let services = gw.get("/registry/services", None).await;
    for name in ["auth-service", "events-service", "notification-service"] {
        let instances = &services.json["services"][name];
        assert_eq!(
            instances.as_array().map(Vec::len),
            Some(1),
            "{}",
            services.json
        );
        let url = instances[0]["healthCheckUrl"]
            .as_str()
            .expect("a health URL");
        assert!(url.ends_with("/health/ready"));
    }

    let auth_url = system.service_url(Service::Auth).expect("running");
    // writes need the registry key; reads are open
    let fake = br#"{"name":"auth-service","address":"203.0.113.9","port":80}"#;
    let refused = gw
        .send(Method::POST, "/registry/services", &[], Some(fake))
        .await;
    refused.assert_error(401, "UNAUTHENTICATED");
    let wrong = [("x-internal-auth", "not-the-registry-key")];
    let refused = gw
        .send(Method::POST, "/registry/services", &wrong, Some(fake))
        .await;
    refused.assert_error(401, "UNAUTHENTICATED");
    let key = [(
        "x-internal-auth",
        forten_examples::runtime::auth::DEV_REGISTRY_KEY,
    )];
    let bad = gw
        .send(Method::POST, "/registry/services", &key, Some(b"{}"))
        .await;
    bad.assert_error(400, "VALIDATION_ERROR");

    system.stop_service(Service::Auth).await.expect("stops");
    assert!(system.service_url(Service::Auth).is_none());
    let degraded = eventually(WAIT, "auth-service reported missing", || async {
        let r = gw.get("/health", None).await;
        (r.json["checks"]["auth-service:ready"][0]["status"] != "pass").then_some(r)
    })
    .await;
    assert_eq!(
        degraded.status, 200,
        "the gateway keeps serving: {}",
        degraded.json
    );
    assert_eq!(degraded.json["status"], "warn");
    assert_eq!(gw.get("/health/ready", None).await.status, 200);
    let services = gw.get("/registry/services", None).await;
    assert!(
        services.json["services"]["auth-service"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    system
        .restart_service(Service::Auth)
        .await
        .expect("restarts");
    assert_eq!(
        system.service_url(Service::Auth),
        Some(auth_url),
        "the same port"
    );
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn services_accept_only_the_gateways_service_token() {
    let system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (_, t) = user(&gw, "sam", "acme", "member").await;
    let events = Http::new(system.service_url(Service::Events).expect("running"));
    let keys = system.keys();
    let gateway_token = keys
        .service_auth("api-gateway")
        .expect("auth")
        .auth_header("events-service")
        .expect("token");
    let gateway_token = gateway_token.to_str().expect("ascii");
    let stranger = keys
        .service_auth("stranger")
        .expect("auth")
        .auth_header("events-service")
        .expect("token");
    let wrong_audience = keys
        .service_auth("api-gateway")
        .expect("auth")
        .auth_header("auth-service")
        .expect("token");

    // no token, a user token, a stranger's, one for another service: 401
    for auth in [
        None,
        Some(format!("Bearer {t}")),
        Some(stranger.to_str().expect("ascii").to_owned()),
        Some(wrong_audience.to_str().expect("ascii").to_owned()),
    ] {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        events
            .send(Method::GET, "/events", &headers, None)
            .await
            .assert_error(401, "UNAUTHENTICATED");
    }
    // the gateway's token without the forwarded user: 401 too
    events
        .send(
            Method::GET,
            "/events",
            &[("authorization", gateway_token)],
            None,
        )
        .await
        .assert_error(401, "UNAUTHENTICATED");
    let ok = events
        .send(
            Method::GET,
            "/events",
            &[("authorization", gateway_token), (USER_TOKEN_HEADER, &t)],
            None,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    // bad input straight at the service: a JSON:API document as well
    let bad = events
        .send(
            Method::POST,
            "/events",
            &[("authorization", gateway_token), (USER_TOKEN_HEADER, &t)],
            Some(b"{"),
        )
        .await;
    bad.assert_error(400, "VALIDATION_ERROR");
    // a retried POST (same Idempotency-Key, as forten-client sends it) creates one event
    let headers = [
        ("authorization", gateway_token),
        (USER_TOKEN_HEADER, t.as_str()),
        ("idempotency-key", "retry-1"),
    ];
    let first = events
        .send(
            Method::POST,
            "/events",
            &headers,
            Some(br#"{"title":"Once"}"#),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.json);
    let retry = events
        .send(
            Method::POST,
            "/events",
            &headers,
            Some(br#"{"title":"Once"}"#),
        )
        .await;
    assert_eq!(retry.header("idempotent-replayed"), "true");
    assert_eq!(retry.json, first.json);
    // health needs no token
    assert_eq!(events.get("/health/ready", None).await.status, 200);
    // demo controls exist only in forten-demo's all-in-one mode
    gw.post("/demo/services/auth/stop", None, json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn demo_controls_stop_and_start_a_service() {
    let mut config = SystemConfig::ephemeral();
    config.demo_controls = true;
    let system = RunningSystem::start(config).await.expect("starts");
    let gw = Http::new(system.gateway_url());
    let (_, t) = user(&gw, "dan", "acme", "member").await;
    assert_eq!(
        gw.post("/demo/services/events/stop", None, json!({}))
            .await
            .status,
        204
    );
    assert!(system.service_url(Service::Events).is_none());
    gw.get("/api/v1/events", Some(&t))
        .await
        .assert_error(503, "UPSTREAM_UNAVAILABLE");
    assert_eq!(
        gw.post("/demo/services/events/stop", None, json!({}))
            .await
            .status,
        204,
        "idempotent"
    );
    assert_eq!(
        gw.post("/demo/services/events/start", None, json!({}))
            .await
            .status,
        204
    );
    assert_eq!(gw.get("/api/v1/events", Some(&t)).await.status, 200);
    gw.post("/demo/services/gateway/stop", None, json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
    gw.post("/demo/services/events/explode", None, json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn a_crashed_service_opens_its_circuit_and_recovers_after_restart() {
    let mut system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (_, t) = user(&gw, "cal", "acme", "member").await;
    assert_eq!(gw.get("/api/v1/events", Some(&t)).await.status, 200);
    system.kill_service(Service::Events).await.expect("killed");
    // still registered: the calls reach the dead instance, fail, and open its breaker
    let open = eventually(WAIT, "CIRCUIT_OPEN", || async {
        let r = gw.get("/api/v1/events", Some(&t)).await;
        assert!(
            matches!(r.status.as_u16(), 502..=504),
            "never a 500: {}",
            r.json
        );
        (r.code() == "CIRCUIT_OPEN").then_some(r)
    })
    .await;
    open.assert_error(503, "CIRCUIT_OPEN");
    assert!(!open.header("retry-after").is_empty());
    // the dashboard degrades instead
    let d = gw.get("/api/v1/dashboard", Some(&t)).await;
    assert_eq!(d.json["meta"]["degraded"], json!(["events"]));
    system
        .restart_service(Service::Events)
        .await
        .expect("restarts");
    eventually(WAIT, "events back", || async {
        (gw.get("/api/v1/events", Some(&t)).await.status == 200).then_some(())
    })
    .await;
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn a_stopped_service_opens_the_service_breaker_then_recovers() {
    let mut system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (_, t) = user(&gw, "sol", "acme", "member").await;
    system.stop_service(Service::Events).await.expect("stops");
    // no instance registered: UPSTREAM_UNAVAILABLE, until the service breaker opens
    let first = gw.get("/api/v1/events", Some(&t)).await;
    first.assert_error(503, "UPSTREAM_UNAVAILABLE");
    let open = eventually(WAIT, "CIRCUIT_OPEN", || async {
        let r = gw.get("/api/v1/events", Some(&t)).await;
        assert!(
            matches!(r.status.as_u16(), 502..=504),
            "never a 500: {}",
            r.json
        );
        (r.code() == "CIRCUIT_OPEN").then_some(r)
    })
    .await;
    open.assert_error(503, "CIRCUIT_OPEN");
    assert!(
        open.header("retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s >= 1)
    );
    // the other services are unaffected
    assert_eq!(gw.get("/api/v1/auth/me", Some(&t)).await.status, 200);
    system
        .restart_service(Service::Events)
        .await
        .expect("restarts");
    eventually(
        Duration::from_secs(15),
        "events back once the breaker probes",
        || async { (gw.get("/api/v1/events", Some(&t)).await.status == 200).then_some(()) },
    )
    .await;
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn the_gateway_restarts_on_its_port_and_finds_the_services_again() {
    let mut system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (_, t) = user(&gw, "gus", "acme", "member").await;
    system.stop_service(Service::Gateway).await.expect("stops");
    assert!(system.service_url(Service::Gateway).is_none());
    system
        .restart_service(Service::Gateway)
        .await
        .expect("restarts");
    assert_eq!(gw.base, system.gateway_url(), "the same port");
    // the registry outlived the gateway's restart; the token is still valid
    assert_eq!(gw.get("/api/v1/events", Some(&t)).await.status, 200);
    let services = gw.get("/registry/services", None).await;
    assert_eq!(
        services.json["services"]["events-service"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn auth_service_validates_tokens_for_the_gateway() {
    let system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (me, t) = user(&gw, "val", "acme", "manager").await;
    let auth = Http::new(system.service_url(Service::Auth).expect("running"));
    let header = system
        .keys()
        .service_auth("api-gateway")
        .expect("auth")
        .auth_header("auth-service")
        .expect("token");
    let header = header.to_str().expect("ascii");
    let body = json!({ "token": t }).to_string();
    let ok = auth
        .send(
            Method::POST,
            "/tokens/validate",
            &[("authorization", header)],
            Some(body.as_bytes()),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    assert_eq!(ok.json["data"]["userId"], me["id"]);
    assert_eq!(ok.json["data"]["roles"], json!(["manager"]));
    assert_eq!(ok.json["data"]["organization"], "acme");
    let bad = auth
        .send(
            Method::POST,
            "/tokens/validate",
            &[("authorization", header)],
            Some(br#"{"token":"x.y.z"}"#),
        )
        .await;
    bad.assert_error(401, "UNAUTHENTICATED");
    system.shutdown().await.expect("graceful shutdown");
}

/// The `/api/v1` routes carry the server's layers themselves (merged in
/// after `server_stack`): they answer like every other route, with the
/// correlation id echoed, JSON:API documents for a wrong method (with
/// `Allow`, before any credential is asked for) and an unknown path, and a
/// RED series under their route template.
#[tokio::test]
async fn the_api_routes_answer_with_the_whole_server_stack() {
    let system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());

    let r = gw
        .send(
            Method::GET,
            "/api/v1/events",
            &[("x-correlation-id", "trace-me-1")],
            None,
        )
        .await;
    r.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(r.header("x-correlation-id"), "trace-me-1");

    for (method, path, allow) in [
        (Method::POST, "/api/v1/auth/me", "GET"),
        (Method::DELETE, "/api/v1/dashboard", "GET"),
        (Method::GET, "/api/v1/auth/signup", "POST"),
        (Method::PUT, "/api/v1/auth/login", "POST"),
    ] {
        let r = gw
            .send(
                method.clone(),
                path,
                &[("x-correlation-id", "trace-me-2")],
                None,
            )
            .await;
        r.assert_error(405, "METHOD_NOT_ALLOWED");
        assert!(
            r.header("allow").contains(allow),
            "{method} {path}: allow {:?}",
            r.header("allow")
        );
        assert_eq!(
            r.header("x-correlation-id"),
            "trace-me-2",
            "{method} {path}"
        );
    }

    let r = gw.get("/api/v1/nothing-here", None).await;
    r.assert_error(404, "NOT_FOUND");
    assert!(!r.header("x-correlation-id").is_empty());

    let (_, t) = user(&gw, "mel", "acme", "member").await;
    // a body over the limit is refused before anything is forwarded
    let auth = format!("Bearer {t}");
    let big = vec![b' '; forten_examples::runtime::input::MAX_BODY_BYTES + 1];
    let r = gw
        .send(
            Method::POST,
            "/api/v1/events",
            &[("authorization", &auth)],
            Some(&big),
        )
        .await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    let created = gw
        .post("/api/v1/events", Some(&t), json!({"title": "Counted"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.json);
    let metrics = scrape(&gw).await;
    assert!(
        counted(&metrics, "/api/v1/events", "201"),
        "the create is counted under its route template:\n{metrics}"
    );
    system.shutdown().await.expect("graceful shutdown");
}

/// The RED metrics count what the caller got: a request whose deadline had
/// passed when it arrived (a 504 from the deadline layer, before anything
/// below it ran) and a refusal by the JWT layer (a 401) are counted under
/// their route template with their status, not dropped uncounted or counted
/// as `error`.
#[tokio::test]
async fn metrics_count_a_timeout_and_a_refusal_with_their_status() {
    let system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (_, token) = user(&gw, "tia", "acme", "member").await;
    let auth = format!("Bearer {token}");

    let r = gw
        .send(
            Method::GET,
            "/api/v1/dashboard",
            &[("authorization", &auth), ("x-request-timeout-ms", "0")],
            None,
        )
        .await;
    r.assert_error(504, "TIMEOUT");
    let r = gw
        .send(
            Method::GET,
            "/api/v1/dashboard",
            &[("authorization", "Bearer not-a-token")],
            None,
        )
        .await;
    r.assert_error(401, "UNAUTHENTICATED");

    let metrics = scrape(&gw).await;
    assert!(
        counted(&metrics, "/api/v1/dashboard", "504"),
        "the timeout is counted:\n{metrics}"
    );
    assert!(
        counted(&metrics, "/api/v1/dashboard", "401"),
        "the refusal is counted:\n{metrics}"
    );
    system.shutdown().await.expect("graceful shutdown");
}

/// The gateway's `/metrics` text.
async fn scrape(gw: &Http) -> String {
    let scraped = gw.get("/metrics", None).await;
    String::from_utf8(scraped.body.to_vec()).expect("UTF-8")
}

/// Whether `metrics` has a `forten_server_requests_total` series for the
/// route template `route` and the status `status`.
fn counted(metrics: &str, route: &str, status: &str) -> bool {
    let route = format!("route=\"{route}\"");
    let status = format!("status=\"{status}\"");
    metrics.lines().any(|l| {
        l.starts_with("forten_server_requests_total") && l.contains(&route) && l.contains(&status)
    })
}

//! auth-service through the gateway: signup, login, me, and every kind of
//! bad input answered with a JSON:API document.

mod common;

use common::{Http, email, user};
use forten_examples::system::{RunningSystem, SystemConfig};
use http::Method;
use serde_json::json;

async fn system() -> (RunningSystem, Http) {
    let system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("the system starts");
    let gw = Http::new(system.gateway_url());
    (system, gw)
}

#[tokio::test]
async fn signup_login_me() {
    let (system, gw) = system().await;
    let (created, token) = user(&gw, "ada", "acme", "manager").await;
    assert_eq!(created["organization"], "acme");
    assert_eq!(created["role"], "manager");
    assert!(created.get("password").is_none() && created.get("passwordHash").is_none());

    let me = gw.get("/api/v1/auth/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.json);
    assert_eq!(me.json["data"], created);

    let login = gw
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": created["email"], "password": "long enough"}),
        )
        .await;
    assert_eq!(login.json["data"]["tokenType"], "Bearer");
    assert_eq!(login.json["data"]["expiresIn"], 3600);
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn signup_validation_points_at_the_field() {
    let (system, gw) = system().await;
    let good = || json!({"email": email("v"), "password": "long enough", "name": "V", "organization": "o"});
    let cases = [
        ("email", json!("not-an-email"), "/email"),
        ("email", json!(42), "/email"),
        ("password", json!("short"), "/password"),
        ("name", json!("   "), "/name"),
        ("organization", json!(null), "/organization"),
        ("role", json!("admin"), "/role"),
        ("role", json!("emperor"), "/role"),
    ];
    for (field, value, pointer) in cases {
        let mut body = good();
        body[field] = value.clone();
        let r = gw.post("/api/v1/auth/signup", None, body).await;
        r.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(r.pointer(), pointer, "{field} = {value}");
    }
    let mut missing = good();
    missing.as_object_mut().expect("object").remove("email");
    let r = gw.post("/api/v1/auth/signup", None, missing).await;
    r.assert_error(422, "VALIDATION_ERROR");
    assert_eq!(r.pointer(), "/email");

    // malformed JSON, a non-object, an empty body: 400 / 422, never axum's plain text
    for (body, status) in [(&b"{\"email\":"[..], 400), (b"[1,2]", 422), (b"", 400)] {
        let r = gw
            .send(Method::POST, "/api/v1/auth/signup", &[], Some(body))
            .await;
        r.assert_error(status, "VALIDATION_ERROR");
    }
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn duplicates_and_wrong_credentials() {
    let (system, gw) = system().await;
    let (created, _) = user(&gw, "bo", "acme", "member").await;
    let again = gw
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": created["email"].as_str().map(str::to_uppercase), "password": "long enough", "name": "B", "organization": "o"}),
        )
        .await;
    again.assert_error(409, "CONFLICT");

    for (email, password) in [
        (created["email"].clone(), "wrong password"),
        (json!("nobody@example.com"), "long enough"),
    ] {
        let r = gw
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        r.assert_error(401, "UNAUTHENTICATED");
    }
    let r = gw
        .post("/api/v1/auth/login", None, json!({"email": "a@b.io"}))
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    assert_eq!(r.pointer(), "/password");
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn protected_routes_need_a_valid_user_token() {
    let (system, gw) = system().await;
    for token in [None, Some("not.a.jwt"), Some("eyJhbGciOiJIUzI1NiJ9.e30.x")] {
        for path in [
            "/api/v1/auth/me",
            "/api/v1/events",
            "/api/v1/notifications",
            "/api/v1/dashboard",
        ] {
            let r = gw.get(path, token).await;
            r.assert_error(401, "UNAUTHENTICATED");
            assert_eq!(
                r.header("www-authenticate"),
                "Bearer error=\"invalid_token\""
            );
        }
    }
    // every answer echoes a correlation id, the given one or a fresh one
    let r = gw
        .send(
            Method::GET,
            "/api/v1/events",
            &[("x-correlation-id", "test-corr-1")],
            None,
        )
        .await;
    assert_eq!(r.header("x-correlation-id"), "test-corr-1");
    assert_eq!(r.json["errors"][0]["meta"]["requestId"], "test-corr-1");
    let r = gw.get("/nowhere", None).await;
    r.assert_error(404, "NOT_FOUND");
    assert!(!r.header("x-correlation-id").is_empty());
    system.shutdown().await.expect("graceful shutdown");
}

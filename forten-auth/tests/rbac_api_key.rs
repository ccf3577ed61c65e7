//! RBAC (roles -> permissions, 403) and internal API keys (401).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use forten_auth::jsonwebtoken::Algorithm;
use forten_auth::{
    ApiKeyLayer, JwtAuthLayer, KeySet, Policy, RequirePermissionLayer, RouteTable, SigningKey,
};
use http::Method;
use serde_json::json;
use tower::Layer as _;

fn policy() -> Policy {
    Policy::builder()
        .role("viewer", ["events:read"])
        .role("approver", ["events:read", "events:approve"])
        .role("admin", ["*"])
        .build()
        .unwrap()
}

fn jwt_layer(key: &SigningKey) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::HS256])
        .keys(KeySet::new([key.verifying_key().unwrap()]))
        .policy(policy())
        .build()
        .unwrap()
}

fn user_with_roles(key: &SigningKey, roles: &[&str]) -> String {
    let mut claims = user_claims("u1");
    claims["roles"] = json!(roles);
    sign(key, &claims)
}

#[tokio::test]
async fn a_role_lacking_the_permission_answers_403() {
    let key = SigningKey::hs256(&[5u8; 32]).unwrap().with_kid("u");
    let counter = Counter::default();
    let svc = jwt_layer(&key)
        .layer(RequirePermissionLayer::new("events:approve").layer(counter.service()));

    let (status, headers, body) = send(&svc, bearer(&user_with_roles(&key, &["viewer"]))).await;
    assert!(assert_403(status, &headers, &body).contains("events:approve"));
    assert_eq!(counter.calls(), 0);

    for roles in [&["approver"][..], &["viewer", "approver"], &["admin"]] {
        let (status, _, _) = send(&svc, bearer(&user_with_roles(&key, roles))).await;
        assert_eq!(status, 200, "{roles:?}");
    }
    assert_eq!(counter.calls(), 3);

    // unknown roles and no roles grant nothing
    for roles in [&["root"][..], &[]] {
        let (status, headers, body) = send(&svc, bearer(&user_with_roles(&key, roles))).await;
        assert_403(status, &headers, &body);
    }
    assert_eq!(counter.calls(), 3);
}

#[tokio::test]
async fn a_permission_check_without_an_auth_layer_answers_401() {
    let counter = Counter::default();
    let svc = RequirePermissionLayer::new("events:read").layer(counter.service());
    let (status, headers, body) = send(&svc, http::Request::new(())).await;
    assert_401(status, &headers, &body);
    assert_eq!(counter.calls(), 0);
}

#[tokio::test]
async fn a_route_table_picks_the_permission_per_route() {
    let key = SigningKey::hs256(&[5u8; 32]).unwrap().with_kid("u");
    let table = RouteTable::new()
        .route(
            Method::POST,
            "/api/v1/events/{id}/approve",
            "events:approve",
        )
        .route(Method::GET, "/api/v1/events/**", "events:read");
    let counter = Counter::default();
    let svc = jwt_layer(&key).layer(RequirePermissionLayer::routes(table).layer(counter.service()));
    let viewer = user_with_roles(&key, &["viewer"]);
    let req = |method: Method, path: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {viewer}"))
            .body(())
            .unwrap()
    };
    assert_eq!(
        send(&svc, req(Method::GET, "/api/v1/events/7")).await.0,
        200
    );
    let (status, headers, body) = send(&svc, req(Method::POST, "/api/v1/events/7/approve")).await;
    assert_403(status, &headers, &body);
    // routes outside the table need no permission
    assert_eq!(send(&svc, req(Method::GET, "/api/v1/me")).await.0, 200);
    assert_eq!(counter.calls(), 2);
}

const KEY_A: &str = "internal-key-aaaaaaaaaaaaaaaa";
const KEY_B: &str = "internal-key-bbbbbbbbbbbbbbbb";

#[tokio::test]
async fn api_keys_are_checked_and_rotate() {
    let counter = Counter::default();
    let svc = ApiKeyLayer::builder()
        .key(KEY_A)
        .key(KEY_B)
        .build()
        .unwrap()
        .layer(counter.service());
    let with = |v: &str| {
        http::Request::builder()
            .header("x-internal-auth", v)
            .body(())
            .unwrap()
    };
    assert_eq!(send(&svc, with(KEY_A)).await.0, 200);
    assert_eq!(send(&svc, with(KEY_B)).await.0, 200);
    assert_eq!(counter.calls(), 2);

    for bad in [
        "internal-key-aaaaaaaaaaaaaaab",  // wrong, same length
        "internal-key-aaaaaaaaaaaaaaaaa", // one byte longer
        "internal-key",                   // a prefix
        "",                               // empty
        " ",
    ] {
        let (status, headers, body) = send(&svc, with(bad)).await;
        assert_401(status, &headers, &body);
    }
    let (status, headers, body) = send(&svc, http::Request::new(())).await;
    assert_401(status, &headers, &body);
    // two values for the header
    let req = http::Request::builder()
        .header("x-internal-auth", KEY_A)
        .header("x-internal-auth", KEY_B)
        .body(())
        .unwrap();
    let (status, headers, body) = send(&svc, req).await;
    assert_401(status, &headers, &body);
    assert_eq!(counter.calls(), 2);
}

#[tokio::test]
async fn the_api_key_header_is_configurable_and_keys_validated() {
    let counter = Counter::default();
    let svc = ApiKeyLayer::builder()
        .header(http::HeaderName::from_static("x-ops-key"))
        .key(KEY_A)
        .build()
        .unwrap()
        .layer(counter.service());
    let req = http::Request::builder()
        .header("x-ops-key", KEY_A)
        .body(())
        .unwrap();
    assert_eq!(send(&svc, req).await.0, 200);
    let req = http::Request::builder()
        .header("x-internal-auth", KEY_A)
        .body(())
        .unwrap();
    assert_eq!(send(&svc, req).await.0, 401);

    assert!(ApiKeyLayer::builder().build().is_err());
    assert!(ApiKeyLayer::builder().key("short").build().is_err());
}

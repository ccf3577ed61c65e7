//! Service-to-service tokens: minting, caching, and the server-side layer.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::*;
use forten_auth::jsonwebtoken::Algorithm;
use forten_auth::{
    AuthError, KeySet, Permissions, RequirePermissionLayer, ServiceAuth, ServiceAuthLayer,
    ServiceClaims, ServiceIdentity, SigningKey,
};
use serde_json::json;
use tower::Layer as _;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn caller(name: &str, key: SigningKey, scopes: &[&str]) -> ServiceAuth {
    ServiceAuth::builder(name)
        .signing_key(key)
        .scopes(scopes.iter().copied())
        .build()
        .unwrap()
}

fn hs_key() -> SigningKey {
    SigningKey::hs256(SECRET).unwrap().with_kid("shared-1")
}

fn server(name: &str, keys: KeySet, scopes: &[&str]) -> ServiceAuthLayer {
    ServiceAuthLayer::builder(name, keys)
        .allow_callers(["orders", "gateway"])
        .require_scopes(scopes.iter().copied())
        .build()
        .unwrap()
}

fn claims_of(token: &str) -> ServiceClaims {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[tokio::test]
async fn minted_tokens_carry_the_contract_claims() {
    let auth = caller("orders", hs_key(), &["events:read", "events:write"]);
    let token = auth.token_for("events").unwrap();
    let c = claims_of(&token);
    assert_eq!(c.iss, "orders");
    assert_eq!(c.sub, "orders");
    assert_eq!(c.aud, forten_auth::Audience::One("events".into()));
    assert_eq!(c.scope, "events:read events:write");
    assert_eq!(c.exp - c.iat.unwrap(), 300);
    assert_eq!(c.nbf, c.iat);
    assert_eq!(c.jti.as_deref().map(str::len), Some(36));
    let header = forten_auth::jsonwebtoken::decode_header(&*token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("shared-1"));
    assert_eq!(header.alg, Algorithm::HS256);
}

#[tokio::test(start_paused = true)]
async fn tokens_are_cached_per_target_and_renewed_before_expiry() {
    let auth = ServiceAuth::builder("orders")
        .signing_key(hs_key())
        .lifetime(Duration::from_secs(100))
        .build()
        .unwrap();
    let a1 = auth.token_for("events").unwrap();
    assert_eq!(auth.token_for("events").unwrap(), a1, "not cached");
    let h1 = auth.auth_header("events").unwrap();
    assert_eq!(h1.to_str().unwrap(), format!("Bearer {a1}"));
    let b1 = auth.token_for("billing").unwrap();
    assert_ne!(a1, b1);
    assert_eq!(
        claims_of(&b1).aud,
        forten_auth::Audience::One("billing".into())
    );

    // still cached at 79% of the lifetime
    tokio::time::advance(Duration::from_secs(79)).await;
    assert_eq!(auth.token_for("events").unwrap(), a1);
    // renewed from 80% on: a new jti
    tokio::time::advance(Duration::from_secs(2)).await;
    let a2 = auth.token_for("events").unwrap();
    assert_ne!(a2, a1);
    assert_ne!(claims_of(&a2).jti, claims_of(&a1).jti);
    // clones share the cache
    assert_eq!(auth.clone().token_for("events").unwrap(), a2);
}

#[tokio::test]
async fn builders_reject_bad_settings() {
    assert!(matches!(
        SigningKey::hs256(b"short"),
        Err(AuthError::Config(_))
    ));
    assert!(matches!(
        ServiceAuth::builder("orders").build(),
        Err(AuthError::Config(m)) if m.contains("signing_key")
    ));
    assert!(
        ServiceAuth::builder("orders")
            .signing_key(hs_key())
            .lifetime(Duration::from_secs(1))
            .build()
            .is_err()
    );
    assert!(
        ServiceAuth::builder("orders")
            .signing_key(hs_key())
            .scopes(["two words"])
            .build()
            .is_err()
    );
    assert!(
        ServiceAuthLayer::builder("events", KeySet::default())
            .allow_callers(["orders"])
            .build()
            .is_err(),
        "an empty key set without explicit algorithms"
    );
    let keys = KeySet::new([hs_key().verifying_key().unwrap()]);
    assert!(
        ServiceAuthLayer::builder("events", keys).build().is_err(),
        "no allowed callers"
    );
    assert!(SigningKey::ed25519_pkcs8_der(b"not a key").is_err());
    assert!(
        SigningKey::es256_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .is_err()
    );
}

#[tokio::test]
async fn a_valid_service_token_reaches_the_handler_with_its_identity() {
    for (key, verifying) in [
        {
            let k = hs_key();
            let v = k.verifying_key().unwrap();
            (k, v)
        },
        {
            let (k, p) = ed25519("ed-1");
            (k, ed25519_public("ed-1", &p))
        },
        {
            let (k, _) = es256("es-1");
            let v = k.verifying_key().unwrap();
            (k, v)
        },
    ] {
        let auth = caller("orders", key, &["events:read"]);
        let layer = server("events", KeySet::new([verifying]), &["events:read"]);
        let svc = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            let id = ServiceIdentity::from_extensions(req.extensions())
                .unwrap()
                .clone();
            assert!(
                req.extensions()
                    .get::<Permissions>()
                    .unwrap()
                    .contains("events:read")
            );
            let client = req
                .extensions()
                .get::<forten_auth::ClientIdentity>()
                .unwrap();
            assert_eq!(client.as_str(), "orders");
            Ok::<_, std::convert::Infallible>(http::Response::new(format!(
                "{}:{}",
                id.name,
                id.scopes.join(",")
            )))
        }));
        let (status, _, _) = send(&svc, bearer(&auth.token_for("events").unwrap())).await;
        assert_eq!(status, 200);
        assert_eq!(
            layer.verify(&auth.token_for("events").unwrap()).unwrap(),
            ServiceIdentity {
                name: "orders".into(),
                scopes: vec!["events:read".into()]
            }
        );
    }
}

#[tokio::test]
async fn a_token_for_b_replayed_at_c_is_rejected() {
    let auth = caller("orders", hs_key(), &[]);
    let keys = KeySet::new([hs_key().verifying_key().unwrap()]);
    let counter = Counter::default();
    let c = server("billing", keys.clone(), &[]).layer(counter.service());
    let token_for_events = auth.token_for("events").unwrap();
    let (status, headers, body) = send(&c, bearer(&token_for_events)).await;
    let detail = assert_401(status, &headers, &body);
    assert!(detail.contains("not meant for this service"), "{detail}");
    assert_eq!(counter.calls(), 0);
    // and the same token works where it was meant to go
    let b = server("events", keys, &[]).layer(counter.service());
    assert_eq!(send(&b, bearer(&token_for_events)).await.0, 200);
}

#[tokio::test]
async fn a_caller_outside_the_allow_list_is_rejected() {
    let auth = caller("intruder", hs_key(), &[]);
    let keys = KeySet::new([hs_key().verifying_key().unwrap()]);
    let counter = Counter::default();
    let svc = server("events", keys, &[]).layer(counter.service());
    let (status, headers, body) = send(&svc, bearer(&auth.token_for("events").unwrap())).await;
    assert!(assert_401(status, &headers, &body).contains("issuer"));
    assert_eq!(counter.calls(), 0);
}

#[tokio::test]
async fn a_missing_scope_answers_403() {
    let auth = caller("orders", hs_key(), &["events:read"]);
    let keys = KeySet::new([hs_key().verifying_key().unwrap()]);
    let counter = Counter::default();
    let svc = server("events", keys.clone(), &["events:write"]).layer(counter.service());
    let (status, headers, body) = send(&svc, bearer(&auth.token_for("events").unwrap())).await;
    let detail = assert_403(status, &headers, &body);
    assert!(detail.contains("events:write"), "{detail}");
    assert_eq!(counter.calls(), 0);

    // scopes count as permissions for RequirePermissionLayer too
    let svc = server("events", keys, &[])
        .layer(RequirePermissionLayer::new("events:delete").layer(counter.service()));
    let (status, headers, body) = send(&svc, bearer(&auth.token_for("events").unwrap())).await;
    assert_403(status, &headers, &body);
    assert_eq!(counter.calls(), 0);
}

#[tokio::test]
async fn rotation_across_callers_and_servers() {
    // the caller moves from key k1 to k2; the server accepts both, then retires k1
    let (k1, p1) = ed25519("k1");
    let (k2, p2) = ed25519("k2");
    let keys = KeySet::new([ed25519_public("k1", &p1)]);
    let counter = Counter::default();
    let svc = server("events", keys.clone(), &[]).layer(counter.service());
    let old = caller("orders", k1, &[]).token_for("events").unwrap();
    let new = caller("orders", k2, &[]).token_for("events").unwrap();
    assert_eq!(send(&svc, bearer(&old)).await.0, 200);
    assert_eq!(send(&svc, bearer(&new)).await.0, 401);
    keys.insert(ed25519_public("k2", &p2));
    assert_eq!(send(&svc, bearer(&new)).await.0, 200);
    assert!(keys.retire("k1"));
    let (status, headers, body) = send(&svc, bearer(&old)).await;
    assert_401(status, &headers, &body);
    assert_eq!(counter.calls(), 2);
}

#[tokio::test]
async fn expired_service_tokens_are_rejected() {
    let key = hs_key();
    let t = now();
    let token = key
        .sign(&json!({"iss": "orders", "sub": "orders", "aud": "events",
                      "iat": t - 1000, "exp": t - 600}))
        .unwrap();
    let keys = KeySet::new([key.verifying_key().unwrap()]);
    let counter = Counter::default();
    let svc = server("events", keys, &[]).layer(counter.service());
    let (status, headers, body) = send(&svc, bearer(&token)).await;
    assert!(assert_401(status, &headers, &body).contains("expired"));
    assert_eq!(counter.calls(), 0);
}

#[tokio::test]
async fn the_401_document_carries_the_correlation_id() {
    let keys = KeySet::new([hs_key().verifying_key().unwrap()]);
    let counter = Counter::default();
    let svc = server("events", keys, &[]).layer(counter.service());
    let ctx =
        forten_core::correlation::CorrelationContext::from_values(Some("corr-123"), None, None);
    let mut req = http::Request::new(());
    req.extensions_mut().insert(ctx);
    let (status, headers, body) = send(&svc, req).await;
    assert_401(status, &headers, &body);
    assert_eq!(body["errors"][0]["meta"]["requestId"], "corr-123");
}

#[tokio::test]
async fn a_key_bound_to_an_issuer_cannot_speak_for_another_caller() {
    let (orders_key, orders_pub) = ed25519("orders-1");
    let (gateway_key, gateway_pub) = ed25519("gateway-1");
    let keys = KeySet::new([
        ed25519_public("orders-1", &orders_pub).bound_to_issuer("orders"),
        ed25519_public("gateway-1", &gateway_pub).bound_to_issuer("gateway"),
    ]);
    let counter = Counter::default();
    let svc = server("events", keys, &[]).layer(counter.service());
    // each caller with its own key: accepted
    for (name, key) in [("orders", orders_key.clone()), ("gateway", gateway_key)] {
        let token = caller(name, key, &[]).token_for("events").unwrap();
        assert_eq!(send(&svc, bearer(&token)).await.0, 200, "{name}");
    }
    // orders signs a token claiming to be gateway: rejected
    let forged = caller("gateway", orders_key, &[])
        .token_for("events")
        .unwrap();
    let (status, headers, body) = send(&svc, bearer(&forged)).await;
    assert!(assert_401(status, &headers, &body).contains("issuer"));
    assert_eq!(counter.calls(), 2);
}

#[tokio::test]
async fn the_client_layer_sends_a_token_the_server_accepts() {
    use tower::ServiceExt as _;
    let auth = caller("orders", hs_key(), &["events:read"]);
    let keys = KeySet::new([hs_key().verifying_key().unwrap()]);
    let counter = Counter::default();
    let server = server("events", keys, &["events:read"]).layer(counter.service());
    // the "network": hand the outbound request to the server stack
    let client = forten_auth::ServiceTokenLayer::new(auth.clone(), "events").layer(
        tower::service_fn(move |req: http::Request<()>| {
            let server = server.clone();
            async move { server.oneshot(req).await }
        }),
    );
    let res = client
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(counter.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_client_layer_shares_the_cached_token_and_renews_it() {
    use tower::ServiceExt as _;
    let auth = ServiceAuth::builder("orders")
        .signing_key(hs_key())
        .lifetime(Duration::from_secs(100))
        .build()
        .unwrap();
    let sent = |layer: forten_auth::ServiceTokenLayer| async move {
        let client = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(req.headers()["authorization"].clone())
        }));
        client.oneshot(http::Request::new(())).await.unwrap()
    };
    let layer = forten_auth::ServiceTokenLayer::new(auth.clone(), "events");
    // made before the layer: the layer sends that very token
    let before = auth.auth_header("events").unwrap();
    assert_eq!(sent(layer.clone()).await, before);
    // a token minted through the layer is the one auth_header then answers
    tokio::time::advance(Duration::from_secs(81)).await;
    let renewed = sent(layer.clone()).await;
    assert_ne!(renewed, before, "renewed from 80% of the lifetime on");
    assert_eq!(auth.auth_header("events").unwrap(), renewed);
    // another target's layer has its own token
    let billing = sent(forten_auth::ServiceTokenLayer::new(auth.clone(), "billing")).await;
    assert_ne!(billing, renewed);
    assert_eq!(auth.auth_header("billing").unwrap(), billing);
}

//! JWKS: keys from a URL (served by wiremock), refresh, stale keys, and the
//! refetch rate limit on unknown kids.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::*;
use forten_auth::jsonwebtoken::Algorithm;
use forten_auth::{JwksCache, JwtAuthLayer};
use serde_json::{Value, json};
use tower::Layer as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn okp(kid: &str, public: &[u8]) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(public), "kid": kid, "alg": "EdDSA", "use": "sig"})
}

async fn serve(server: &MockServer, keys: Vec<Value>) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": keys})))
        .mount(server)
        .await;
}

fn cache(server: &MockServer, min_refetch: Duration) -> JwksCache {
    JwksCache::builder(format!("{}/jwks.json", server.uri()).parse().unwrap())
        .min_refetch_interval(min_refetch)
        .build()
        .unwrap()
}

fn layer(jwks: &JwksCache) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::EdDSA, Algorithm::HS256])
        .jwks(jwks)
        .build()
        .unwrap()
}

/// Waits (at most 5 s) until `cond` holds.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn keys_from_the_jwks_verify_tokens() {
    let server = MockServer::start().await;
    let (k1, p1) = ed25519("k1");
    serve(&server, vec![okp("k1", &p1)]).await;
    let jwks = cache(&server, Duration::from_secs(30));
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    let counter = Counter::default();
    let svc = layer(&jwks).layer(counter.service());
    assert_eq!(
        send(&svc, bearer(&sign(&k1, &user_claims("u1")))).await.0,
        200
    );
    assert_eq!(counter.calls(), 1);
}

#[tokio::test]
async fn unknown_kids_cause_at_most_one_fetch_per_interval() {
    let server = MockServer::start().await;
    let (_, p1) = ed25519("k1");
    serve(&server, vec![okp("k1", &p1)]).await;
    let jwks = cache(&server, Duration::from_secs(3600));
    jwks.refresh().await.unwrap();
    assert_eq!(jwks.fetches(), 1);

    let counter = Counter::default();
    let svc = layer(&jwks).layer(counter.service());
    for i in 0..100 {
        let (attacker, _) = ed25519(&format!("made-up-{i}"));
        let (status, headers, body) =
            send(&svc, bearer(&sign(&attacker, &user_claims("u1")))).await;
        assert_401(status, &headers, &body);
    }
    assert_eq!(counter.calls(), 0);
    // exactly one refetch was started, and it reaches the server
    eventually("the refetch", || jwks.fetches() == 2).await;
    let server_ref = &server;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server_ref.received_requests().await.unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_newly_published_key_is_fetched_on_its_unknown_kid() {
    let server = MockServer::start().await;
    let (_, p1) = ed25519("k1");
    let (k2, p2) = ed25519("k2");
    serve(&server, vec![okp("k1", &p1)]).await;
    let jwks = cache(&server, Duration::from_secs(30));
    jwks.refresh().await.unwrap();
    serve(&server, vec![okp("k1", &p1), okp("k2", &p2)]).await;

    let counter = Counter::default();
    let svc = layer(&jwks).layer(counter.service());
    let token = sign(&k2, &user_claims("u1"));
    // the first sight of k2 is rejected and triggers the refetch
    assert_eq!(send(&svc, bearer(&token)).await.0, 401);
    let keys = jwks.keys();
    eventually("k2 in the set", || keys.kids().contains(&"k2".to_owned())).await;
    assert_eq!(send(&svc, bearer(&token)).await.0, 200);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_previous_keys() {
    let server = MockServer::start().await;
    let (k1, p1) = ed25519("k1");
    serve(&server, vec![okp("k1", &p1)]).await;
    let jwks = cache(&server, Duration::from_secs(30));
    jwks.refresh().await.unwrap();
    let counter = Counter::default();
    let svc = layer(&jwks).layer(counter.service());
    let token = sign(&k1, &user_claims("u1"));

    for failure in [
        ResponseTemplate::new(500),
        ResponseTemplate::new(200).set_body_string("not json"),
        ResponseTemplate::new(200).set_body_json(json!({"keys": []})),
        ResponseTemplate::new(200).set_body_string("x".repeat(300 * 1024)),
    ] {
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(failure)
            .mount(&server)
            .await;
        assert!(jwks.refresh().await.is_err());
        assert_eq!(jwks.keys().kids(), vec!["k1".to_owned()]);
        assert_eq!(send(&svc, bearer(&token)).await.0, 200);
    }
}

#[tokio::test]
async fn symmetric_keys_in_a_jwks_are_skipped() {
    let server = MockServer::start().await;
    let (_, p1) = ed25519("k1");
    let secret = [9u8; 32];
    serve(
        &server,
        vec![
            okp("k1", &p1),
            json!({"kty": "oct", "k": b64(&secret), "kid": "sym", "alg": "HS256"}),
        ],
    )
    .await;
    let jwks = cache(&server, Duration::from_secs(30));
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert_eq!(jwks.keys().kids(), vec!["k1".to_owned()]);
    let counter = Counter::default();
    let svc = layer(&jwks).layer(counter.service());
    let token = forge_hs256(
        &json!({"alg": "HS256", "kid": "sym"}),
        &user_claims("admin"),
        &secret,
    );
    let (status, headers, body) = send(&svc, bearer(&token)).await;
    assert_401(status, &headers, &body);
    assert_eq!(counter.calls(), 0);
}

#[tokio::test]
async fn the_background_refresher_follows_the_published_set() {
    let server = MockServer::start().await;
    let (_, p1) = ed25519("k1");
    let (_, p2) = ed25519("k2");
    serve(&server, vec![okp("k1", &p1)]).await;
    let jwks = JwksCache::builder(format!("{}/jwks.json", server.uri()).parse().unwrap())
        .refresh_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let task = jwks.spawn_refresher();
    let keys = jwks.keys();
    eventually("the first fetch", || keys.kids() == vec!["k1".to_owned()]).await;
    serve(&server, vec![okp("k2", &p2)]).await;
    eventually("the periodic refresh", || {
        keys.kids() == vec!["k2".to_owned()]
    })
    .await;
    // the task ends once every handle is gone
    drop(jwks);
    drop(keys);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("refresher did not stop")
        .unwrap();
}

#[test]
fn the_builder_validates() {
    let https = JwksCache::builder("https://idp.example/jwks.json".parse().unwrap()).build();
    assert!(matches!(https, Err(forten_auth::AuthError::Config(m)) if m.contains("fetch_with")));
    let fast = JwksCache::builder("http://idp/jwks.json".parse().unwrap())
        .min_refetch_interval(Duration::from_millis(10))
        .build();
    assert!(fast.is_err());
    let custom = JwksCache::builder("https://idp.example/jwks.json".parse().unwrap())
        .fetch_with(|_uri| Box::pin(async { Ok(bytes::Bytes::from_static(b"{\"keys\":[]}")) }))
        .build();
    assert!(custom.is_ok());
}

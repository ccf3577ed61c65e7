//! Attacks on token verification: each must answer 401 and never run the handler.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use forten_auth::jsonwebtoken::{Algorithm, Header, jwk::Jwk};
use forten_auth::{JwtAuthLayer, KeySet, SigningKey, VerifyingKey};
use serde_json::json;
use tower::Layer as _;

struct Setup {
    ed: SigningKey,
    es: SigningKey,
    es_public: Vec<u8>,
    keys: KeySet,
}

fn setup() -> Setup {
    let (ed, ed_public) = ed25519("ed-1");
    let (es, es_public) = es256("es-1");
    let keys = KeySet::new([
        ed25519_public("ed-1", &ed_public),
        VerifyingKey::es256_uncompressed(&es_public)
            .unwrap()
            .with_kid("es-1"),
    ]);
    Setup {
        ed,
        es,
        es_public,
        keys,
    }
}

fn layer(keys: &KeySet, algorithms: &[Algorithm]) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms(algorithms.iter().copied())
        .keys(keys.clone())
        .build()
        .unwrap()
}

/// Sends `token` through a fresh stack; asserts 401 and that the handler never ran.
async fn rejected(layer: &JwtAuthLayer, token: &str) -> String {
    let counter = Counter::default();
    let svc = layer.layer(counter.service());
    let (status, headers, body) = send(&svc, bearer(token)).await;
    let detail = assert_401(status, &headers, &body);
    assert_eq!(counter.calls(), 0, "handler ran for a rejected token");
    detail
}

async fn accepted(layer: &JwtAuthLayer, token: &str) {
    let counter = Counter::default();
    let svc = layer.layer(counter.service());
    let (status, _, body) = send(&svc, bearer(token)).await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(counter.calls(), 1);
}

#[tokio::test]
async fn a_valid_token_passes_both_key_types() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA, Algorithm::ES256]);
    accepted(&l, &sign(&s.ed, &user_claims("u1"))).await;
    accepted(&l, &sign(&s.es, &user_claims("u1"))).await;
}

#[tokio::test]
async fn alg_none_in_any_case_is_rejected() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA, Algorithm::ES256]);
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("ed-1")] {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            // empty signature, and a signature copied from a real token
            let real = sign(&s.ed, &user_claims("u1"));
            let real_sig = real.rsplit('.').next().unwrap().to_owned();
            let unsigned = forge(&header, &user_claims("admin"), b"");
            assert!(unsigned.ends_with('.'));
            let detail = rejected(&l, &unsigned).await;
            assert!(detail.contains("algorithm"), "{alg}: {detail}");
            let stolen_sig = format!("{unsigned}{real_sig}");
            rejected(&l, &stolen_sig).await;
        }
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_as_secret_is_rejected() {
    let s = setup();
    // the public key as a verifier holds it, in the forms an attacker would try
    let pem = vec![s.es_public.clone(), b64(&s.es_public).into_bytes()];
    // worst case: the operator allowed HS256 next to ES256
    for algorithms in [
        vec![Algorithm::ES256],
        vec![Algorithm::ES256, Algorithm::HS256],
    ] {
        let l = layer(&s.keys, &algorithms);
        for secret in &pem {
            for kid in [Some("es-1"), None] {
                let mut header = json!({"alg": "HS256", "typ": "JWT"});
                if let Some(kid) = kid {
                    header["kid"] = json!(kid);
                }
                let token = forge_hs256(&header, &user_claims("admin"), secret);
                rejected(&l, &token).await;
            }
        }
    }
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_is_rejected() {
    let s = setup();
    // the ES256 key is in the set, but only EdDSA is allowed
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let detail = rejected(&l, &sign(&s.es, &user_claims("u1"))).await;
    assert!(detail.contains("algorithm"), "{detail}");
    // and a header claiming an allowed alg over a key of another algorithm
    let mut header = s.es.header();
    header.alg = Algorithm::EdDSA;
    let body = sign(&s.es, &user_claims("u1"));
    let parts: Vec<&str> = body.split('.').collect();
    let swapped = format!(
        "{}.{}.{}",
        b64(serde_json::to_string(&header).unwrap().as_bytes()),
        parts[1],
        parts[2]
    );
    rejected(&l, &swapped).await;
}

#[tokio::test]
async fn stripped_truncated_or_altered_signatures_are_rejected() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let token = sign(&s.ed, &user_claims("u1"));
    let (message, sig) = token.rsplit_once('.').unwrap();
    rejected(&l, message).await; // two parts
    rejected(&l, &format!("{message}.")).await; // empty signature
    rejected(&l, &format!("{message}.{}", &sig[..sig.len() - 4])).await; // truncated
    rejected(&l, &format!("{message}.{}", &sig[..1])).await;
    let mut flipped = sig.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    rejected(
        &l,
        &format!("{message}.{}", String::from_utf8(flipped).unwrap()),
    )
    .await;
    // claims altered after signing
    let (header, _) = message.split_once('.').unwrap();
    let mut claims = user_claims("u1");
    claims["roles"] = json!(["admin"]);
    let tampered = format!("{header}.{}.{sig}", b64(claims.to_string().as_bytes()));
    rejected(&l, &tampered).await;
}

#[tokio::test]
async fn embedded_jwk_and_jku_headers_are_ignored() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let (attacker, attacker_public) = ed25519("attacker");
    let attacker_jwk: Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "x": b64(&attacker_public), "kid": "attacker"
    }))
    .unwrap();
    let server = wiremock::MockServer::start().await;
    for kid in ["attacker", "ed-1"] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        header.jwk = Some(attacker_jwk.clone());
        header.jku = Some(format!("{}/evil-jwks.json", server.uri()));
        let token = attacker
            .sign_with_header(&header, &user_claims("admin"))
            .unwrap();
        rejected(&l, &token).await;
    }
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "the verifier fetched a jku"
    );
}

#[tokio::test]
async fn time_claims_are_checked_with_the_leeway() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let t = now();
    let mut expired = user_claims("u1");
    expired["exp"] = json!(t - 120);
    let d = rejected(&l, &sign(&s.ed, &expired)).await;
    assert!(d.contains("expired"), "{d}");
    // within the default 30 s leeway: still accepted
    let mut just = user_claims("u1");
    just["exp"] = json!(t - 5);
    accepted(&l, &sign(&s.ed, &just)).await;

    let mut future = user_claims("u1");
    future["nbf"] = json!(t + 120);
    let d = rejected(&l, &sign(&s.ed, &future)).await;
    assert!(d.contains("not valid yet"), "{d}");
}

#[tokio::test]
async fn required_claims_must_be_present() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    for claim in ["exp", "aud", "iss", "sub"] {
        let mut claims = user_claims("u1");
        claims.as_object_mut().unwrap().remove(claim);
        let d = rejected(&l, &sign(&s.ed, &claims)).await;
        assert!(d.contains(claim), "{claim}: {d}");
    }
}

#[tokio::test]
async fn wrong_audience_or_issuer_is_rejected() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let mut claims = user_claims("u1");
    claims["aud"] = json!("billing");
    let d = rejected(&l, &sign(&s.ed, &claims)).await;
    assert!(d.contains("not meant for this service"), "{d}");
    claims["aud"] = json!(["billing", "reports"]);
    rejected(&l, &sign(&s.ed, &claims)).await;

    let mut claims = user_claims("u1");
    claims["iss"] = json!("evil-issuer");
    let d = rejected(&l, &sign(&s.ed, &claims)).await;
    assert!(d.contains("issuer"), "{d}");
}

#[tokio::test]
async fn malformed_tokens_are_rejected() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let good = sign(&s.ed, &user_claims("u1"));
    let parts: Vec<&str> = good.split('.').collect();
    for token in [
        "!!!.###.$$$".to_owned(),
        "a.b.c".to_owned(),
        "...".to_owned(),
        "x".to_owned(),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"{not json"), parts[2]),
        format!("{}.{}.{}", parts[0], "%%%", parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], "%%%"),
    ] {
        rejected(&l, &token).await;
    }
    // validly signed, but the payload is not a JSON object
    let header = s.ed.header();
    let message = format!(
        "{}.{}",
        b64(serde_json::to_string(&header).unwrap().as_bytes()),
        b64(b"[1,2,3]")
    );
    let sig = forten_auth::jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &forten_auth::jsonwebtoken::EncodingKey::from_secret(&[0u8; 32]),
        Algorithm::HS256,
    )
    .unwrap();
    rejected(&l, &format!("{message}.{sig}")).await;
}

#[tokio::test]
async fn oversized_tokens_are_rejected_before_parsing() {
    let s = setup();
    let default = layer(&s.keys, &[Algorithm::EdDSA]);
    let huge = "a".repeat(9_000);
    let d = rejected(&default, &huge).await;
    assert!(d.contains("8192"), "{d}");

    // a configured smaller limit rejects an otherwise valid token
    let small = JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::EdDSA])
        .keys(s.keys.clone())
        .max_token_bytes(256)
        .build()
        .unwrap();
    let mut claims = user_claims("u1");
    claims["padding"] = json!("p".repeat(300));
    let token = sign(&s.ed, &claims);
    rejected(&small, &token).await;
    accepted(&default, &token).await;
}

#[tokio::test]
async fn missing_or_odd_authorization_headers_are_rejected() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let token = sign(&s.ed, &user_claims("u1"));
    for req in [
        http::Request::new(()),
        http::Request::builder()
            .header("authorization", "")
            .body(())
            .unwrap(),
        http::Request::builder()
            .header("authorization", "Bearer")
            .body(())
            .unwrap(),
        http::Request::builder()
            .header("authorization", "Bearer ")
            .body(())
            .unwrap(),
        http::Request::builder()
            .header("authorization", format!("Basic {token}"))
            .body(())
            .unwrap(),
        http::Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap(),
    ] {
        let counter = Counter::default();
        let svc = l.layer(counter.service());
        let (status, headers, body) = send(&svc, req).await;
        assert_401(status, &headers, &body);
        assert_eq!(counter.calls(), 0);
    }
    // the scheme is case-insensitive
    let counter = Counter::default();
    let svc = l.layer(counter.service());
    let req = http::Request::builder()
        .header("authorization", format!("bearer {token}"))
        .body(())
        .unwrap();
    assert_eq!(send(&svc, req).await.0, 200);
}

#[tokio::test]
async fn a_rotated_in_key_is_accepted_and_a_retired_key_rejected() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let old = sign(&s.ed, &user_claims("u1"));
    accepted(&l, &old).await;

    let (next, next_public) = ed25519("ed-2");
    let new = sign(&next, &user_claims("u1"));
    let d = rejected(&l, &new).await;
    assert!(d.contains("unknown key"), "{d}");

    s.keys.insert(ed25519_public("ed-2", &next_public));
    accepted(&l, &new).await;
    accepted(&l, &old).await;

    assert!(s.keys.retire("ed-1"));
    rejected(&l, &old).await;
    accepted(&l, &new).await;
}

#[tokio::test]
async fn claims_reach_the_handler() {
    let s = setup();
    let l = layer(&s.keys, &[Algorithm::EdDSA]);
    let mut claims = user_claims("user-42");
    claims["roles"] = json!("viewer approver");
    claims["tenant_tier"] = json!("gold");
    let svc = l.layer(tower::service_fn(|req: http::Request<()>| async move {
        let c = forten_auth::UserClaims::from_extensions(req.extensions())
            .unwrap()
            .clone();
        let subject = req
            .extensions()
            .get::<forten_auth::ClientIdentity>()
            .unwrap()
            .clone();
        assert_eq!(subject.as_str(), "user-42");
        Ok::<_, std::convert::Infallible>(http::Response::new(
            serde_json::to_string(&json!({
                "sub": c.subject, "roles": c.roles, "org": c.organisation,
                "tier": c.custom.get("tenant_tier"), "iss": c.issuer,
            }))
            .unwrap(),
        ))
    }));
    let (status, _, body) = send(&svc, bearer(&sign(&s.ed, &claims))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"sub": "user-42", "roles": ["viewer", "approver"], "org": "acme",
               "tier": "gold", "iss": "auth-service"})
    );
}

//! `cache_verified`: a token seen again skips verification, and nothing else
//! gets through because of it (altered tokens, retired keys, expired tokens,
//! missing scopes all still fail).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;

use common::*;
use forten_auth::jsonwebtoken::Algorithm;
use forten_auth::{
    JwtAuthLayer, KeySet, Permissions, Policy, ServiceAuth, ServiceAuthLayer, ServiceIdentity,
    SigningKey, UserClaims,
};
use http::{Request, Response};
use http_body_util::Either;
use serde_json::json;
use tower::{Layer as _, ServiceExt as _};

const SECRET: &[u8] = b"a shared secret of 32 bytes or more!";

fn user_layer(keys: &KeySet) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::HS256])
        .keys(keys.clone())
        .policy(
            Policy::builder()
                .role("viewer", ["events:read"])
                .build()
                .unwrap(),
        )
        .cache_verified(16)
        .build()
        .unwrap()
}

fn user_setup() -> (SigningKey, KeySet, JwtAuthLayer) {
    let key = SigningKey::hs256(SECRET).unwrap().with_kid("u1");
    let keys = KeySet::new([key.verifying_key().unwrap()]);
    let layer = user_layer(&keys);
    (key, keys, layer)
}

/// What the handler saw: the claims and permissions in extensions.
async fn seen(layer: &JwtAuthLayer, token: &str) -> Result<(Arc<UserClaims>, Permissions), u16> {
    let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
        let claims = req.extensions().get::<Arc<UserClaims>>().cloned();
        let permissions = req.extensions().get::<Permissions>().cloned();
        Ok::<_, std::convert::Infallible>(Response::new(claims.zip(permissions)))
    }));
    let res = svc.oneshot(bearer(token)).await.unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    match res.into_body() {
        Either::Left(inner) => Ok(inner.unwrap()),
        Either::Right(_) => Err(0),
    }
}

#[tokio::test]
async fn a_token_seen_again_passes_with_the_same_claims_and_permissions() {
    let (key, _keys, layer) = user_setup();
    let token = sign(&key, &user_claims("ada"));
    let first = seen(&layer, &token).await.unwrap();
    let again = seen(&layer, &token).await.unwrap();
    assert_eq!(first, again);
    // The hit hands out the cached claims themselves, not a copy.
    assert!(Arc::ptr_eq(&first.0, &again.0));
    assert_eq!(again.0.subject, "ada");
    assert_eq!(again.0.organisation.as_deref(), Some("acme"));
    assert!(again.1.contains("events:read"));
    // Outside a stack too.
    assert_eq!(layer.verify(&token).unwrap(), *first.0);
    let shared = layer.verify_shared(&token).unwrap();
    assert!(
        Arc::ptr_eq(shared.claims(), &first.0),
        "verify_shared hands out the cached claims, not a copy"
    );
    assert_eq!(shared.permissions(), Some(&first.1));
}

#[tokio::test]
async fn verify_shared_refuses_what_the_layer_refuses_and_has_no_permissions_without_a_policy() {
    let (key, keys, layer) = user_setup();
    let token = sign(&key, &user_claims("ada"));
    // The signature's first character changed: 6 bits of the MAC differ.
    let at = token.rfind('.').unwrap() + 1;
    let swap = if token[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let altered = format!("{}{swap}{}", &token[..at], &token[at + 1..]);
    assert!(layer.verify_shared(&altered).is_err());
    assert!(layer.verify_shared("not a token").is_err());

    let no_policy = JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::HS256])
        .keys(keys)
        .build()
        .unwrap();
    let user = no_policy.verify_shared(&token).unwrap();
    assert_eq!(user.claims().subject, "ada");
    assert!(user.permissions().is_none());
}

#[tokio::test]
async fn altered_tokens_fail_after_the_original_was_cached() {
    let (key, _keys, layer) = user_setup();
    let token = sign(&key, &user_claims("ada"));
    seen(&layer, &token).await.unwrap();

    let (rest, signature) = token.rsplit_once('.').unwrap();
    let mut flipped = signature.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{rest}.{}", String::from_utf8(flipped).unwrap());
    let truncated = &token[..token.len() - 1];
    let mut claims = user_claims("ada");
    claims["roles"] = json!(["admin"]);
    let (header, _) = token.split_once('.').unwrap();
    let swapped_payload = format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    );
    let other_secret = forge_hs256(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "u1"}),
        &user_claims("ada"),
        b"another secret of 32 bytes or more!!",
    );
    for bad in [flipped.as_str(), truncated, &swapped_payload, &other_secret] {
        assert_eq!(seen(&layer, bad).await.unwrap_err(), 401, "{bad}");
    }
    // The original still passes.
    seen(&layer, &token).await.unwrap();
}

#[tokio::test]
async fn retiring_the_key_fails_a_cached_user_token_at_once() {
    let (key, keys, layer) = user_setup();
    let token = sign(&key, &user_claims("ada"));
    seen(&layer, &token).await.unwrap();
    assert!(keys.retire("u1"));
    assert_eq!(seen(&layer, &token).await.unwrap_err(), 401);
    // Putting the key back makes it valid again (verified afresh).
    keys.insert(key.verifying_key().unwrap());
    seen(&layer, &token).await.unwrap();
}

#[tokio::test]
async fn expired_tokens_are_never_cached() {
    let (key, _keys, layer) = user_setup();
    let mut claims = user_claims("ada");
    claims["exp"] = json!(now() - 120);
    let token = sign(&key, &claims);
    assert_eq!(seen(&layer, &token).await.unwrap_err(), 401);
    assert_eq!(seen(&layer, &token).await.unwrap_err(), 401);
}

fn service_setup(required: &[&str]) -> (ServiceAuth, KeySet, ServiceAuthLayer) {
    let key = SigningKey::hs256(SECRET).unwrap().with_kid("s1");
    let keys = KeySet::new([key.verifying_key().unwrap()]);
    let caller = ServiceAuth::builder("orders")
        .signing_key(key)
        .scopes(["events:read"])
        .build()
        .unwrap();
    let layer = ServiceAuthLayer::builder("events", keys.clone())
        .allow_callers(["orders"])
        .require_scopes(required.iter().copied())
        .cache_verified(4)
        .build()
        .unwrap();
    (caller, keys, layer)
}

async fn service_status(layer: &ServiceAuthLayer, token: &str) -> (u16, Option<ServiceIdentity>) {
    let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(
            ServiceIdentity::from_extensions(req.extensions()).cloned(),
        ))
    }));
    let res = svc.oneshot(bearer(token)).await.unwrap();
    let status = res.status().as_u16();
    match res.into_body() {
        Either::Left(identity) => (status, identity),
        Either::Right(_) => (status, None),
    }
}

#[tokio::test]
async fn a_cached_service_token_passes_until_its_key_is_retired() {
    let (caller, keys, layer) = service_setup(&[]);
    let token = caller.token_for("events").unwrap();
    for _ in 0..3 {
        let (status, identity) = service_status(&layer, &token).await;
        assert_eq!(status, 200);
        let identity = identity.unwrap();
        assert_eq!(identity.name, "orders");
        assert!(identity.has_scope("events:read"));
    }
    assert_eq!(layer.verify(&token).unwrap().name, "orders");
    assert!(keys.retire("s1"));
    assert_eq!(service_status(&layer, &token).await.0, 401);
}

#[tokio::test]
async fn a_cached_service_token_hands_out_the_same_identity() {
    let (caller, _keys, layer) = service_setup(&[]);
    let token = caller.token_for("events").unwrap();
    let seen = || {
        let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(Response::new(
                req.extensions().get::<Arc<ServiceIdentity>>().cloned(),
            ))
        }));
        let token = token.clone();
        async move {
            match svc.oneshot(bearer(&token)).await.unwrap().into_body() {
                Either::Left(identity) => identity.unwrap(),
                Either::Right(_) => panic!("refused"),
            }
        }
    };
    let (first, again) = (seen().await, seen().await);
    assert!(
        Arc::ptr_eq(&first, &again),
        "shared, not copied per request"
    );
}

#[tokio::test]
async fn a_missing_scope_is_refused_every_time() {
    let (caller, _keys, layer) = service_setup(&["events:write"]);
    let token = caller.token_for("events").unwrap();
    assert_eq!(service_status(&layer, &token).await.0, 403);
    assert_eq!(service_status(&layer, &token).await.0, 403);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_every_time() {
    let (caller, _keys, layer) = service_setup(&[]);
    let token = caller.token_for("billing").unwrap();
    assert_eq!(service_status(&layer, &token).await.0, 401);
    assert_eq!(service_status(&layer, &token).await.0, 401);
}

/// The [`UserToken`](forten_auth::UserToken) the handler saw, if any.
async fn token_seen(layer: &JwtAuthLayer, token: &str) -> Option<forten_auth::UserToken> {
    let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
        let kept = forten_auth::UserToken::from_extensions(req.extensions()).cloned();
        Ok::<_, std::convert::Infallible>(Response::new(kept))
    }));
    let res = svc.oneshot(bearer(token)).await.unwrap();
    assert_eq!(res.status(), 200);
    match res.into_body() {
        Either::Left(kept) => kept,
        Either::Right(_) => None,
    }
}

#[tokio::test]
async fn a_kept_token_is_the_one_sent_and_is_not_kept_unless_asked() {
    let (key, keys, layer) = user_setup();
    let token = sign(&key, &user_claims("ada"));
    assert_eq!(
        token_seen(&layer, &token).await,
        None,
        "not kept by default"
    );
    let keeping = JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::HS256])
        .keys(keys)
        .cache_verified(16)
        .keep_token()
        .build()
        .unwrap();
    let first = token_seen(&keeping, &token).await.unwrap();
    assert_eq!(first.as_str(), token);
    assert_eq!(first.header_value(), token.as_str());
    // from the cache: the same value again
    let again = token_seen(&keeping, &token).await.unwrap();
    assert_eq!(again, first);
    let other = sign(&key, &user_claims("bob"));
    assert_eq!(token_seen(&keeping, &other).await.unwrap().as_str(), other);
}

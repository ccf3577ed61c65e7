//! Shared helpers for forten-auth's behaviour tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test binaries

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use forten_auth::{SigningKey, VerifyingKey};
use http::{Request, Response};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::{Service, ServiceExt as _};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh Ed25519 key pair: signing key and the raw 32-byte public key.
pub fn ed25519(kid: &str) -> (SigningKey, Vec<u8>) {
    let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
    let public = Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let key = SigningKey::ed25519_pkcs8_der(doc.as_ref())
        .unwrap()
        .with_kid(kid.to_owned());
    (key, public)
}

/// A fresh P-256 key pair: signing key and the 65-byte uncompressed public point.
pub fn es256(kid: &str) -> (SigningKey, Vec<u8>) {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let key = SigningKey::es256_pkcs8_der(doc.as_ref())
        .unwrap()
        .with_kid(kid.to_owned());
    (key, public)
}

/// The verifying half of a generated key.
pub fn ed25519_public(kid: &str, public: &[u8]) -> VerifyingKey {
    VerifyingKey::ed25519_raw(public)
        .unwrap()
        .with_kid(kid.to_owned())
}

/// Claims a user token normally carries, valid for 10 minutes.
pub fn user_claims(sub: &str) -> Value {
    let t = now();
    json!({"iss": "auth-service", "aud": "api-gateway", "sub": sub,
           "iat": t, "nbf": t, "exp": t + 600, "roles": ["viewer"], "org": "acme"})
}

/// Signs `claims` with `key` (its own algorithm and kid).
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    key.sign(claims).unwrap()
}

/// Forges a compact token from raw parts: header JSON, claims JSON and signature bytes.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

/// HMAC-SHA256 over `message` with `secret` (for forged HS256 tokens).
pub fn hmac256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}

/// A forged HS256 token over `header` and `claims` keyed with `secret`.
pub fn forge_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = hmac256(secret, message.as_bytes());
    format!("{message}.{}", b64(&sig))
}

/// A handler that counts its calls and answers 200 "ok".
#[derive(Clone, Default)]
pub struct Counter(pub Arc<AtomicUsize>);

impl Counter {
    pub fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send {
        let n = self.0.clone();
        tower::service_fn(move |_req: Request<()>| {
            n.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, Infallible>(Response::new("ok".to_owned())))
        })
    }
}

pub fn bearer(token: &str) -> Request<()> {
    Request::builder()
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap()
}

/// Sends `req` and returns status, headers and the parsed JSON body (Null if not JSON).
pub async fn send<S, B>(svc: &S, req: Request<()>) -> (http::StatusCode, http::HeaderMap, Value)
where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let res = svc.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

/// Asserts a 401 JSON:API document with WWW-Authenticate; returns its detail.
pub fn assert_401(status: http::StatusCode, headers: &http::HeaderMap, body: &Value) -> String {
    assert_eq!(status, 401, "body: {body}");
    assert_eq!(
        headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(headers["content-type"], "application/vnd.api+json");
    assert_eq!(body["errors"][0]["code"], "UNAUTHENTICATED");
    body["errors"][0]["detail"].as_str().unwrap().to_owned()
}

/// Asserts a 403 JSON:API document; returns its detail.
pub fn assert_403(status: http::StatusCode, headers: &http::HeaderMap, body: &Value) -> String {
    assert_eq!(status, 403, "body: {body}");
    assert!(headers.get("www-authenticate").is_none());
    assert_eq!(body["errors"][0]["code"], "FORBIDDEN");
    body["errors"][0]["detail"].as_str().unwrap().to_owned()
}

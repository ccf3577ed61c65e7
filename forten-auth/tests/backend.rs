//! jsonwebtoken 11 panics at the first sign/verify unless exactly one crypto
//! backend feature is on in the whole build. This signs and verifies with
//! every algorithm forten-auth supports, under the workspace's feature set.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use forten_auth::jsonwebtoken::Algorithm;
use forten_auth::{JwtAuthLayer, KeySet, SigningKey, VerifyingKey};

#[test]
fn the_workspace_crypto_backend_signs_and_verifies() {
    let (ed, ed_pub) = ed25519("ed");
    let (es, _) = es256("es");
    let hs = SigningKey::hs256(&[1u8; 32]).unwrap().with_kid("hs");
    let keys = KeySet::new([
        ed25519_public("ed", &ed_pub),
        ed.verifying_key().unwrap(), // derived public half (same kid, replaces)
        es.verifying_key().unwrap(),
        VerifyingKey::hs256(&[1u8; 32]).unwrap().with_kid("hs"),
    ]);
    assert_eq!(keys.len(), 3);
    let layer = JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::EdDSA, Algorithm::ES256, Algorithm::HS256])
        .keys(keys)
        .build()
        .unwrap();
    for key in [&ed, &es, &hs] {
        let claims = layer.verify(&sign(key, &user_claims("u1"))).unwrap();
        assert_eq!(claims.subject, "u1");
    }
}

#[test]
fn pem_keys_load() {
    // generated with: openssl genpkey -algorithm ed25519 / -algorithm EC -pkeyopt ec_paramgen_curve:P-256
    let ed_private = include_bytes!("fixtures/ed25519-private.pem");
    let ed_public = include_bytes!("fixtures/ed25519-public.pem");
    let es_private = include_bytes!("fixtures/es256-private.pem");
    let es_public = include_bytes!("fixtures/es256-public.pem");
    let ed = SigningKey::ed25519_pem(ed_private).unwrap().with_kid("ed");
    let es = SigningKey::es256_pem(es_private).unwrap().with_kid("es");
    let keys = KeySet::new([
        VerifyingKey::ed25519_pem(ed_public).unwrap().with_kid("ed"),
        VerifyingKey::es256_pem(es_public).unwrap().with_kid("es"),
    ]);
    let layer = JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::EdDSA, Algorithm::ES256])
        .keys(keys)
        .build()
        .unwrap();
    for key in [&ed, &es] {
        assert!(layer.verify(&sign(key, &user_claims("u1"))).is_ok());
    }
    assert!(VerifyingKey::ed25519_pem(es_public).is_err());
}

#[test]
fn the_jwt_builder_validates() {
    let keys = || KeySet::new([VerifyingKey::hs256(&[1u8; 32]).unwrap()]);
    let full = || {
        JwtAuthLayer::builder()
            .issuer("auth-service")
            .audience("api-gateway")
            .algorithms([Algorithm::HS256])
    };
    assert!(full().keys(keys()).build().is_ok());
    assert!(full().build().is_err(), "no key source");
    assert!(
        JwtAuthLayer::builder()
            .audience("api-gateway")
            .algorithms([Algorithm::HS256])
            .keys(keys())
            .build()
            .is_err(),
        "no issuer"
    );
    assert!(
        JwtAuthLayer::builder()
            .issuer("auth-service")
            .algorithms([Algorithm::HS256])
            .keys(keys())
            .build()
            .is_err(),
        "no audience"
    );
    assert!(
        JwtAuthLayer::builder()
            .issuer("auth-service")
            .audience("api-gateway")
            .keys(keys())
            .build()
            .is_err(),
        "no algorithm allow-list"
    );
    assert!(
        full()
            .keys(keys())
            .leeway(std::time::Duration::from_secs(3600))
            .build()
            .is_err()
    );
    assert!(full().keys(keys()).max_token_bytes(10).build().is_err());
}

//! Token parsing never panics and never accepts garbage.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use forten_auth::jsonwebtoken::Algorithm;
use forten_auth::{JwtAuthLayer, KeySet, SigningKey};
use proptest::prelude::*;

fn layer() -> (JwtAuthLayer, SigningKey) {
    let key = SigningKey::hs256(&[4u8; 32]).unwrap().with_kid("k");
    let layer = JwtAuthLayer::builder()
        .issuer("auth-service")
        .audience("api-gateway")
        .algorithms([Algorithm::HS256])
        .keys(KeySet::new([key.verifying_key().unwrap()]))
        .build()
        .unwrap();
    (layer, key)
}

proptest! {
    #[test]
    fn arbitrary_strings_are_rejected(token in ".{0,400}") {
        let (layer, _) = layer();
        prop_assert!(layer.verify(&token).is_err());
    }

    #[test]
    fn arbitrary_base64_parts_are_rejected(
        h in proptest::collection::vec(any::<u8>(), 0..80),
        c in proptest::collection::vec(any::<u8>(), 0..200),
        s in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (layer, _) = layer();
        let token = format!("{}.{}.{}", b64(&h), b64(&c), b64(&s));
        prop_assert!(layer.verify(&token).is_err());
    }

    #[test]
    fn any_single_byte_change_breaks_a_valid_token(pos in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
        let (layer, key) = layer();
        let token = sign(&key, &user_claims("u1"));
        prop_assert!(layer.verify(&token).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let changed = String::from_utf8(bytes).unwrap();
        // base64url's last character may carry unused bits; a change there can decode the same
        let decodes_same = |t: &str| t.split('.').map(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok()
        }).collect::<Vec<_>>();
        prop_assume!(decodes_same(&changed) != decodes_same(&token));
        prop_assert!(layer.verify(&changed).is_err());
    }
}

//! Proptests of the Idempotency-Key parser: never panics, round trips.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use forten_core::idempotency::{IdempotencyKey, MAX_KEY_LEN};
use proptest::prelude::*;

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = IdempotencyKey::parse(&bytes);
    }

    #[test]
    fn quoted_form_round_trips(key in "[ -~]{1,255}") {
        let parsed = IdempotencyKey::new(key.clone()).unwrap();
        let text = parsed.to_string();
        let again: IdempotencyKey = text.parse().unwrap();
        prop_assert_eq!(again.as_str(), key.as_str());
        let header = parsed.to_header_value();
        prop_assert_eq!(IdempotencyKey::try_from(&header).unwrap(), parsed);
    }

    #[test]
    fn bare_tokens_parse_as_themselves(key in "[A-Za-z0-9!#$%&'*+.^_`|~:/-]{1,255}") {
        let parsed: IdempotencyKey = key.parse().unwrap();
        prop_assert_eq!(parsed.as_str(), key.as_str());
    }

    #[test]
    fn accepted_keys_are_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(k) = IdempotencyKey::parse(&bytes) {
            prop_assert!(!k.as_str().is_empty() && k.as_str().len() <= MAX_KEY_LEN);
        }
    }
}

#[test]
fn too_long_is_rejected() {
    assert!(IdempotencyKey::new("k".repeat(MAX_KEY_LEN + 1)).is_err());
}

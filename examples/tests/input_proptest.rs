//! The input helpers never panic and always answer a 400/422 document (or
//! the value) on any input.

use forten_examples::runtime::JsonObject;
use forten_examples::runtime::input::check_len;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_bytes_parse_or_are_a_validation_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        match JsonObject::parse(&bytes) {
            Ok(object) => prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v.is_object()), "{object:?}"),
            Err(e) => {
                let status = e.0.status().as_u16();
                prop_assert!(status == 400 || status == 422, "{status}");
                prop_assert_eq!(e.0.code(), "VALIDATION_ERROR");
            }
        }
    }

    #[test]
    fn field_accessors_point_at_the_field(field in "[a-z]{1,12}", value in prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ]) {
        let mut map = serde_json::Map::new();
        map.insert(field.clone(), value.clone());
        let body = JsonObject(map);
        let pointer = format!("/{field}");
        match (body.required_str(&field), &value) {
            (Ok(s), serde_json::Value::String(v)) => prop_assert_eq!(s, v.as_str()),
            (Err(e), _) => {
                prop_assert_eq!(e.0.status().as_u16(), 422);
                prop_assert_eq!(e.0.pointer(), Some(pointer.as_str()));
            }
            (Ok(_), other) => prop_assert!(false, "accepted {other}"),
        }
        prop_assert!(body.required_str("absent-field").is_err());
    }

    #[test]
    fn length_checks_count_characters(s in "\\PC{0,300}", min in 0usize..5, max in 5usize..250) {
        let n = s.trim().chars().count();
        prop_assert_eq!(check_len("f", &s, min, max).is_ok(), n >= min && n <= max);
    }
}

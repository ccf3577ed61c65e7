//! AMQP topic patterns: `.`-separated words, `*` for exactly one word, `#`
//! for zero or more. The in-memory bus routes with these; RabbitMQ's topic
//! exchange does the same.

/// Checks a binding pattern: non-empty, at most 255 bytes, and `*` / `#`
/// only as whole words.
pub(crate) fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > 255 {
        return Err(format!(
            "event-type pattern {pattern:?} must be 1 to 255 bytes"
        ));
    }
    for word in pattern.split('.') {
        if word.len() > 1 && (word.contains('*') || word.contains('#')) {
            return Err(format!(
                "event-type pattern {pattern:?}: `*` and `#` must stand alone between dots"
            ));
        }
    }
    Ok(())
}

/// Whether `routing_key` matches `pattern` under topic-exchange rules.
pub(crate) fn matches(pattern: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    match_words(&pattern, &key)
}

fn match_words(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| match_words(rest, &key[skip..])),
        Some((&"*", rest)) => !key.is_empty() && match_words(rest, &key[1..]),
        Some((word, rest)) => key.first() == Some(word) && match_words(rest, &key[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn topic_rules() {
        assert!(matches("user.registered", "user.registered"));
        assert!(!matches("user.registered", "user.deleted"));
        assert!(matches("user.*", "user.deleted"));
        assert!(!matches("user.*", "user.a.b"));
        assert!(!matches("user.*", "user"));
        assert!(matches("user.#", "user"));
        assert!(matches("user.#", "user.a.b"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("*.created", "order.created"));
        assert!(matches("a.#.z", "a.z"));
        assert!(matches("a.#.z", "a.b.c.z"));
        assert!(!matches("a.#.z", "a.b.c"));
        assert!(validate_pattern("user.*").is_ok());
        assert!(validate_pattern("user.re*").is_err());
        assert!(validate_pattern("").is_err());
    }

    proptest! {
        #[test]
        fn a_key_matches_itself_and_hash(key in "[a-z]{1,5}(\\.[a-z]{1,5}){0,4}") {
            prop_assert!(matches(&key, &key));
            prop_assert!(matches("#", &key));
            let star: Vec<&str> = key.split('.').map(|_| "*").collect();
            prop_assert!(matches(&star.join("."), &key));
        }

        #[test]
        fn never_panics(p in "[a-z*#.]{0,12}", k in "[a-z.]{0,12}") {
            let _ = validate_pattern(&p);
            let _ = matches(&p, &k);
        }
    }
}

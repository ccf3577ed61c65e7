//! The `RateLimit-Policy` and `RateLimit` fields of the IETF httpapi
//! ratelimit-headers draft (draft-ietf-httpapi-ratelimit-headers-09):
//! `RateLimit-Policy: "default";q=100;w=60` and `RateLimit: "default";r=42;t=17`.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::backend::Decision;
use super::config::RateLimitPolicy;

/// `ratelimit-policy`: the quota policy (name, `q` quota, `w` window in seconds).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `ratelimit`: the current state (name, `r` remaining, `t` seconds until the quota is full again).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Whether `c` is escaped inside an sf-string.
fn escaped(c: char) -> bool {
    c == '"' || c == '\\'
}

fn sf_string(name: &str, out: &mut String) {
    out.push('"');
    for c in name.chars() {
        if escaped(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The `RateLimit-Policy` value of `policy`.
pub fn policy_value(policy: &RateLimitPolicy) -> HeaderValue {
    let mut s = String::with_capacity(policy.name().len() + 24);
    sf_string(policy.name(), &mut s);
    s.push_str(";q=");
    s.push_str(itoa::Buffer::new().format(policy.quota()));
    s.push_str(";w=");
    s.push_str(itoa::Buffer::new().format(ceil_secs(policy.window())));
    // printable ASCII by construction (the policy validates its name)
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

/// The start of every `RateLimit` value of `policy`: its name as an
/// sf-string, then `;r=` (made once per layer, not per response).
pub(crate) fn state_prefix(policy: &RateLimitPolicy) -> Box<str> {
    let mut s = String::with_capacity(policy.name().len() + 6);
    sf_string(policy.name(), &mut s);
    s.push_str(";r=");
    s.into_boxed_str()
}

/// The `RateLimit` value after `decision`.
pub fn state_value(policy: &RateLimitPolicy, decision: &Decision) -> HeaderValue {
    state_value_after(&state_prefix(policy), decision)
}

/// The `RateLimit` value after `decision`, from the policy's
/// [`state_prefix`].
pub(crate) fn state_value_after(prefix: &str, decision: &Decision) -> HeaderValue {
    let mut remaining = itoa::Buffer::new();
    let remaining = remaining.format(decision.remaining);
    let mut reset = itoa::Buffer::new();
    let reset = reset.format(ceil_secs(decision.reset_after));
    // Exactly the value's length: a `Bytes` made from a full `Vec` takes
    // its buffer as it is, where any spare capacity costs a second allocation.
    let len = prefix.len() + remaining.len() + ";t=".len() + reset.len();
    let mut s = String::with_capacity(len);
    s.push_str(prefix);
    s.push_str(remaining);
    s.push_str(";t=");
    s.push_str(reset);
    debug_assert_eq!(s.len(), s.capacity());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_draft_fields() {
        let p = RateLimitPolicy::new("per-client", 100, Duration::from_secs(60)).unwrap();
        assert_eq!(policy_value(&p), "\"per-client\";q=100;w=60");
        let d = Decision {
            allowed: true,
            remaining: 42,
            reset_after: Duration::from_millis(16_200),
            retry_after: None,
        };
        assert_eq!(state_value(&p, &d), "\"per-client\";r=42;t=17");
        let odd = RateLimitPolicy::new("a\"b", 1, Duration::from_millis(1500)).unwrap();
        assert_eq!(policy_value(&odd), "\"a\\\"b\";q=1;w=2");
        assert_eq!(state_value(&odd, &d), "\"a\\\"b\";r=42;t=17");
    }
}

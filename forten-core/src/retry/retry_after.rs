//! Parsing `Retry-After` (RFC 9110 section 10.2.3).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// A `Retry-After` value that is neither delta-seconds nor an HTTP-date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Retry-After value: expected delta-seconds (\"120\") or an HTTP-date (\"Sun, 06 Nov 1994 08:49:37 GMT\")"
)]
#[non_exhaustive]
pub struct InvalidRetryAfter;

/// Parses a `Retry-After` value into the delay it asks for, relative to `now`
/// (the wall clock; only the HTTP-date form needs it).
///
/// Accepts delta-seconds (`"120"`; values too large for a `Duration` saturate)
/// and HTTP-dates in the three forms RFC 9110 allows; a date in the past means
/// no delay. Surrounding whitespace is ignored. Never panics.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use forten_core::retry::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(parse_retry_after("120", now), Ok(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
///     Ok(Duration::from_secs(30))
/// );
/// assert!(parse_retry_after("soon", now).is_err());
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Result<Duration, InvalidRetryAfter> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // all digits: only overflow can fail, and a huge delay saturates
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Ok(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).map_err(|_| InvalidRetryAfter)?;
    Ok(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delay asked for by the `Retry-After` header in `headers`, if present
/// and valid, relative to the current wall clock.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now()).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn never_panics(s in any::<String>(), now in any::<u32>()) {
            let _ = parse_retry_after(&s, SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(now)));
        }

        #[test]
        fn never_panics_on_date_like(s in "[A-Za-z]{3}, [0-9]{1,3} [A-Za-z]{3} [0-9]{1,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT") {
            let _ = parse_retry_after(&s, SystemTime::now());
        }

        #[test]
        fn delta_seconds_round_trip(secs in any::<u64>()) {
            prop_assert_eq!(parse_retry_after(&secs.to_string(), SystemTime::now()), Ok(Duration::from_secs(secs)));
        }

        #[test]
        fn http_date_round_trip(now in 0u64..4_000_000_000, ahead in 0u64..1_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
            let header = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
            prop_assert_eq!(parse_retry_after(&header, now), Ok(Duration::from_secs(ahead)));
        }
    }

    #[test]
    fn past_dates_and_junk() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Ok(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(" 7 ", now), Ok(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Ok(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "+3", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(
                parse_retry_after(bad, now),
                Err(InvalidRetryAfter),
                "{bad:?}"
            );
        }
        // the obsolete forms RFC 9110 still requires recipients to accept
        assert!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now).is_ok());
        assert!(parse_retry_after("Sun Nov  6 08:49:37 1994", now).is_ok());
    }
}

//! Parsers for the deadline headers: `x-request-timeout-ms` and `grpc-timeout`.

use std::time::Duration;

/// Why a timeout header value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTimeout {
    /// The value is empty.
    #[error("timeout header is empty")]
    Empty,
    /// `x-request-timeout-ms` is not a decimal integer that fits in 64 bits.
    #[error("x-request-timeout-ms must be a decimal integer of milliseconds")]
    NotMilliseconds,
    /// `grpc-timeout` is not 1 to 8 digits followed by one of `H M S m u n`.
    #[error("grpc-timeout must be 1 to 8 digits followed by a unit (H, M, S, m, u or n)")]
    NotGrpcTimeout,
}

/// Parses `x-request-timeout-ms`: a non-negative decimal integer of
/// milliseconds (surrounding whitespace ignored).
///
/// ```
/// use std::time::Duration;
/// use forten_core::deadline::parse_request_timeout_ms;
/// assert_eq!(parse_request_timeout_ms("1500"), Ok(Duration::from_millis(1500)));
/// assert!(parse_request_timeout_ms("1.5").is_err());
/// assert!(parse_request_timeout_ms("-1").is_err());
/// ```
pub fn parse_request_timeout_ms(value: &str) -> Result<Duration, InvalidTimeout> {
    let v = value.trim_matches([' ', '\t']);
    if v.is_empty() {
        return Err(InvalidTimeout::Empty);
    }
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidTimeout::NotMilliseconds);
    }
    v.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| InvalidTimeout::NotMilliseconds)
}

/// Parses gRPC's `grpc-timeout`: 1 to 8 ASCII digits and a unit, `H` hours,
/// `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds.
///
/// ```
/// use std::time::Duration;
/// use forten_core::deadline::parse_grpc_timeout;
/// assert_eq!(parse_grpc_timeout("250m"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout("2S"), Ok(Duration::from_secs(2)));
/// assert!(parse_grpc_timeout("123456789S").is_err()); // 9 digits
/// ```
pub fn parse_grpc_timeout(value: &str) -> Result<Duration, InvalidTimeout> {
    let v = value.trim_matches([' ', '\t']).as_bytes();
    let Some((&unit, digits)) = v.split_last() else {
        return Err(InvalidTimeout::Empty);
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidTimeout::NotGrpcTimeout);
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(InvalidTimeout::NotGrpcTimeout),
    })
}

/// Encodes `d` as a `grpc-timeout` value: the finest unit whose count fits
/// in 8 digits, rounding up so a receiver never sees less than was meant
/// (capped at 99,999,999 hours).
///
/// ```
/// use std::time::Duration;
/// use forten_core::deadline::encode_grpc_timeout;
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(3600 * 24 * 365)), "31536000S");
/// ```
pub fn encode_grpc_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    for (unit, per) in [
        ('n', 1u128),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ] {
        let count = nanos.div_ceil(per);
        if count <= MAX {
            return format!("{count}{unit}");
        }
    }
    format!("{MAX}H")
}

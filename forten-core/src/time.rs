//! Timestamps in the one format every forten wire contract uses: RFC 3339, UTC, `Z`.

use std::time::SystemTime;

/// Formats `t` as RFC 3339 in UTC with second precision, e.g. `2026-11-21T10:30:00Z`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_795_257_000);
/// assert_eq!(forten_core::time::rfc3339(t), "2026-11-21T10:30:00Z");
/// ```
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The current time as RFC 3339 (see [`rfc3339`]).
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

//! Configuration errors of the rate limiter.

/// An invalid rate-limit configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The quota is zero.
    #[error("the quota must allow at least one request per window")]
    ZeroQuota,
    /// The window is shorter than a millisecond.
    #[error("the window must be at least one millisecond")]
    ZeroWindow,
    /// The policy name is empty or not printable ASCII.
    #[error(
        "the policy name must be 1 or more printable ASCII characters (it is sent as an sf-string)"
    )]
    PolicyName,
}

//! Errors of the idempotency layer's configuration and stores.

use crate::BoxError;

/// A store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (e.g. Redis unreachable); the request is answered
    /// 502 and may be retried with the same key.
    #[error("idempotency store unavailable: {0}; check the store's connection")]
    Backend(#[source] BoxError),
    /// A stored entry could not be decoded; it was written by something else.
    #[error(
        "idempotency store entry is corrupt ({0}); is another program writing under this key prefix?"
    )]
    Corrupt(&'static str),
}

/// An invalid idempotency layer or store configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A size or count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroLimit(&'static str),
    /// No method is configured, so the layer would do nothing.
    #[error("no methods configured; give at least one (POST and PATCH are the default)")]
    NoMethods,
    /// The lock outlives the entry.
    #[error(
        "lock_ttl must not exceed ttl; a lock is replaced by the entry when the request completes"
    )]
    LockLongerThanEntry,
}

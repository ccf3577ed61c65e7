//! The one error type of forten-discovery.

use std::time::Duration;

/// What went wrong while registering, discovering or picking an instance.
///
/// Every variant says what happened and what to do. It converts into
/// [`forten_core::Error`] (and so into the JSON:API error document of DESIGN 4.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The service has no healthy instance right now.
    #[error(
        "no healthy instance of {service} is registered; start one, or check that it heartbeats"
    )]
    NoInstances {
        /// The service looked up.
        service: String,
    },
    /// An instance failed validation; `field` is its JSON name.
    #[error("invalid service instance: {field} {reason}")]
    InvalidInstance {
        /// The offending field (`name`, `port`, `healthCheckUrl`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry does not know this instance (never registered, deregistered, or its lease lapsed).
    #[error("instance {id} of {service} is not registered; register it again")]
    NotRegistered {
        /// The service name.
        service: String,
        /// The instance id.
        id: String,
    },
    /// A configuration value given to a builder is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The registry backend failed or could not be reached.
    #[error("registry backend {backend} failed: {detail}")]
    Backend {
        /// Which backend (`memory`, `http`, `etcd`).
        backend: &'static str,
        /// What failed.
        detail: String,
    },
    /// The backend did not answer in time.
    #[error("registry backend {backend} did not answer within {}ms; check that it is up", .after.as_millis())]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// The time waited.
        after: Duration,
    },
    /// The operation needs a tokio runtime and was called outside one.
    #[error("no tokio runtime: call this from within a tokio runtime")]
    NoRuntime,
}

impl DiscoveryError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DiscoveryError::InvalidInstance {
            field,
            reason: reason.into(),
        }
    }

    #[allow(dead_code)] // used by the HTTP and etcd backends
    pub(crate) fn backend(backend: &'static str, detail: impl Into<String>) -> Self {
        DiscoveryError::Backend {
            backend,
            detail: detail.into(),
        }
    }
}

impl From<DiscoveryError> for forten_core::Error {
    /// Invalid instances are 400 with `source.pointer` at the field; unknown instances 404;
    /// a service without instances or a failing backend 503/502 (upstream unavailable).
    fn from(e: DiscoveryError) -> Self {
        match e {
            DiscoveryError::InvalidInstance { field, .. } => forten_core::Error::BadRequest {
                detail: e.to_string(),
                pointer: Some(format!("/{field}")),
            },
            DiscoveryError::Config(_) => forten_core::Error::BadRequest {
                detail: e.to_string(),
                pointer: None,
            },
            DiscoveryError::NotRegistered { .. } => forten_core::Error::NotFound {
                detail: e.to_string(),
            },
            DiscoveryError::Timeout { after, .. } => {
                forten_core::Error::Timeout { after: Some(after) }
            }
            DiscoveryError::NoInstances { .. }
            | DiscoveryError::Backend { .. }
            | DiscoveryError::NoRuntime => forten_core::Error::UpstreamUnavailable {
                detail: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_core_errors() {
        let core: forten_core::Error = DiscoveryError::invalid("port", "must not be 0").into();
        assert_eq!(core.status(), 400);
        assert_eq!(core.pointer(), Some("/port"));
        let core: forten_core::Error = DiscoveryError::NotRegistered {
            service: "a".into(),
            id: "1".into(),
        }
        .into();
        assert_eq!(core.status(), 404);
        let core: forten_core::Error = DiscoveryError::NoInstances {
            service: "a".into(),
        }
        .into();
        assert_eq!(core.code(), "UPSTREAM_UNAVAILABLE");
    }
}

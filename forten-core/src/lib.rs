//! Tower layers for resilient service-to-service communication.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The boxed error type every tower middleware in forten speaks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

//! The errors of this crate.

use forten_core::BoxError;

/// What went wrong publishing, subscribing or connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event could not be serialized to JSON (a bug in its `Serialize` impl).
    #[error("event could not be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    /// No queue is bound to this event type: the event was not delivered anywhere.
    /// Declare the subscription (or its queue) before publishing.
    #[error(
        "event type {event_type:?} is unroutable: no queue is bound to it; declare a subscription first"
    )]
    Unroutable {
        /// The event type (routing key).
        event_type: String,
    },
    /// The broker refused the message (a negative publisher confirm); retry later.
    #[error("the broker refused event {event_id} (nack); retry later")]
    Nacked {
        /// The event id.
        event_id: String,
    },
    /// The bus was closed; publishing or subscribing needs a new bus.
    #[error("the event bus is closed")]
    Closed,
    /// The subscription or bus configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The broker could not be reached within the configured attempts.
    #[error(
        "could not connect to the broker at {uri} after {attempts} attempt(s): {source}; check that it runs and the URI and credentials are right, or raise the reconnect attempts"
    )]
    Connect {
        /// The URI, without the password.
        uri: String,
        /// How many connection attempts were made.
        attempts: u32,
        /// The last error.
        #[source]
        source: BoxError,
    },
    /// The connection did not come back within the recovery timeout.
    #[error("the broker connection did not recover in time: {0}")]
    Recovery(#[source] BoxError),
    /// Any other broker error.
    #[error("broker error: {0}")]
    Broker(#[source] BoxError),
}

/// What a handler reports when it could not process an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// A transient failure: the event is retried after the subscription's
    /// retry delay, and dead-lettered once the retries are used up.
    #[error("retryable: {0}")]
    Retry(#[source] BoxError),
    /// A failure that retrying will not fix (bad data, a rule violation):
    /// the event goes to the dead-letter queue at once.
    #[error("permanent: {0}")]
    Permanent(#[source] BoxError),
}

impl HandlerError {
    /// A retryable failure.
    pub fn retry(e: impl Into<BoxError>) -> Self {
        HandlerError::Retry(e.into())
    }

    /// A permanent failure (straight to the dead-letter queue).
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        HandlerError::Permanent(e.into())
    }

    /// Whether this failure is worth retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HandlerError::Retry(_))
    }
}

impl From<serde_json::Error> for HandlerError {
    /// Data that does not decode will not decode next time either.
    fn from(e: serde_json::Error) -> Self {
        HandlerError::Permanent(Box::new(e))
    }
}

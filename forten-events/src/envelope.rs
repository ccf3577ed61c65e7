//! The event envelope (DESIGN 4.8) and its encoded form.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context;
use crate::error::Error;

/// The schema version of the envelope this crate writes.
pub const SCHEMA_VERSION: &str = "1.0";

/// A domain event: the JSON body of each message.
///
/// ```
/// use forten_events::Event;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct UserRegistered { email: String }
///
/// let event = Event::new("user.registered", UserRegistered { email: "a@b.c".into() })
///     .with_aggregate("user-42", "user")
///     .with_version("2.0");
/// assert_eq!(event.event_type, "user.registered");
/// assert_eq!(event.aggregate_id.as_deref(), Some("user-42"));
/// assert!(!event.correlation_id.is_empty()); // a fresh one outside any scope
/// let json = serde_json::to_value(&event).unwrap();
/// assert_eq!(json["data"]["email"], "a@b.c");
/// assert_eq!(json["eventVersion"], "2.0");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<T> {
    /// Unique id (UUID v4); the AMQP message id and the dedup key.
    pub event_id: String,
    /// The event type, also the routing key (`user.registered`).
    pub event_type: String,
    /// The id of the aggregate the event is about.
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// The type of that aggregate.
    #[serde(default)]
    pub aggregate_type: Option<String>,
    /// The version of this event type's schema.
    #[serde(default = "default_version")]
    pub event_version: String,
    /// When it happened (RFC 3339, UTC).
    pub occurred_at: String,
    /// The correlation id of the request that caused it.
    pub correlation_id: String,
    /// The id of the event whose handling published this one, if any.
    #[serde(default)]
    pub causation_id: Option<String>,
    /// The payload.
    pub data: T,
    /// Who published it, when, and free-form extras.
    #[serde(default)]
    pub metadata: EventMetadata,
    /// The W3C traceparent of the publisher (an AMQP header, not in the body).
    #[serde(skip)]
    pub traceparent: Option<String>,
    /// The W3C tracestate of the publisher (an AMQP header, not in the body).
    #[serde(skip)]
    pub tracestate: Option<String>,
}

fn default_version() -> String {
    "1.0".to_owned()
}

/// The `metadata` object of the envelope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    /// The publishing service (the bus's app id when left empty).
    #[serde(default)]
    pub published_by: String,
    /// When it was published (filled in by the bus).
    #[serde(default)]
    pub published_at: Option<String>,
    /// The envelope schema version.
    #[serde(default = "default_version")]
    pub schema_version: String,
    /// Anything else the publisher adds.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<T> Event<T> {
    /// A new event of `event_type` carrying `data`: a fresh event id, the
    /// current time, and the correlation id, traceparent and causation of the
    /// current task (a fresh correlation id outside any scope).
    pub fn new(event_type: impl Into<String>, data: T) -> Self {
        let captured = context::capture();
        Event {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: event_type.into(),
            aggregate_id: None,
            aggregate_type: None,
            event_version: default_version(),
            occurred_at: forten_core::time::now_rfc3339(),
            correlation_id: captured.correlation_id,
            causation_id: captured.causation_id,
            data,
            metadata: EventMetadata {
                schema_version: SCHEMA_VERSION.to_owned(),
                ..EventMetadata::default()
            },
            traceparent: captured.traceparent,
            tracestate: captured.tracestate,
        }
    }

    /// Sets the aggregate id and type.
    pub fn with_aggregate(mut self, id: impl Into<String>, kind: impl Into<String>) -> Self {
        self.aggregate_id = Some(id.into());
        self.aggregate_type = Some(kind.into());
        self
    }

    /// Sets the event (schema) version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.event_version = version.into();
        self
    }

    /// Sets the causation id explicitly.
    pub fn with_causation(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    /// Names the publishing service (otherwise the bus's app id).
    pub fn published_by(mut self, service: impl Into<String>) -> Self {
        self.metadata.published_by = service.into();
        self
    }

    /// Adds a free-form metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.extra.insert(key.into(), value.into());
        self
    }

    /// Replaces the payload, keeping the envelope.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Event<U> {
        Event {
            event_id: self.event_id,
            event_type: self.event_type,
            aggregate_id: self.aggregate_id,
            aggregate_type: self.aggregate_type,
            event_version: self.event_version,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            data: f(self.data),
            metadata: self.metadata,
            traceparent: self.traceparent,
            tracestate: self.tracestate,
        }
    }
}

impl<T: Serialize> Event<T> {
    /// Serializes the envelope for a bus: fills `publishedBy` (when empty)
    /// and `publishedAt`.
    pub fn encode(&self, app_id: &str) -> Result<EncodedEvent, Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a, T> {
            event_id: &'a str,
            event_type: &'a str,
            aggregate_id: &'a Option<String>,
            aggregate_type: &'a Option<String>,
            event_version: &'a str,
            occurred_at: &'a str,
            correlation_id: &'a str,
            causation_id: &'a Option<String>,
            data: &'a T,
            metadata: EventMetadata,
        }
        let mut metadata = self.metadata.clone();
        if metadata.published_by.is_empty() {
            app_id.clone_into(&mut metadata.published_by);
        }
        let published_at = forten_core::time::now_rfc3339();
        metadata.published_at = Some(published_at);
        let body = serde_json::to_vec(&Wire {
            event_id: &self.event_id,
            event_type: &self.event_type,
            aggregate_id: &self.aggregate_id,
            aggregate_type: &self.aggregate_type,
            event_version: &self.event_version,
            occurred_at: &self.occurred_at,
            correlation_id: &self.correlation_id,
            causation_id: &self.causation_id,
            data: &self.data,
            metadata: metadata.clone(),
        })
        .map_err(Error::Serialize)?;
        Ok(EncodedEvent {
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            correlation_id: self.correlation_id.clone(),
            occurred_at: self.occurred_at.clone(),
            published_by: metadata.published_by,
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
            body: Bytes::from(body),
        })
    }
}

/// An event ready for the wire: its JSON body and the attributes a broker
/// needs outside the body (AMQP properties and headers).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EncodedEvent {
    /// The event id (AMQP `message_id`).
    pub event_id: String,
    /// The event type (AMQP `type` and routing key).
    pub event_type: String,
    /// The correlation id (AMQP `correlation_id`).
    pub correlation_id: String,
    /// When it happened (RFC 3339).
    pub occurred_at: String,
    /// The publisher (AMQP `app_id`).
    pub published_by: String,
    /// W3C traceparent header.
    pub traceparent: Option<String>,
    /// W3C tracestate header.
    pub tracestate: Option<String>,
    /// The JSON envelope.
    pub body: Bytes,
}

impl EncodedEvent {
    /// Decodes the body back into an envelope, restoring the trace headers.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<Event<T>, serde_json::Error> {
        decode_body(
            &self.body,
            self.traceparent.clone(),
            self.tracestate.clone(),
        )
    }
}

pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    traceparent: Option<String>,
    tracestate: Option<String>,
) -> Result<Event<T>, serde_json::Error> {
    let mut event: Event<T> = serde_json::from_slice(body)?;
    event.traceparent = traceparent;
    event.tracestate = tracestate;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use forten_core::correlation::CorrelationContext;

    #[test]
    fn round_trips_through_the_wire_form() {
        let event = Event::new("user.registered", serde_json::json!({"n": 1}))
            .with_aggregate("u1", "user")
            .with_metadata("tenant", "acme");
        let encoded = event.encode("auth-service").unwrap();
        let back: Event<Value> = encoded.decode().unwrap();
        assert_eq!(back.event_id, event.event_id);
        assert_eq!(back.data, event.data);
        assert_eq!(back.metadata.published_by, "auth-service");
        assert!(back.metadata.published_at.is_some());
        assert_eq!(back.metadata.extra["tenant"], "acme");
        assert_eq!(back.traceparent, event.traceparent);
        let json: Value = serde_json::from_slice(&encoded.body).unwrap();
        for key in [
            "eventId",
            "eventType",
            "aggregateId",
            "aggregateType",
            "eventVersion",
            "occurredAt",
            "correlationId",
            "causationId",
            "data",
            "metadata",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        assert_eq!(json["metadata"]["schemaVersion"], "1.0");
    }

    #[tokio::test]
    async fn takes_correlation_and_causation_from_the_task() {
        let ctx = CorrelationContext::from_values(Some("corr-1"), None, None);
        let tp = ctx.trace_parent().to_string();
        let event = ctx
            .scope(context::scope(
                CorrelationContext::from_values(Some("corr-1"), Some(&tp), None),
                "cause-9".to_owned(),
                async { Event::new("x", ()) },
            ))
            .await;
        assert_eq!(event.correlation_id, "corr-1");
        assert_eq!(event.causation_id.as_deref(), Some("cause-9"));
        assert_eq!(event.traceparent.as_deref(), Some(tp.as_str()));
        let outside = Event::new("x", ());
        assert_eq!(outside.causation_id, None);
        assert_ne!(outside.correlation_id, "corr-1");
    }
}

//! The AMQP 0-9-1 mapping of an event (DESIGN 4.8): properties, headers,
//! and the names of the retry and dead-letter queues.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::envelope::EncodedEvent;

/// Header: the attempt number of the next delivery.
pub(crate) const ATTEMPT: &str = "x-forten-attempt";
/// Header: why the event was dead-lettered.
pub(crate) const REASON: &str = "x-forten-reason";
/// Header: the attempts made before dead-lettering.
pub(crate) const ATTEMPTS: &str = "x-forten-attempts";
/// Header: the routing key (event type) it was first published with.
pub(crate) const ROUTING_KEY: &str = "x-forten-routing-key";

pub(crate) fn short(s: &str) -> ShortString {
    // Names are validated to fit; cut rather than panic if one does not.
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::try_new(&s[..end]).unwrap_or_default()
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Properties and headers of a published event.
pub(crate) fn properties(e: &EncodedEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(tp) = &e.traceparent {
        headers.insert("traceparent".into(), long(tp));
    }
    if let Some(ts) = &e.tracestate {
        headers.insert("tracestate".into(), long(ts));
    }
    headers.insert("cloudEvents_specversion".into(), long("1.0"));
    headers.insert("cloudEvents_id".into(), long(&e.event_id));
    headers.insert("cloudEvents_source".into(), long(&e.published_by));
    headers.insert("cloudEvents_type".into(), long(&e.event_type));
    headers.insert("cloudEvents_time".into(), long(&e.occurred_at));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    BasicProperties::default()
        .with_message_id(short(&e.event_id))
        .with_type(short(&e.event_type))
        .with_correlation_id(short(&e.correlation_id))
        .with_timestamp(now)
        .with_app_id(short(&e.published_by))
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// `props` with `entries` set in its headers.
pub(crate) fn with_headers(
    props: &BasicProperties,
    entries: impl IntoIterator<Item = (&'static str, AMQPValue)>,
) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    for (k, v) in entries {
        headers.insert(k.into(), v);
    }
    props.clone().with_headers(headers)
}

pub(crate) fn string_value(s: &str) -> AMQPValue {
    long(s)
}

pub(crate) fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

pub(crate) fn header_u32(props: &BasicProperties, key: &str) -> Option<u32> {
    let n: i128 = match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// The TTL queue of one retry delay tier.
pub(crate) fn retry_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}ms", delay.as_millis())
}

/// The dead-letter exchange of an exchange.
pub(crate) fn dead_letter_exchange(exchange: &str) -> String {
    format!("{exchange}.dlx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_an_event_to_amqp() {
        let e = crate::Event::new("user.registered", 1)
            .encode("auth")
            .unwrap();
        let p = properties(&e);
        assert_eq!(p.message_id().as_ref().unwrap().as_str(), e.event_id);
        assert_eq!(p.kind().as_ref().unwrap().as_str(), "user.registered");
        assert_eq!(p.app_id().as_ref().unwrap().as_str(), "auth");
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(header_str(&p, "traceparent"), e.traceparent);
        assert_eq!(
            header_str(&p, "cloudEvents_type").as_deref(),
            Some("user.registered")
        );
        let p = with_headers(&p, [(ATTEMPT, AMQPValue::LongLongInt(3))]);
        assert_eq!(header_u32(&p, ATTEMPT), Some(3));
        assert_eq!(header_u32(&p, "missing"), None);
        assert_eq!(short(&"x".repeat(300)).as_str().len(), 255);
    }
}

//! Handlers and what they receive.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::envelope::Event;
use crate::error::HandlerError;

/// One delivery of an event to a subscription.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Delivery {
    /// The event, with untyped data (see [`decode`](Self::decode)).
    pub event: Event<Value>,
    /// 1 on the first delivery, 2 on the first retry, ...
    pub attempt: u32,
    /// Whether the broker delivered it before (a crash or a closed consumer
    /// in between): the handler may have seen it already.
    pub redelivered: bool,
    /// The queue it came from.
    pub queue: Arc<str>,
}

impl Delivery {
    /// The event with typed data; data that does not decode is a permanent
    /// error (so `?` dead-letters it).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Event<T>, HandlerError> {
        let data = T::deserialize(&self.event.data)?;
        Ok(self.event.clone().map(|_| data))
    }
}

/// Handles deliveries: `Ok` acks, [`HandlerError::Retry`] retries after the
/// subscription's delay, [`HandlerError::Permanent`] dead-letters at once.
///
/// Implemented for every `Fn(Delivery) -> impl Future<Output = Result<(), HandlerError>>`.
/// Handlers run inside the event's correlation context and a tracing span.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery.
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(self(delivery))
    }
}

//! The backend-neutral traits: [`Publisher`], [`Subscriber`] and the handle
//! a subscription returns.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::envelope::{EncodedEvent, Event, decode_body};
use crate::error::Error;
use crate::handler::Handler;
use crate::subscription::Subscription;

/// Default number of unconfirmed events [`PublisherExt::publish_batch`] keeps in flight.
pub const DEFAULT_WINDOW: usize = 100;

/// Publishes encoded events; object-safe (`Arc<dyn Publisher>`). Use the
/// typed methods of [`PublisherExt`].
pub trait Publisher: Send + Sync {
    /// The name written to `metadata.publishedBy` and AMQP `app_id`.
    fn app_id(&self) -> &str;

    /// Publishes one event; resolves once the broker confirmed it. An event
    /// no queue is bound to is [`Error::Unroutable`].
    fn publish_encoded(&self, event: EncodedEvent) -> BoxFuture<'_, Result<(), Error>>;

    /// Whether the bus is connected to its broker now.
    fn is_connected(&self) -> bool;
}

/// Typed publishing on any [`Publisher`] (also `dyn Publisher`).
pub trait PublisherExt: Publisher {
    /// Publishes `event` and waits for the broker's confirm.
    fn publish<T: Serialize + Sync>(
        &self,
        event: &Event<T>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let encoded = event.encode(self.app_id());
        async move { self.publish_encoded(encoded?).await }
    }

    /// Publishes every event, keeping up to `window` unconfirmed at once;
    /// resolves when all are confirmed, or with the first error (events
    /// after it may or may not have been published).
    fn publish_batch<T: Serialize + Sync>(
        &self,
        events: &[Event<T>],
        window: usize,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let encoded: Result<Vec<_>, _> = events.iter().map(|e| e.encode(self.app_id())).collect();
        async move {
            futures::stream::iter(encoded?)
                .map(|e| self.publish_encoded(e))
                .buffer_unordered(window.max(1))
                .try_for_each(|()| async { Ok(()) })
                .await
        }
    }
}

impl<P: Publisher + ?Sized> PublisherExt for P {}

/// Declares and consumes subscriptions; object-safe (`Arc<dyn Subscriber>`).
pub trait Subscriber: Send + Sync {
    /// Declares the subscription's queue, bindings, retry and dead-letter
    /// path without consuming, so events published from now on are kept.
    fn declare<'a>(&'a self, sub: &'a Subscription) -> BoxFuture<'a, Result<(), Error>>;

    /// Declares the subscription and starts consuming with `handler`. The
    /// subscription runs until [`SubscriptionHandle::close`] or the bus's
    /// shutdown (dropping the handle does not stop it).
    fn subscribe(
        &self,
        sub: Subscription,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'_, Result<SubscriptionHandle, Error>>;

    /// Removes and returns up to `max` messages from the queue's dead-letter queue.
    fn take_dead_letters<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, Error>>;
}

/// A running subscription.
#[derive(Debug)]
pub struct SubscriptionHandle {
    queue: String,
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl SubscriptionHandle {
    pub(crate) fn new(queue: String, token: CancellationToken, task: JoinHandle<()>) -> Self {
        SubscriptionHandle { queue, token, task }
    }

    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether the subscription has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Graceful close: takes no more deliveries, lets in-flight handlers
    /// finish within the subscription's grace period and settles each
    /// (ack, retry or dead-letter); deliveries not finished come back to the
    /// queue for the next consumer.
    pub async fn close(self) {
        self.token.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(queue = %self.queue, "subscription task panicked");
        }
    }
}

/// A message taken from a dead-letter queue.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Why it was dead-lettered (`x-forten-reason`).
    pub reason: String,
    /// The attempts made (`x-forten-attempts`).
    pub attempts: u32,
    /// The original routing key, i.e. the event type (`x-forten-routing-key`).
    pub routing_key: String,
    /// The envelope as published.
    pub body: Bytes,
}

impl DeadLetter {
    /// The dead-lettered event, untyped.
    pub fn event(&self) -> Result<Event<Value>, serde_json::Error> {
        decode_body(&self.body, None, None)
    }
}

/// Changes of a bus's broker connection, for health checks and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Connected (or reconnected after a failure).
    Connected,
    /// The connection failed; the bus is recovering.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// The broker blocked publishing (resource alarm).
    Blocked {
        /// The broker's reason.
        reason: String,
    },
    /// The broker unblocked publishing.
    Unblocked,
    /// The bus was shut down.
    Closed,
}

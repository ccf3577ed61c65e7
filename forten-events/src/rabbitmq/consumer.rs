//! One subscription's consumer: its own channel with basic.qos, handlers
//! bounded by the subscription's concurrency, ack after the handler.

use std::sync::Arc;

use futures::StreamExt;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::mapping::{self, ATTEMPT, ATTEMPTS, REASON, ROUTING_KEY, short};
use super::{Inner, broker};
use crate::dispatch::{Dispatcher, Inbound, Outcome};
use crate::error::Error;
use crate::handler::Handler;
use crate::subscription::Subscription;

/// How long settling one delivery may take.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) struct Started {
    inner: Arc<Inner>,
    generation: u64,
    channel: Channel,
    consumer: Consumer,
    tag: String,
    dispatcher: Arc<Dispatcher>,
}

/// Opens a channel on the current consuming connection, declares the
/// subscription's topology there, sets the prefetch and starts consuming.
async fn open(
    inner: &Inner,
    sub: &Subscription,
    tag: &str,
) -> Result<(u64, Channel, Consumer), Error> {
    let link = inner.consume_link();
    let channel = link.conn.create_channel().await.map_err(broker)?;
    inner.declare_on(&channel, sub).await?;
    channel
        .basic_qos(sub.prefetch, BasicQosOptions::default())
        .await
        .map_err(broker)?;
    let consumer = channel
        .basic_consume(
            short(&sub.queue),
            short(tag),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    Ok((link.generation, channel, consumer))
}

/// Starts consuming; errors (a bad declaration, no connection) are the caller's.
pub(crate) async fn start(
    inner: Arc<Inner>,
    sub: Subscription,
    handler: Arc<dyn Handler>,
) -> Result<Started, Error> {
    let tag = format!("{}.{}", inner.cfg.app_id, uuid::Uuid::new_v4());
    let (generation, channel, consumer) = match open(&inner, &sub, &tag).await {
        Ok(opened) => opened,
        Err(Error::Broker(e)) if !inner.consume_link().conn.status().connected() => {
            // The connection died since the last use: reconnect once.
            tracing::debug!(error = %e, "consuming connection down at subscribe; reconnecting");
            inner
                .reconnect_consume(inner.consume_link().generation)
                .await?;
            open(&inner, &sub, &tag).await?
        }
        Err(e) => return Err(e),
    };
    Ok(Started {
        inner,
        generation,
        channel,
        consumer,
        tag,
        dispatcher: Arc::new(Dispatcher::new(sub, handler)),
    })
}

impl Started {
    pub(crate) async fn run(mut self, token: CancellationToken) {
        let d = self.dispatcher.clone();
        let sem = Arc::new(Semaphore::new(d.sub.concurrency));
        let mut tasks = JoinSet::new();
        'connection: loop {
            loop {
                let permit = tokio::select! {
                    biased;
                    () = token.cancelled() => break 'connection,
                    p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break 'connection },
                };
                let next = tokio::select! {
                    biased;
                    () = token.cancelled() => break 'connection,
                    n = self.consumer.next() => n,
                };
                match next {
                    None => {
                        tracing::debug!(queue = %d.queue, "consumer ended");
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(queue = %d.queue, error = %e, "consumer failed");
                        break;
                    }
                    Some(Ok(delivery)) => {
                        let (inner, d) = (self.inner.clone(), d.clone());
                        tasks.spawn(async move {
                            handle(&inner, &d, delivery).await;
                            drop(permit);
                        });
                    }
                }
                while tasks.try_join_next().is_some() {}
            }
            // The channel or connection is gone: deliveries not acked come
            // back from the broker; consume again on a new connection.
            loop {
                let reopened = tokio::select! {
                    () = token.cancelled() => break 'connection,
                    r = self.reopen() => r,
                };
                match reopened {
                    Ok(()) => {
                        tracing::info!(queue = %d.queue, "consuming again after a reconnect");
                        continue 'connection;
                    }
                    Err(e) => {
                        tracing::warn!(queue = %d.queue, error = %e, "could not resume consuming; retrying");
                        tokio::select! {
                            () = token.cancelled() => break 'connection,
                            () = tokio::time::sleep(self.inner.cfg.reconnect_max) => {}
                        }
                    }
                }
            }
        }
        // Graceful close: no more deliveries, in-flight handlers get the
        // grace period, then closing the channel hands every unacked
        // delivery (unfinished or never started) back to the queue.
        if let Err(e) = self
            .channel
            .basic_cancel(short(&self.tag), BasicCancelOptions::default())
            .await
        {
            tracing::debug!(error = %e, "basic.cancel");
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(d.sub.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!(queue = %d.queue, "handlers still running after the grace period; their events will be redelivered");
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        if let Err(e) = self.channel.close(200, "subscription closed".into()).await {
            tracing::debug!(error = %e, "channel.close");
        }
    }

    /// Reconnects the consuming connection if this consumer's generation
    /// is still current, then consumes on a fresh channel.
    async fn reopen(&mut self) -> Result<(), Error> {
        let link = self.inner.consume_link();
        if link.generation == self.generation && !link.conn.status().connected() {
            self.inner.reconnect_consume(self.generation).await?;
        }
        match open(&self.inner, &self.dispatcher.sub, &self.tag).await {
            Ok((generation, channel, consumer)) => {
                self.generation = generation;
                self.channel = channel;
                self.consumer = consumer;
                Ok(())
            }
            Err(e) => {
                // The new connection may have failed too: let the next
                // attempt replace it.
                if !self.inner.consume_link().conn.status().connected() {
                    self.generation = self.inner.consume_link().generation;
                }
                Err(e)
            }
        }
    }
}

async fn handle(inner: &Inner, d: &Dispatcher, delivery: AmqpDelivery) {
    let props = &delivery.properties;
    let attempt = mapping::header_u32(props, ATTEMPT).unwrap_or(1).max(1);
    let outcome = d
        .dispatch(Inbound {
            body: &delivery.data,
            traceparent: mapping::header_str(props, "traceparent"),
            tracestate: mapping::header_str(props, "tracestate"),
            attempt,
            redelivered: delivery.redelivered,
        })
        .await;
    let routing_key = mapping::header_str(props, ROUTING_KEY)
        .unwrap_or_else(|| delivery.routing_key.as_str().to_owned());
    let event_id = props
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let forwarded = match outcome {
        Outcome::Ack => Ok(()),
        Outcome::Retry {
            delay,
            next_attempt,
        } => {
            let p = mapping::with_headers(
                props,
                [
                    (ATTEMPT, AMQPValue::LongLongInt(next_attempt.into())),
                    (ROUTING_KEY, mapping::string_value(&routing_key)),
                ],
            );
            let retry_queue = mapping::retry_queue(&d.sub.queue, delay);
            inner
                .publish_raw("", &retry_queue, &delivery.data, p, &event_id)
                .await
        }
        Outcome::DeadLetter { reason } => {
            let p = mapping::with_headers(
                props,
                [
                    (REASON, mapping::string_value(&reason)),
                    (ATTEMPTS, AMQPValue::LongLongInt(attempt.into())),
                    (ROUTING_KEY, mapping::string_value(&routing_key)),
                ],
            );
            inner
                .publish_raw(&inner.dlx, &d.sub.queue, &delivery.data, p, &event_id)
                .await
        }
    };
    let settle = async {
        match forwarded {
            Ok(()) => delivery.ack(BasicAckOptions::default()).await,
            Err(e) => {
                // Could not forward it: hand it back to the queue to try again.
                tracing::warn!(queue = %d.queue, error = %e, "could not forward a failed event; requeueing it");
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        }
    };
    // An ack on a channel whose connection died may never be answered; the
    // broker redelivers such a delivery anyway, so do not hold a handler
    // slot for it.
    let Ok(settled) = tokio::time::timeout(ACK_TIMEOUT, settle).await else {
        tracing::debug!(queue = %d.queue, "ack not answered; the event will be redelivered");
        return;
    };
    if let Err(e) = settled {
        // The channel was lost since delivery: the broker redelivers it.
        tracing::debug!(queue = %d.queue, error = %e, "ack failed; the event will be redelivered");
    }
}

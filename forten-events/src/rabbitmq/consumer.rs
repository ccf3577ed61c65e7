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

pub(crate) struct Started {
    inner: Arc<Inner>,
    channel: Channel,
    consumer: Consumer,
    tag: String,
    dispatcher: Arc<Dispatcher>,
}

/// Opens the subscription's channel, declares its topology there (so lapin
/// replays it on recovery), sets the prefetch and starts consuming.
pub(crate) async fn start(
    inner: Arc<Inner>,
    sub: Subscription,
    handler: Arc<dyn Handler>,
) -> Result<Started, Error> {
    let channel = inner.consume_conn.create_channel().await.map_err(broker)?;
    inner.declare_on(&channel, &sub).await?;
    channel
        .basic_qos(sub.prefetch, BasicQosOptions::default())
        .await
        .map_err(broker)?;
    let tag = format!("{}.{}", inner.cfg.app_id, uuid::Uuid::new_v4());
    let consumer = channel
        .basic_consume(
            short(&sub.queue),
            short(&tag),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    Ok(Started {
        inner,
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
        loop {
            let permit = tokio::select! {
                biased;
                () = token.cancelled() => break,
                p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let next = tokio::select! {
                biased;
                () = token.cancelled() => break,
                n = self.consumer.next() => n,
            };
            match next {
                None => {
                    tracing::warn!(queue = %d.queue, "the broker cancelled the consumer");
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(queue = %d.queue, error = %e, "consumer interrupted; waiting for recovery");
                    if let Err(e) = self.channel.wait_for_recovery(e).await {
                        tracing::error!(queue = %d.queue, error = %e, "consumer cannot recover");
                        break;
                    }
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
    let settled = match forwarded {
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
    };
    if let Err(e) = settled {
        // The channel was lost since delivery: the broker redelivers it.
        tracing::debug!(queue = %d.queue, error = %e, "ack failed; the event will be redelivered");
    }
}

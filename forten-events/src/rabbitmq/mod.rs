//! [`RabbitMqBus`]: the event bus on RabbitMQ (lapin 4).
//!
//! Topology per subscription `Q` on exchange `X` (all durable, declared
//! idempotently, replayed by lapin's recovery after a reconnect):
//!
//! - `X`: topic exchange; `Q` is bound to it with each event-type pattern;
//! - `X.dlx`: direct exchange; `Q.dlq` is bound to it with key `Q`, and `Q`
//!   dead-letters there (`x-dead-letter-exchange`) whatever the broker rejects;
//! - `Q.retry.<ms>ms`: one queue per retry delay, `x-message-ttl` = the delay,
//!   dead-lettering back to `Q` through the default exchange.
//!
//! A failed event is re-published (confirmed) to its tier's retry queue with
//! its next attempt number, or to `X.dlx` with the reason, the attempt count
//! and the original routing key in headers, and only then acked.

mod config;
mod consumer;
mod mapping;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::RabbitMqConfig;

use crate::bus::{ConnectionEvent, DeadLetter, Publisher, Subscriber, SubscriptionHandle};
use crate::envelope::EncodedEvent;
use crate::error::Error;
use crate::handler::Handler;
use crate::subscription::Subscription;
use mapping::short;

/// The RabbitMQ event bus: one connection for publishing, one for consuming
/// (RabbitMQ's advice, so a blocked publisher never stalls acks), both with
/// lapin's automatic recovery and heartbeats. Cheap to clone.
///
/// ```no_run
/// use std::sync::Arc;
/// use forten_events::{Delivery, Event, PublisherExt, RabbitMqBus, RabbitMqConfig, Subscriber, Subscription};
///
/// # async fn run() -> Result<(), forten_events::Error> {
/// let bus = RabbitMqBus::connect(
///     RabbitMqConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f").app_id("auth-service"),
/// ).await?;
/// let sub = Subscription::builder("notifications.user-registered").bind("user.registered").build()?;
/// let handle = bus.subscribe(sub, Arc::new(|d: Delivery| async move {
///     println!("{}", d.event.event_id);
///     Ok(())
/// })).await?;
/// bus.publish(&Event::new("user.registered", serde_json::json!({"id": 7}))).await?;
/// handle.close().await;
/// bus.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RabbitMqBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: RabbitMqConfig,
    dlx: String,
    publish_conn: Connection,
    consume_conn: Connection,
    publish_chan: Channel,
    topology_chan: Mutex<Option<Channel>>,
    closed: AtomicBool,
    root: CancellationToken,
    tracker: TaskTracker,
    events: broadcast::Sender<ConnectionEvent>,
}

fn broker(e: lapin::Error) -> Error {
    Error::Broker(Box::new(e))
}

impl RabbitMqBus {
    /// Connects (retrying with backoff up to the configured attempts, then
    /// failing with [`Error::Connect`]), opens the publishing channel in
    /// confirm mode and declares the exchange and its dead-letter exchange.
    pub async fn connect(cfg: RabbitMqConfig) -> Result<Self, Error> {
        let uri = cfg.parsed_uri()?;
        let publish_conn = open(&cfg, &uri, "publish").await?;
        let consume_conn = open(&cfg, &uri, "consume").await?;
        let publish_chan = publish_conn.create_channel().await.map_err(broker)?;
        publish_chan
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(broker)?;
        let dlx = mapping::dead_letter_exchange(&cfg.exchange);
        declare_exchanges(&publish_chan, &cfg.exchange, &dlx).await?;
        let (events, _) = broadcast::channel(64);
        let inner = Arc::new(Inner {
            dlx,
            publish_conn,
            consume_conn,
            publish_chan,
            topology_chan: Mutex::new(None),
            closed: AtomicBool::new(false),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            events,
            cfg,
        });
        for conn in [&inner.publish_conn, &inner.consume_conn] {
            let mut stream = conn.events_listener();
            let (tx, token) = (inner.events.clone(), inner.root.clone());
            tokio::spawn(async move {
                loop {
                    let ev = tokio::select! {
                        () = token.cancelled() => break,
                        ev = stream.next() => match ev { Some(ev) => ev, None => break },
                    };
                    let mapped = match ev {
                        lapin::Event::Connected => ConnectionEvent::Connected,
                        lapin::Event::ConnectionBlocked(reason) => {
                            ConnectionEvent::Blocked { reason }
                        }
                        lapin::Event::ConnectionUnblocked => ConnectionEvent::Unblocked,
                        lapin::Event::Error(e) => {
                            tracing::warn!(error = %e, "RabbitMQ connection error; recovering");
                            ConnectionEvent::Disconnected {
                                reason: e.to_string(),
                            }
                        }
                        _ => continue,
                    };
                    let _ = tx.send(mapped);
                }
            });
        }
        Ok(RabbitMqBus { inner })
    }

    /// Connection changes of both connections (for health checks and logs).
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events.subscribe()
    }

    /// The exchange this bus publishes to.
    pub fn exchange(&self) -> &str {
        &self.inner.cfg.exchange
    }

    /// Graceful shutdown: no more publishing; every subscription closes
    /// (in-flight handlers finish within their grace period, the rest is
    /// redelivered); then both connections close.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.root.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        let _ = self.inner.publish_chan.wait_for_confirms().await;
        for conn in [&self.inner.publish_conn, &self.inner.consume_conn] {
            if let Err(e) = conn.close(200, "closing".into()).await {
                tracing::debug!(error = %e, "closing a RabbitMQ connection");
            }
        }
        let _ = self.inner.events.send(ConnectionEvent::Closed);
    }

    /// Deletes the queues of `sub` (work, dead-letter and retry queues), for
    /// tests and decommissioning. Messages in them are lost.
    pub async fn delete_subscription(&self, sub: &Subscription) -> Result<(), Error> {
        let ch = self.inner.topology_channel().await?;
        let mut names = vec![sub.queue.clone(), sub.dead_letter_queue()];
        names.extend(
            sub.retry_delays
                .iter()
                .map(|d| mapping::retry_queue(&sub.queue, *d)),
        );
        for name in names {
            ch.queue_delete(short(&name), QueueDeleteOptions::default())
                .await
                .map_err(broker)?;
        }
        Ok(())
    }

    /// Deletes the exchange and its dead-letter exchange, for tests.
    pub async fn delete_exchanges(&self) -> Result<(), Error> {
        let ch = self.inner.topology_channel().await?;
        for name in [&self.inner.cfg.exchange, &self.inner.dlx] {
            ch.exchange_delete(short(name), ExchangeDeleteOptions::default())
                .await
                .map_err(broker)?;
        }
        Ok(())
    }
}

async fn open(
    cfg: &RabbitMqConfig,
    uri: &lapin::uri::AMQPUri,
    role: &str,
) -> Result<Connection, Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(format!("{} ({role})", cfg.app_id).into())
        .enable_auto_recover()
        .configure_backoff(|b| {
            b.with_min_delay(cfg.reconnect_min)
                .with_max_delay(cfg.reconnect_max)
                .with_max_times(cfg.reconnect_attempts.saturating_sub(1))
        });
    Connection::connect_uri(uri.clone(), props)
        .await
        .map_err(|e| Error::Connect {
            uri: cfg.redacted_uri(),
            attempts: u32::try_from(cfg.reconnect_attempts).unwrap_or(u32::MAX),
            source: Box::new(e),
        })
}

async fn declare_exchanges(ch: &Channel, exchange: &str, dlx: &str) -> Result<(), Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        short(exchange),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(broker)?;
    ch.exchange_declare(
        short(dlx),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(broker)
}

impl Inner {
    /// A channel for declarations outside any subscription; re-opened when
    /// the broker closed the last one (a failed declaration closes it).
    async fn topology_channel(&self) -> Result<Channel, Error> {
        let existing = self
            .topology_chan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(ch) = existing
            && (ch.status().connected() || ch.status().reconnecting())
        {
            return Ok(ch);
        }
        let ch = self.consume_conn.create_channel().await.map_err(broker)?;
        *self
            .topology_chan
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(ch.clone());
        Ok(ch)
    }

    /// Declares the whole topology of `sub` on `ch`.
    pub(crate) async fn declare_on(&self, ch: &Channel, sub: &Subscription) -> Result<(), Error> {
        declare_exchanges(ch, &self.cfg.exchange, &self.dlx).await?;
        let q = &sub.queue;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            mapping::string_value(&self.dlx),
        );
        args.insert("x-dead-letter-routing-key".into(), mapping::string_value(q));
        ch.queue_declare(short(q), QueueDeclareOptions::durable(), args)
            .await
            .map_err(broker)?;
        for p in &sub.patterns {
            ch.queue_bind(
                short(q),
                short(&self.cfg.exchange),
                short(p),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        }
        let dlq = sub.dead_letter_queue();
        ch.queue_declare(
            short(&dlq),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
        ch.queue_bind(
            short(&dlq),
            short(&self.dlx),
            short(q),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
        for delay in &sub.retry_delays {
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            args.insert("x-dead-letter-exchange".into(), mapping::string_value(""));
            args.insert("x-dead-letter-routing-key".into(), mapping::string_value(q));
            ch.queue_declare(
                short(&mapping::retry_queue(q, *delay)),
                QueueDeclareOptions::durable(),
                args,
            )
            .await
            .map_err(broker)?;
        }
        Ok(())
    }

    /// Publishes and waits for the confirm; on a connection failure waits
    /// for lapin's recovery and sends again (so a publish unconfirmed when
    /// the connection dropped is re-sent), up to the recovery timeout.
    pub(crate) async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
        event_id: &str,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + self.cfg.recovery_timeout;
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        loop {
            let attempt = async {
                self.publish_chan
                    .basic_publish(
                        short(exchange),
                        short(routing_key),
                        opts,
                        body,
                        props.clone(),
                    )
                    .await?
                    .await
            };
            let err = match attempt.await {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                    return Err(Error::Unroutable {
                        event_type: routing_key.to_owned(),
                    });
                }
                Ok(Confirmation::Nack(None)) => {
                    return Err(Error::Nacked {
                        event_id: event_id.to_owned(),
                    });
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(Error::Recovery(Box::new(err)));
            }
            tracing::debug!(error = %err, "publish interrupted; waiting for recovery to re-send");
            let recovered =
                tokio::time::timeout_at(deadline, self.publish_chan.wait_for_recovery(err)).await;
            match recovered {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if self.publish_conn.status().closed() || self.publish_conn.status().errored() {
                        return Err(Error::Recovery(Box::new(e)));
                    }
                    // Not yet seen as lost by the io loop: look again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => return Err(Error::Recovery("recovery timed out".into())),
            }
        }
    }
}

impl Publisher for RabbitMqBus {
    fn app_id(&self) -> &str {
        &self.inner.cfg.app_id
    }

    fn publish_encoded(&self, event: EncodedEvent) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if self.inner.closed.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            let props = mapping::properties(&event);
            self.inner
                .publish_raw(
                    &self.inner.cfg.exchange,
                    &event.event_type,
                    &event.body,
                    props,
                    &event.event_id,
                )
                .await
        })
    }

    fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst)
            && self.inner.publish_conn.status().connected()
            && self.inner.consume_conn.status().connected()
    }
}

impl Subscriber for RabbitMqBus {
    fn declare<'a>(&'a self, sub: &'a Subscription) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let ch = self.inner.topology_channel().await?;
            self.inner.declare_on(&ch, sub).await
        })
    }

    fn subscribe(
        &self,
        sub: Subscription,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'_, Result<SubscriptionHandle, Error>> {
        Box::pin(async move {
            if self.inner.closed.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            let token = self.inner.root.child_token();
            let queue = sub.queue.clone();
            let started = consumer::start(self.inner.clone(), sub, handler).await?;
            let task = self.inner.tracker.spawn(started.run(token.clone()));
            Ok(SubscriptionHandle::new(queue, token, task))
        })
    }

    fn take_dead_letters<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move {
            let ch = self.inner.topology_channel().await?;
            let dlq = format!("{queue}.dlq");
            let mut out = Vec::new();
            while out.len() < max {
                let Some(msg) = ch
                    .basic_get(short(&dlq), BasicGetOptions { no_ack: true })
                    .await
                    .map_err(broker)?
                else {
                    break;
                };
                let d = msg.delivery;
                out.push(DeadLetter {
                    reason: mapping::header_str(&d.properties, mapping::REASON)
                        .unwrap_or_else(|| "rejected by the broker".to_owned()),
                    attempts: mapping::header_u32(&d.properties, mapping::ATTEMPTS).unwrap_or(0),
                    routing_key: mapping::header_str(&d.properties, mapping::ROUTING_KEY)
                        .unwrap_or_else(|| d.routing_key.as_str().to_owned()),
                    body: d.data.into(),
                });
            }
            Ok(out)
        })
    }
}

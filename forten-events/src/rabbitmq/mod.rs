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
//!
//! Reconnects are the bus's own, not lapin's `enable_auto_recover`: with
//! lapin 4.12.3 a connection cut (both sockets closed by a proxy) could stop
//! lapin's io loop after "read 0 / half closed" without ever waking the
//! recovery waiters, so publishes and consumers hung. Instead the bus opens
//! a new connection when one fails (backoff up to the configured attempts;
//! concurrent failures share one reconnect); publishes that were unconfirmed
//! are sent again on it, and each subscription re-opens its channel,
//! re-declares its topology and consumes again. Heartbeats (10 s by default)
//! detect a dead peer.

mod config;
mod consumer;
mod mapping;
mod supervise;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use futures::future::BoxFuture;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
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

/// The publishing connection and its confirm-mode channel, one generation.
#[derive(Debug)]
struct PublishLink {
    generation: u64,
    conn: Connection,
    chan: Channel,
    stop: CancellationToken,
}

/// The consuming connection, one generation.
#[derive(Debug)]
pub(crate) struct ConsumeLink {
    pub(crate) generation: u64,
    pub(crate) conn: Connection,
    stop: CancellationToken,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: RabbitMqConfig,
    uri: AMQPUri,
    dlx: String,
    publish: Mutex<Arc<PublishLink>>,
    consume: Mutex<Arc<ConsumeLink>>,
    publish_reconnect: tokio::sync::Mutex<()>,
    consume_reconnect: tokio::sync::Mutex<()>,
    topology_chan: Mutex<Option<(u64, Channel)>>,
    closed: AtomicBool,
    root: CancellationToken,
    tracker: TaskTracker,
    events: broadcast::Sender<ConnectionEvent>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn broker(e: lapin::Error) -> Error {
    Error::Broker(Box::new(e))
}

impl RabbitMqBus {
    /// Connects both connections (each retried with backoff up to the
    /// configured attempts, then [`Error::Connect`]), opens the publishing
    /// channel in confirm mode and declares the exchange and its
    /// dead-letter exchange.
    pub async fn connect(cfg: RabbitMqConfig) -> Result<Self, Error> {
        let uri = cfg.parsed_uri()?;
        let dlx = mapping::dead_letter_exchange(&cfg.exchange);
        let (events, _) = broadcast::channel(64);
        let publish = open_publish(&cfg, &uri, &dlx, 1, &events).await?;
        let consume = open_consume(&cfg, &uri, 1, &events).await?;
        let inner = Arc::new(Inner {
            uri,
            dlx,
            publish: Mutex::new(Arc::new(publish)),
            consume: Mutex::new(Arc::new(consume)),
            publish_reconnect: tokio::sync::Mutex::new(()),
            consume_reconnect: tokio::sync::Mutex::new(()),
            topology_chan: Mutex::new(None),
            closed: AtomicBool::new(false),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            events,
            cfg,
        });
        supervise::supervise(&inner);
        Ok(RabbitMqBus { inner })
    }

    /// Connection changes of both connections (for health checks and logs).
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events.subscribe()
    }

    /// Whether both connections are up now (not closed, not reconnecting):
    /// the closure a health check calls. A connection that drops is re-opened
    /// in the background even when nothing uses it, so this turns true again
    /// once the broker is reachable.
    pub fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst)
            && self.inner.publish_link().conn.status().connected()
            && self.inner.consume_link().conn.status().connected()
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
        let publish = self.inner.publish_link();
        let consume = self.inner.consume_link();
        let _ = publish.chan.wait_for_confirms().await;
        for conn in [&publish.conn, &consume.conn] {
            if let Err(e) = conn.close(200, "closing".into()).await {
                tracing::debug!(error = %e, "closing a RabbitMQ connection");
            }
        }
        publish.stop.cancel();
        consume.stop.cancel();
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

/// Connects, trying up to the configured attempts with exponential backoff.
async fn connect_with_retry(
    cfg: &RabbitMqConfig,
    uri: &AMQPUri,
    role: &str,
) -> Result<Connection, Error> {
    let mut delay = cfg.reconnect_min;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{} ({role})", cfg.app_id).into());
        match Connection::connect_uri(uri.clone(), props).await {
            Ok(conn) => return Ok(conn),
            Err(e) if attempt >= cfg.reconnect_attempts => {
                return Err(Error::Connect {
                    uri: cfg.redacted_uri(),
                    attempts: u32::try_from(attempt).unwrap_or(u32::MAX),
                    source: Box::new(e),
                });
            }
            Err(e) => {
                tracing::debug!(%role, attempt, error = %e, "connecting to RabbitMQ failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(cfg.reconnect_max);
            }
        }
    }
}

/// Forwards a connection's blocked/unblocked/error events until `stop`.
fn forward_events(
    conn: &Connection,
    tx: &broadcast::Sender<ConnectionEvent>,
    stop: &CancellationToken,
) {
    let mut stream = conn.events_listener();
    let (tx, stop) = (tx.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                () = stop.cancelled() => break,
                ev = stream.next() => match ev { Some(ev) => ev, None => break },
            };
            let mapped = match ev {
                lapin::Event::ConnectionBlocked(reason) => ConnectionEvent::Blocked { reason },
                lapin::Event::ConnectionUnblocked => ConnectionEvent::Unblocked,
                lapin::Event::Error(e) => ConnectionEvent::Disconnected {
                    reason: e.to_string(),
                },
                _ => continue,
            };
            let _ = tx.send(mapped);
        }
    });
}

async fn open_publish(
    cfg: &RabbitMqConfig,
    uri: &AMQPUri,
    dlx: &str,
    generation: u64,
    events: &broadcast::Sender<ConnectionEvent>,
) -> Result<PublishLink, Error> {
    let conn = connect_with_retry(cfg, uri, "publish").await?;
    let chan = conn.create_channel().await.map_err(broker)?;
    chan.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker)?;
    declare_exchanges(&chan, &cfg.exchange, dlx).await?;
    let stop = CancellationToken::new();
    forward_events(&conn, events, &stop);
    let _ = events.send(ConnectionEvent::Connected);
    Ok(PublishLink {
        generation,
        conn,
        chan,
        stop,
    })
}

async fn open_consume(
    cfg: &RabbitMqConfig,
    uri: &AMQPUri,
    generation: u64,
    events: &broadcast::Sender<ConnectionEvent>,
) -> Result<ConsumeLink, Error> {
    let conn = connect_with_retry(cfg, uri, "consume").await?;
    let stop = CancellationToken::new();
    forward_events(&conn, events, &stop);
    let _ = events.send(ConnectionEvent::Connected);
    Ok(ConsumeLink {
        generation,
        conn,
        stop,
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
    /// the broker closed the last one (a failed declaration closes it) or
    /// the connection was replaced.
    async fn topology_channel(&self) -> Result<Channel, Error> {
        let link = self.consume_link();
        let existing = lock(&self.topology_chan).clone();
        if let Some((generation, ch)) = existing
            && generation == link.generation
            && ch.status().connected()
        {
            return Ok(ch);
        }
        let (generation, ch) = if let Ok(ch) = link.conn.create_channel().await {
            (link.generation, ch)
        } else {
            self.reconnect_consume(link.generation).await?;
            let link = self.consume_link();
            let ch = link.conn.create_channel().await.map_err(broker)?;
            (link.generation, ch)
        };
        *lock(&self.topology_chan) = Some((generation, ch.clone()));
        Ok(ch)
    }

    fn publish_link(&self) -> Arc<PublishLink> {
        lock(&self.publish).clone()
    }

    pub(crate) fn consume_link(&self) -> Arc<ConsumeLink> {
        lock(&self.consume).clone()
    }

    /// Replaces the publishing connection of generation `seen` (a no-op
    /// when another task already did).
    async fn reconnect_publish(&self, seen: u64) -> Result<(), Error> {
        let _one_at_a_time = self.publish_reconnect.lock().await;
        let old = self.publish_link();
        if old.generation != seen {
            return Ok(());
        }
        let _ = self.events.send(ConnectionEvent::Disconnected {
            reason: "the publishing connection failed".to_owned(),
        });
        tracing::warn!("RabbitMQ publishing connection lost; reconnecting");
        let link = open_publish(&self.cfg, &self.uri, &self.dlx, seen + 1, &self.events).await?;
        old.stop.cancel();
        *lock(&self.publish) = Arc::new(link);
        Ok(())
    }

    /// Replaces the consuming connection of generation `seen` (a no-op
    /// when another task already did).
    pub(crate) async fn reconnect_consume(&self, seen: u64) -> Result<(), Error> {
        let _one_at_a_time = self.consume_reconnect.lock().await;
        let old = self.consume_link();
        if old.generation != seen {
            return Ok(());
        }
        let _ = self.events.send(ConnectionEvent::Disconnected {
            reason: "the consuming connection failed".to_owned(),
        });
        tracing::warn!("RabbitMQ consuming connection lost; reconnecting");
        let link = open_consume(&self.cfg, &self.uri, seen + 1, &self.events).await?;
        old.stop.cancel();
        *lock(&self.consume) = Arc::new(link);
        Ok(())
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

    /// Publishes and waits for the confirm; when the connection fails it
    /// reconnects and sends again (so a publish unconfirmed when the
    /// connection dropped is re-sent), up to the recovery timeout.
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
            let link = self.publish_link();
            let attempt = async {
                link.chan
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
            tracing::debug!(error = %err, "publish interrupted; re-sending on a new connection");
            match tokio::time::timeout_at(deadline, self.reconnect_publish(link.generation)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::Recovery(Box::new(e))),
                Err(_) => return Err(Error::Recovery(Box::new(err))),
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
            let result = self
                .inner
                .publish_raw(
                    &self.inner.cfg.exchange,
                    &event.event_type,
                    &event.body,
                    props,
                    &event.event_id,
                )
                .await;
            crate::metrics::published(&event.event_type, &result);
            result
        })
    }

    fn is_connected(&self) -> bool {
        RabbitMqBus::is_connected(self)
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

//! The event bus a service connects to: forten-events' in-memory bus (one
//! broker shared by the services of one process) or RabbitMQ.

use std::sync::Arc;

use forten_events::{MemoryBus, Publisher, RabbitMqBus, RabbitMqConfig, Subscriber, Subscription};

/// Where the services' events go.
#[derive(Clone, Debug)]
pub enum BusConfig {
    /// The in-memory broker: every connection made from it shares its queues.
    Memory(MemoryBus),
    /// RabbitMQ at `url`, with the exchange `exchange` (default `forten.events`)
    /// and queue names prefixed by `namespace` when given (so several systems
    /// can share one broker, e.g. in tests).
    Amqp {
        /// `amqp://user:pass@host:5672/%2f`
        url: String,
        /// The topic exchange.
        exchange: String,
        /// A prefix for queue names (`<namespace>.<queue>`), or none.
        namespace: Option<String>,
    },
}

impl BusConfig {
    /// A fresh in-memory broker.
    pub fn memory() -> Self {
        BusConfig::Memory(MemoryBus::new("forten-examples"))
    }

    /// RabbitMQ at `url` with the default exchange and plain queue names.
    pub fn amqp(url: impl Into<String>) -> Self {
        BusConfig::Amqp {
            url: url.into(),
            exchange: "forten.events".to_owned(),
            namespace: None,
        }
    }

    /// Connects a client publishing as `app_id`.
    pub async fn connect(&self, app_id: &str) -> Result<Bus, forten_events::Error> {
        Ok(match self {
            BusConfig::Memory(broker) => Bus::Memory(broker.connection(app_id)),
            BusConfig::Amqp { url, exchange, .. } => {
                let config = RabbitMqConfig::new(url.clone())
                    .exchange(exchange.clone())
                    .app_id(app_id);
                Bus::Rabbit(Arc::new(RabbitMqBus::connect(config).await?))
            }
        })
    }

    /// The queue name for `queue`, with the namespace prefix when there is one.
    pub fn queue_name(&self, queue: &str) -> String {
        match self {
            BusConfig::Amqp {
                namespace: Some(ns),
                ..
            } => format!("{ns}.{queue}"),
            _ => queue.to_owned(),
        }
    }

    /// `"memory"` or `"rabbitmq"`.
    pub fn kind(&self) -> &'static str {
        match self {
            BusConfig::Memory(_) => "memory",
            BusConfig::Amqp { .. } => "rabbitmq",
        }
    }
}

/// One service's connection to the bus.
#[derive(Clone, Debug)]
pub enum Bus {
    /// A client of the in-memory broker.
    Memory(MemoryBus),
    /// A RabbitMQ connection pair (publish + consume).
    Rabbit(Arc<RabbitMqBus>),
}

impl Bus {
    /// Publishes.
    pub fn publisher(&self) -> &dyn Publisher {
        match self {
            Bus::Memory(b) => b,
            Bus::Rabbit(b) => b.as_ref(),
        }
    }

    /// Subscribes.
    pub fn subscriber(&self) -> &dyn Subscriber {
        match self {
            Bus::Memory(b) => b,
            Bus::Rabbit(b) => b.as_ref(),
        }
    }

    /// Whether the connection is up (the services' readiness check).
    pub fn is_connected(&self) -> bool {
        self.publisher().is_connected()
    }

    /// Declares `sub` without consuming, so events published before the
    /// consumer starts are kept.
    pub async fn declare(&self, sub: &Subscription) -> Result<(), forten_events::Error> {
        self.subscriber().declare(sub).await
    }

    /// Closes the connection: subscriptions drain (in-flight handlers finish).
    pub async fn close(&self) {
        match self {
            Bus::Memory(b) => b.close().await,
            Bus::Rabbit(b) => b.close().await,
        }
    }
}

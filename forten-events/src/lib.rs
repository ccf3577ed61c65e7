//! Domain events between services: an envelope that carries correlation and
//! trace context (DESIGN 4.8), confirmed publishing, subscriptions with
//! retry tiers and a dead-letter queue, on RabbitMQ ([`RabbitMqBus`], feature
//! `rabbitmq`, on by default) or in memory ([`MemoryBus`]), both passing one
//! conformance suite.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use forten_events::{Delivery, Event, HandlerError, MemoryBus, PublisherExt, Subscriber, Subscription};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct UserRegistered { email: String }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let bus = MemoryBus::new("auth-service");
//! let sub = Subscription::builder("notifications.user-registered")
//!     .bind("user.registered")
//!     .max_retries(3)
//!     .retry_delays([Duration::from_millis(10), Duration::from_millis(100)])
//!     .build()?;
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let handle = bus.subscribe(sub, Arc::new(move |d: Delivery| {
//!     let tx = tx.clone();
//!     async move {
//!         let event = d.decode::<UserRegistered>()?; // bad data: dead-lettered
//!         tx.send(event.data.email).map_err(HandlerError::retry)?;
//!         Ok(())
//!     }
//! })).await?;
//!
//! bus.publish(&Event::new("user.registered", UserRegistered { email: "a@b.c".into() })).await?;
//! assert_eq!(rx.recv().await.as_deref(), Some("a@b.c"));
//! handle.close().await;
//! # Ok::<_, forten_events::Error>(()) }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bus;
mod context;
mod dispatch;
mod envelope;
mod error;
mod handler;
mod memory;
mod metrics;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
mod subscription;
mod topic;

pub use bus::{
    ConnectionEvent, DEFAULT_WINDOW, DeadLetter, Publisher, PublisherExt, Subscriber,
    SubscriptionHandle,
};
pub use envelope::{EncodedEvent, Event, EventMetadata, SCHEMA_VERSION};
pub use error::{Error, HandlerError};
pub use handler::{Delivery, Handler};
pub use memory::MemoryBus;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{RabbitMqBus, RabbitMqConfig};
pub use subscription::{Subscription, SubscriptionBuilder};

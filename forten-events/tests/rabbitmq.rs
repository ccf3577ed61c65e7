//! The conformance suite on RabbitMQ (127.0.0.1:5672, guest/guest). Every
//! test uses its own exchange and queues and deletes them afterwards, so the
//! tests run in parallel.
#![allow(missing_docs, clippy::unwrap_used)]

mod conformance;

use std::future::Future;
use std::sync::Mutex;

use conformance::Fixture;
use forten_events::{RabbitMqBus, RabbitMqConfig, Subscription, SubscriptionBuilder};

pub const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

struct Rabbit {
    prefix: String,
    subs: Mutex<Vec<Subscription>>,
}

impl Rabbit {
    fn new() -> Self {
        Rabbit {
            prefix: format!("forten-test.{}", uuid::Uuid::new_v4().simple()),
            subs: Mutex::new(Vec::new()),
        }
    }

    fn config(&self) -> RabbitMqConfig {
        RabbitMqConfig::new(URI)
            .exchange(format!("{}.events", self.prefix))
            .app_id("conformance")
    }

    async fn cleanup(&self) {
        let admin = RabbitMqBus::connect(self.config()).await.unwrap();
        let subs = self.subs.lock().unwrap().clone();
        for sub in subs {
            admin.delete_subscription(&sub).await.unwrap();
        }
        admin.delete_exchanges().await.unwrap();
        admin.close().await;
    }
}

impl Fixture for Rabbit {
    type Bus = RabbitMqBus;

    fn bus(&self) -> impl Future<Output = RabbitMqBus> + Send {
        let config = self.config();
        async move { RabbitMqBus::connect(config).await.unwrap() }
    }

    fn close(&self, bus: &RabbitMqBus) -> impl Future<Output = ()> + Send {
        let bus = bus.clone();
        async move { bus.close().await }
    }

    fn sub(&self, name: &str) -> SubscriptionBuilder {
        Subscription::builder(format!("{}.{name}", self.prefix))
    }

    fn track(&self, sub: &Subscription) {
        let mut subs = self.subs.lock().unwrap();
        if !subs.iter().any(|s| s.queue() == sub.queue()) {
            subs.push(sub.clone());
        }
    }
}

macro_rules! rabbit_suite {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs RabbitMQ: run scripts/test"]
        async fn $name() {
            let fx = Rabbit::new();
            conformance::$name(&fx).await;
            fx.cleanup().await;
        }
    )*};
}

conformance_names!(rabbit_suite);

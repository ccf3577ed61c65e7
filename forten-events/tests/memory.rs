//! The conformance suite on [`MemoryBus`], on paused tokio time.
#![allow(missing_docs, clippy::unwrap_used)]

mod conformance;

use std::future::Future;

use conformance::Fixture;
use forten_events::{MemoryBus, Subscription, SubscriptionBuilder};

struct Mem {
    broker: MemoryBus,
}

impl Fixture for Mem {
    type Bus = MemoryBus;

    fn bus(&self) -> impl Future<Output = MemoryBus> + Send {
        let bus = self.broker.connection("conformance");
        async move { bus }
    }

    fn close(&self, bus: &MemoryBus) -> impl Future<Output = ()> + Send {
        let bus = bus.clone();
        async move { bus.close().await }
    }

    fn sub(&self, name: &str) -> SubscriptionBuilder {
        Subscription::builder(format!("mem.{name}"))
    }

    fn track(&self, _sub: &Subscription) {}
}

macro_rules! memory_suite {
    ($($name:ident),*) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let fx = Mem { broker: MemoryBus::new("broker") };
            conformance::$name(&fx).await;
        }
    )*};
}

conformance_names!(memory_suite);

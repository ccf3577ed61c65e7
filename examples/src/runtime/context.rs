//! What a service is started with.

use std::time::Duration;

use forten_discovery::AnyRegistry;
use forten_events::{Event, PublisherExt};
use forten_health::{Check, HealthMonitor, HealthMonitorBuilder};
use serde::Serialize;

use super::auth::Keys;
use super::bus::{Bus, BusConfig};
use super::serve::HEALTH_INTERVAL;

/// The service names, as registered and as service-token audiences.
pub mod names {
    /// The gateway.
    pub const GATEWAY: &str = "api-gateway";
    /// auth-service.
    pub const AUTH: &str = "auth-service";
    /// events-service.
    pub const EVENTS: &str = "events-service";
    /// notification-service.
    pub const NOTIFICATIONS: &str = "notification-service";
}

/// Shared settings of the services of one system.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    /// Token keys.
    pub keys: Keys,
    /// The bus.
    pub bus: BusConfig,
    /// Where services register.
    pub registry: AnyRegistry,
    /// The largest deadline a service grants a request.
    pub max_deadline: Duration,
    /// How often health checks run.
    pub health_interval: Duration,
}

impl ServiceContext {
    /// A context with the default deadline (10 s) and health interval.
    pub fn new(keys: Keys, bus: BusConfig, registry: AnyRegistry) -> Self {
        ServiceContext {
            keys,
            bus,
            registry,
            max_deadline: Duration::from_secs(10),
            health_interval: HEALTH_INTERVAL,
        }
    }

    /// A health monitor for `service` with a check on its bus connection.
    ///
    /// The bus check is non-critical: a lost broker connection reports
    /// `warn`, and readiness stays 200. The bus recovers by itself (publishes
    /// wait for the connection to come back, consumers resume), and the
    /// service's HTTP API works meanwhile; failing readiness would drop every
    /// instance from discovery during a broker blip and turn it into an outage.
    pub fn monitor(&self, service: &str, bus: Option<&Bus>) -> HealthMonitorBuilder {
        let mut builder = HealthMonitor::builder(service, env!("CARGO_PKG_VERSION"))
            .interval(self.health_interval);
        if let Some(bus) = bus {
            let bus = bus.clone();
            let name = format!("{}:connection", self.bus.kind());
            builder =
                builder.check(Check::from_bool(name, move || bus.is_connected()).non_critical());
        }
        builder
    }
}

/// Publishes `event` about the aggregate (`kind`, `id`), logging rather than
/// failing the request when the bus refuses it: the change is stored either way.
/// (There is no outbox: an event the bus refuses is lost, and says so in the log.)
pub async fn publish<T: Serialize + Sync>(
    bus: &Bus,
    event_type: &str,
    kind: &str,
    id: &str,
    data: T,
) {
    let event = Event::new(event_type, data).with_aggregate(id, kind);
    match bus.publisher().publish(&event).await {
        Ok(()) => {
            tracing::info!(event_type, event_id = %event.event_id, aggregate_id = id, "published");
        }
        Err(e) => tracing::warn!(event_type, aggregate_id = id, error = %e, "event not published"),
    }
}

//! [`SystemConfig`]: how to run the system.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::Service;
use crate::runtime::{BusConfig, Secrets};

/// How to run the system. Start from [`ephemeral`](Self::ephemeral) (tests)
/// or [`demo`](Self::demo) (the fixed ports of `forten-demo`).
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// The address every service binds (loopback by default).
    pub host: IpAddr,
    /// Ports; 0 picks an ephemeral one (kept across restarts).
    pub ports: HashMap<Service, u16>,
    /// The event bus.
    pub bus: BusConfig,
    /// Token secrets.
    pub secrets: Secrets,
    /// Per-user rate limit: requests per second and burst.
    pub rate_limit: (u32, u32),
    /// Registry lease TTL.
    pub registry_ttl: Duration,
    /// How often the registry checks each instance's `/health/ready` (and services their own checks).
    pub health_interval: Duration,
    /// Per-attempt timeout of the gateway's upstream calls.
    pub upstream_timeout: Duration,
    /// Whether the gateway serves `POST /demo/services/{name}/stop|start`.
    pub demo_controls: bool,
    /// Whether RabbitMQ names get a random per-system prefix (tests sharing one broker).
    pub isolate_bus: bool,
}

impl SystemConfig {
    /// Every port ephemeral, the in-memory bus, development secrets, a
    /// generous rate limit (100/s, burst 200), fast health checks.
    pub fn ephemeral() -> Self {
        SystemConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Service::ALL.iter().map(|s| (*s, 0)).collect(),
            bus: BusConfig::memory(),
            secrets: Secrets::dev(),
            rate_limit: (100, 200),
            registry_ttl: Duration::from_secs(10),
            health_interval: Duration::from_millis(500),
            upstream_timeout: Duration::from_secs(3),
            demo_controls: false,
            isolate_bus: true,
        }
    }

    /// forten-demo's defaults: ports 3000 to 3003, the in-memory bus,
    /// development secrets, demo controls on.
    pub fn demo() -> Self {
        let mut c = Self::ephemeral();
        c.ports = HashMap::from([
            (Service::Gateway, 3000),
            (Service::Auth, 3001),
            (Service::Events, 3002),
            (Service::Notifications, 3003),
        ]);
        c.health_interval = Duration::from_secs(2);
        c.demo_controls = true;
        c.isolate_bus = false;
        c
    }

    /// RabbitMQ at `url` instead of the in-memory bus.
    pub fn amqp(mut self, url: impl Into<String>) -> Self {
        let (exchange, namespace) = if self.isolate_bus {
            let ns = format!(
                "eventboard-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            (format!("forten.events.{ns}"), Some(ns))
        } else {
            ("forten.events".to_owned(), None)
        };
        self.bus = BusConfig::Amqp {
            url: url.into(),
            exchange,
            namespace,
        };
        self
    }

    /// The per-user rate limit: `per_second` sustained, bursts of `burst`.
    pub fn rate_limit_per_user(mut self, per_second: u32, burst: u32) -> Self {
        self.rate_limit = (per_second, burst);
        self
    }

    /// The port of `service` (0: ephemeral).
    pub fn port(mut self, service: Service, port: u16) -> Self {
        self.ports.insert(service, port);
        self
    }
}

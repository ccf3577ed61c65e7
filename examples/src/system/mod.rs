//! All four services in one process: what `forten-demo` runs and what the
//! end-to-end tests drive ([`RunningSystem`]).
//!
//! The gateway starts first (it hosts the registry), then
//! notification-service (so its queue exists before anything is
//! published), auth-service and events-service; each registers itself in
//! the gateway's registry. The repositories outlive the services, like a
//! database: a stopped and restarted service finds its data again, on the
//! same port.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use forten_discovery::{AnyRegistry, HealthCheckConfig, MemoryRegistry};
use tokio::net::TcpListener;

use crate::auth::AuthStore;
use crate::events::{EventRepository, MemoryEvents};
use crate::gateway::{self, BoxFuture, DemoControl, GatewayConfig};
use crate::notifications::{MemoryNotifications, NotificationRepository};
use crate::runtime::{BusConfig, Keys, Launch, RunningService, ServiceContext};

mod config;

pub use config::SystemConfig;

/// The gateway first (its in-flight requests still reach the services),
/// notification-service last (it drains what the others published).
const SHUTDOWN_ORDER: [Service; 4] = [
    Service::Gateway,
    Service::Auth,
    Service::Events,
    Service::Notifications,
];

/// One of the four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// api-gateway.
    Gateway,
    /// auth-service.
    Auth,
    /// events-service.
    Events,
    /// notification-service.
    Notifications,
}

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 4] = [
        Service::Gateway,
        Service::Notifications,
        Service::Auth,
        Service::Events,
    ];

    /// The registered name (`auth-service`, ...).
    pub fn name(self) -> &'static str {
        use crate::runtime::names;
        match self {
            Service::Gateway => names::GATEWAY,
            Service::Auth => names::AUTH,
            Service::Events => names::EVENTS,
            Service::Notifications => names::NOTIFICATIONS,
        }
    }

    /// A service by its short (`auth`) or registered (`auth-service`) name.
    pub fn parse(name: &str) -> Option<Service> {
        Some(match name {
            "gateway" | "api-gateway" => Service::Gateway,
            "auth" | "auth-service" => Service::Auth,
            "events" | "events-service" => Service::Events,
            "notifications" | "notification-service" => Service::Notifications,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What can go wrong starting or stopping the system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// A listener could not be bound.
    #[error(
        "{service} cannot listen on {addr}: {source}; choose another port or stop what uses it"
    )]
    Bind {
        /// The service.
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Keys or tokens could not be set up.
    #[error("auth setup failed: {0}")]
    Auth(#[from] forten_auth::AuthError),
    /// The bus could not be reached or a subscription declared.
    #[error("event bus: {0}")]
    Bus(#[from] forten_events::Error),
    /// The registry refused its configuration.
    #[error("discovery: {0}")]
    Discovery(#[from] forten_discovery::DiscoveryError),
    /// A health monitor refused its configuration.
    #[error("health: {0}")]
    Health(#[from] forten_health::Error),
    /// An upstream client refused its configuration.
    #[error("client: {0}")]
    Client(#[from] forten_client::ClientBuildError),
    /// The service is not running.
    #[error("{0} is not running")]
    NotRunning(Service),
    /// The service is already running.
    #[error("{0} is already running; stop it first")]
    AlreadyRunning(Service),
    /// Serving failed.
    #[error("{service} failed while serving: {source}")]
    Serve {
        /// The service.
        service: &'static str,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

struct Stores {
    auth: AuthStore,
    events: Arc<dyn EventRepository>,
    notifications: Arc<dyn NotificationRepository>,
}

struct Inner {
    host: IpAddr,
    ctx: ServiceContext,
    gateway: GatewayConfig,
    stores: Stores,
    addrs: std::sync::Mutex<HashMap<Service, SocketAddr>>,
    /// The services running now (readable without waiting for a start or stop).
    live: std::sync::Mutex<std::collections::HashSet<Service>>,
    ports: HashMap<Service, u16>,
    running: tokio::sync::Mutex<HashMap<Service, RunningService>>,
}

impl Inner {
    fn addr(&self, service: Service) -> SocketAddr {
        let known = self
            .addrs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&service)
            .copied();
        known.unwrap_or_else(|| {
            SocketAddr::new(self.host, self.ports.get(&service).copied().unwrap_or(0))
        })
    }

    async fn launch(&self, service: Service) -> Result<Launch, SystemError> {
        match service {
            Service::Gateway => gateway::launch(&self.ctx, &self.gateway),
            Service::Auth => crate::auth::launch(&self.ctx, self.stores.auth.clone()).await,
            Service::Events => {
                crate::events::launch(&self.ctx, Arc::clone(&self.stores.events)).await
            }
            Service::Notifications => {
                crate::notifications::launch(&self.ctx, Arc::clone(&self.stores.notifications))
                    .await
            }
        }
    }

    async fn start(&self, service: Service) -> Result<(), SystemError> {
        let mut running = self.running.lock().await;
        if running.contains_key(&service) {
            return Err(SystemError::AlreadyRunning(service));
        }
        let addr = self.addr(service);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SystemError::Bind {
                service: service.name(),
                addr,
                source,
            })?;
        let launch = self.launch(service).await?;
        let started = RunningService::start(launch, listener)
            .await
            .map_err(|source| SystemError::Serve {
                service: service.name(),
                source,
            })?;
        self.addrs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service, started.addr());
        running.insert(service, started);
        self.set_live(service, true);
        Ok(())
    }

    fn set_live(&self, service: Service, live: bool) {
        let mut set = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live {
            set.insert(service);
        } else {
            set.remove(&service);
        }
    }

    fn is_live(&self, service: Service) -> bool {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&service)
    }

    /// Takes `service` out of the running set (it is stopped outside the lock).
    async fn take(&self, service: Service) -> Result<RunningService, SystemError> {
        let taken = self.running.lock().await.remove(&service);
        self.set_live(service, false);
        taken.ok_or(SystemError::NotRunning(service))
    }

    async fn stop(&self, service: Service) -> Result<(), SystemError> {
        // Taken out under the lock, stopped without it: a gateway stopping
        // waits for its in-flight requests, one of which may be a demo
        // control waiting for this lock.
        let running = self.take(service).await?;
        running.stop().await.map_err(|source| SystemError::Serve {
            service: service.name(),
            source,
        })
    }
}

impl Inner {
    async fn kill(&self, service: Service) -> Result<(), SystemError> {
        self.take(service).await?.kill().await;
        Ok(())
    }

    async fn check_gateway_health(&self) {
        if let Some(gateway) = self.running.lock().await.get(&Service::Gateway) {
            gateway.check_health().await;
        }
    }
}

/// The demo controls: idempotent stop / start of the three services.
struct Control(Weak<Inner>);

impl DemoControl for Control {
    fn control(&self, service: &str, start: bool) -> BoxFuture<Result<bool, SystemError>> {
        let inner = self.0.upgrade();
        let service = Service::parse(service).filter(|s| *s != Service::Gateway);
        Box::pin(async move {
            let (Some(inner), Some(service)) = (inner, service) else {
                return Ok(false);
            };
            let done = if start {
                inner.start(service).await
            } else {
                inner.stop(service).await
            };
            match done {
                Ok(()) | Err(SystemError::AlreadyRunning(_) | SystemError::NotRunning(_)) => {
                    Ok(true)
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// The running system.
pub struct RunningSystem {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RunningSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSystem")
            .field("gateway", &self.gateway_url())
            .finish_non_exhaustive()
    }
}

impl RunningSystem {
    /// Starts the four services; on failure, stops what had started.
    pub async fn start(config: SystemConfig) -> Result<RunningSystem, SystemError> {
        // Before any breaker, client or bus is built (they resolve their handles then).
        crate::runtime::metrics::install();
        let keys = Keys::new(&config.secrets)?;
        let health = HealthCheckConfig {
            interval: config.health_interval,
            timeout: Duration::from_secs(1),
            failure_threshold: 2,
        };
        let registry = MemoryRegistry::builder()
            .ttl(config.registry_ttl)
            .health_checks(health)
            .build()?;
        let mut ctx =
            ServiceContext::new(keys, config.bus.clone(), AnyRegistry::new(registry.clone()));
        ctx.health_interval = config.health_interval;
        let rate_limit = gateway::rate_limit_policy(config.rate_limit.0, config.rate_limit.1)?;
        let demo_controls = config.demo_controls;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            host: config.host,
            ctx,
            gateway: GatewayConfig {
                registry,
                rate_limit,
                upstream_timeout: config.upstream_timeout,
                upstream_total_timeout: config.upstream_timeout * 2,
                demo: demo_controls
                    .then(|| Arc::new(Control(weak.clone())) as Arc<dyn DemoControl>),
            },
            stores: Stores {
                auth: AuthStore::default(),
                events: Arc::new(MemoryEvents::new()),
                notifications: Arc::new(MemoryNotifications::new()),
            },
            addrs: std::sync::Mutex::new(HashMap::new()),
            live: std::sync::Mutex::new(std::collections::HashSet::new()),
            ports: config.ports.clone(),
            running: tokio::sync::Mutex::new(HashMap::new()),
        });
        let system = RunningSystem { inner };
        for service in Service::ALL {
            if let Err(e) = system.inner.start(service).await {
                let _ = system.stop_all().await;
                return Err(e);
            }
        }
        system.inner.check_gateway_health().await;
        Ok(system)
    }

    /// The gateway's base URL, `http://127.0.0.1:PORT`.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.inner.addr(Service::Gateway))
    }

    /// The base URL of `service` while it runs.
    pub fn service_url(&self, service: Service) -> Option<String> {
        self.inner
            .is_live(service)
            .then(|| format!("http://{}", self.inner.addr(service)))
    }

    /// The keys the system signs and checks tokens with (tests mint service tokens with them).
    pub fn keys(&self) -> &Keys {
        &self.inner.ctx.keys
    }

    /// The registry the gateway hosts.
    pub fn registry(&self) -> &MemoryRegistry {
        &self.inner.gateway.registry
    }

    /// Stops `service` gracefully: readiness fails, it deregisters, the
    /// requests it accepted finish, its consumers drain.
    pub async fn stop_service(&mut self, service: Service) -> Result<(), SystemError> {
        self.inner.stop(service).await
    }

    /// Simulates a crash of `service`: its listener and connections drop at
    /// once, in-flight requests are lost, and it does not deregister (the
    /// registry's health checks drop it after a few failed checks). Calls
    /// meanwhile fail and open the instance's circuit in the gateway.
    /// [`restart_service`](Self::restart_service) brings it back.
    pub async fn kill_service(&mut self, service: Service) -> Result<(), SystemError> {
        self.inner.kill(service).await
    }

    /// Starts `service` again, on the port it had.
    pub async fn restart_service(&mut self, service: Service) -> Result<(), SystemError> {
        self.inner.start(service).await?;
        self.inner.check_gateway_health().await;
        Ok(())
    }

    /// Stops every running service in shutdown order; the first error, if any.
    async fn stop_all(&self) -> Result<(), SystemError> {
        let mut first_error = None;
        for service in SHUTDOWN_ORDER {
            match self.inner.stop(service).await {
                Ok(()) | Err(SystemError::NotRunning(_)) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops everything gracefully, in this order: the gateway (its in-flight
    /// requests still reach the services), auth, events, notification-service
    /// (last, so it drains what the others published). On RabbitMQ with
    /// isolated names (a namespace, as [`SystemConfig::ephemeral`] sets), the
    /// system's queues and exchanges are deleted afterwards.
    pub async fn shutdown(self) -> Result<(), SystemError> {
        let stopped = self.stop_all().await;
        if let Err(e) = delete_namespaced(&self.inner.ctx.bus).await {
            tracing::warn!(error = %e, "the system's RabbitMQ queues were not deleted");
        }
        stopped
    }
}

/// Deletes what a namespaced RabbitMQ system declared (its queues and exchanges).
async fn delete_namespaced(bus: &BusConfig) -> Result<(), SystemError> {
    let BusConfig::Amqp {
        url,
        exchange,
        namespace: Some(_),
    } = bus
    else {
        return Ok(());
    };
    let config = forten_events::RabbitMqConfig::new(url.clone())
        .exchange(exchange.clone())
        .app_id("eventboard-cleanup");
    let rabbit = forten_events::RabbitMqBus::connect(config).await?;
    let deleted = async {
        rabbit
            .delete_subscription(&crate::notifications::subscription(bus)?)
            .await?;
        rabbit.delete_exchanges().await
    }
    .await;
    rabbit.close().await;
    Ok(deleted?)
}

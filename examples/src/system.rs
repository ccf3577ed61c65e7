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
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use forten_discovery::{AnyRegistry, HealthCheckConfig, MemoryRegistry};
use tokio::net::TcpListener;

use crate::auth::AuthStore;
use crate::events::{EventRepository, MemoryEvents};
use crate::gateway::{self, BoxFuture, DemoControl, GatewayConfig};
use crate::notifications::{MemoryNotifications, NotificationRepository};
use crate::runtime::{BusConfig, Keys, Launch, RunningService, Secrets, ServiceContext};

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
        Ok(())
    }

    async fn stop(&self, service: Service) -> Result<(), SystemError> {
        // Taken out under the lock, stopped without it: a gateway stopping
        // waits for its in-flight requests, one of which may be a demo
        // control waiting for this lock.
        let taken = self.running.lock().await.remove(&service);
        let running = taken.ok_or(SystemError::NotRunning(service))?;
        running.stop().await.map_err(|source| SystemError::Serve {
            service: service.name(),
            source,
        })
    }
}

impl Inner {
    async fn kill(&self, service: Service) -> Result<(), SystemError> {
        let taken = self.running.lock().await.remove(&service);
        taken.ok_or(SystemError::NotRunning(service))?.kill().await;
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
        let running = self.inner.running.try_lock().ok()?;
        running.get(&service).map(RunningService::url)
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

    async fn stop_all(&self) -> Result<(), SystemError> {
        let mut first_error = None;
        for service in Service::ALL {
            match self.inner.stop(service).await {
                Ok(()) | Err(SystemError::NotRunning(_)) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops everything gracefully: the gateway first (its in-flight requests
    /// still reach the services), then auth, events and notification-service
    /// (last, so it drains what the others published).
    pub async fn shutdown(self) -> Result<(), SystemError> {
        let mut first_error = None;
        for service in [
            Service::Gateway,
            Service::Auth,
            Service::Events,
            Service::Notifications,
        ] {
            match self.inner.stop(service).await {
                Ok(()) | Err(SystemError::NotRunning(_)) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

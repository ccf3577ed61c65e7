//! The embedded registry: TTL leases, watch, optional active health checks.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::DiscoveryError;
use crate::instance::ServiceInstance;
use crate::registry::{InstanceStream, Registration, Registry, heartbeat_interval};

/// The default lease time to live.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// An embedded registry with TTL leases: for tests, the single-process demo, and as the store
/// behind a `RegistryServer`.
///
/// An instance stays discoverable while its lease is renewed (the [`Registration`] does it in
/// the background every TTL/3); a lapsed lease removes it, and watchers see the removal. With
/// [`MemoryRegistryBuilder::health_checks`] (feature `health-check`) instances that registered a
/// `healthCheckUrl` are polled with forten-health's HTTP check and drop out of discovery while
/// failing. Clones share one registry.
///
/// ```
/// use std::time::Duration;
/// use forten_discovery::{MemoryRegistry, Registry, ServiceInstance};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), forten_discovery::DiscoveryError> {
/// let registry = MemoryRegistry::builder().ttl(Duration::from_secs(10)).build()?;
/// let registration = registry
///     .register(ServiceInstance::builder("events-service", "127.0.0.1", 3002).build()?)
///     .await?;
/// assert_eq!(registry.discover("events-service").await?.len(), 1);
/// registration.deregister().await?;
/// assert!(registry.discover("events-service").await?.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryRegistry {
    store: Arc<Store>,
}

/// Configures a [`MemoryRegistry`]; see [`MemoryRegistry::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryRegistryBuilder {
    ttl: Duration,
    sweep_interval: Option<Duration>,
    #[cfg(feature = "health-check")]
    health: Option<HealthCheckConfig>,
}

/// How registered instances are health-checked (feature `health-check`).
#[cfg(feature = "health-check")]
#[derive(Debug, Clone, Copy)]
pub struct HealthCheckConfig {
    /// Time between two checks of every instance.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive failures before an instance drops out of discovery.
    pub failure_threshold: u32,
}

#[cfg(feature = "health-check")]
impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            failure_threshold: 2,
        }
    }
}

impl MemoryRegistryBuilder {
    /// The lease time to live (default 30 s, at least 1 s and whole seconds on the wire).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often lapsed leases are swept (default: a quarter of the TTL, at most 1 s).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = Some(interval);
        self
    }

    /// Polls the `healthCheckUrl` of every instance that has one; a failing instance drops out
    /// of discovery until its check passes again. An instance counts as healthy until its
    /// first check has run. (Feature `health-check`.)
    #[cfg(feature = "health-check")]
    pub fn health_checks(mut self, config: HealthCheckConfig) -> Self {
        self.health = Some(config);
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<MemoryRegistry, DiscoveryError> {
        if self.ttl < Duration::from_secs(1) {
            return Err(DiscoveryError::Config(
                "the lease TTL must be at least 1 s".to_owned(),
            ));
        }
        let sweep = self
            .sweep_interval
            .unwrap_or_else(|| (self.ttl / 4).min(Duration::from_secs(1)));
        if sweep.is_zero() {
            return Err(DiscoveryError::Config(
                "the sweep interval must be above zero".to_owned(),
            ));
        }
        #[cfg(feature = "health-check")]
        if let Some(h) = &self.health {
            if h.interval.is_zero() || h.timeout.is_zero() || h.failure_threshold == 0 {
                return Err(DiscoveryError::Config(
                    "health checks need a non-zero interval, timeout and failure threshold"
                        .to_owned(),
                ));
            }
        }
        let (changed, _) = watch::channel(0);
        Ok(MemoryRegistry {
            store: Arc::new(Store {
                ttl: self.ttl,
                sweep,
                #[cfg(feature = "health-check")]
                health: self.health,
                state: Mutex::new(State::default()),
                changed,
                tasks_started: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) struct Store {
    ttl: Duration,
    sweep: Duration,
    #[cfg(feature = "health-check")]
    health: Option<HealthCheckConfig>,
    state: Mutex<State>,
    /// The global index after each change.
    changed: watch::Sender<u64>,
    tasks_started: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Bumped on every change of any service.
    index: u64,
    services: BTreeMap<String, Service>,
}

#[derive(Default)]
struct Service {
    /// The global index of this service's last change.
    modify_index: u64,
    instances: BTreeMap<String, Entry>,
}

struct Entry {
    instance: ServiceInstance,
    expires: Instant,
    healthy: bool,
    #[cfg(feature = "health-check")]
    monitor: Option<forten_health::HealthMonitor>,
}

/// A service's healthy instances with the index of its last change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) index: u64,
    pub(crate) instances: Vec<ServiceInstance>,
}

impl MemoryRegistry {
    /// A registry with the default TTL (30 s).
    pub fn new() -> Self {
        MemoryRegistryBuilder {
            ttl: DEFAULT_TTL,
            sweep_interval: None,
            #[cfg(feature = "health-check")]
            health: None,
        }
        .build()
        .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }

    /// Starts configuring a registry.
    pub fn builder() -> MemoryRegistryBuilder {
        MemoryRegistryBuilder {
            ttl: DEFAULT_TTL,
            sweep_interval: None,
            #[cfg(feature = "health-check")]
            health: None,
        }
    }

    /// The lease time to live.
    pub fn ttl(&self) -> Duration {
        self.store.ttl
    }

    /// Registers (or replaces) `instance` with a fresh lease, without a heartbeat task: the
    /// caller renews with [`renew`](Self::renew). Returns the instance as stored (with its id).
    /// This is what the registry server's `POST` does.
    pub fn put(&self, instance: ServiceInstance) -> Result<ServiceInstance, DiscoveryError> {
        self.store.put(instance)
    }

    /// Renews the lease of one instance; `NotRegistered` when it is unknown or lapsed.
    pub fn renew(&self, name: &str, id: &str) -> Result<(), DiscoveryError> {
        self.store.renew(name, id)
    }

    /// Removes one instance; `false` when it was not registered.
    pub fn remove(&self, name: &str, id: &str) -> bool {
        self.store.remove(name, id)
    }

    /// Every service with at least one healthy instance.
    pub fn services(&self) -> BTreeMap<String, Vec<ServiceInstance>> {
        self.store.all().1
    }

    #[allow(dead_code)] // used by the registry server
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[allow(dead_code)] // ttl and wait serve the registry server
impl Store {
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts the sweeper (and health checker) on first use inside a runtime.
    fn ensure_tasks(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.tasks_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let sweep = self.sweep;
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(sweep);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                store.sweep();
            }
        });
        #[cfg(feature = "health-check")]
        if let Some(health) = self.health {
            let weak: Weak<Store> = Arc::downgrade(self);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(health.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(store) = weak.upgrade() else { break };
                    store.check_health().await;
                }
            });
        }
        #[cfg(not(feature = "health-check"))]
        let _: Option<Weak<Store>> = None;
    }

    fn bump(&self, state: &mut State, name: &str) {
        state.index += 1;
        let index = state.index;
        if let Some(service) = state.services.get_mut(name) {
            service.modify_index = index;
        }
        self.changed.send_replace(index);
    }

    pub(crate) fn put(
        self: &Arc<Self>,
        mut instance: ServiceInstance,
    ) -> Result<ServiceInstance, DiscoveryError> {
        instance.ensure_id();
        instance.validate()?;
        self.ensure_tasks();
        let now = Instant::now();
        let mut state = lock(&self.state);
        self.sweep_locked(&mut state, now);
        let service = state.services.entry(instance.name.clone()).or_default();
        let expires = now + self.ttl;
        let changed = match service.instances.get_mut(&instance.id) {
            Some(entry) if entry.instance == instance => {
                entry.expires = expires;
                false
            }
            _ => {
                let entry = Entry {
                    #[cfg(feature = "health-check")]
                    monitor: self.monitor_for(&instance),
                    instance: instance.clone(),
                    expires,
                    healthy: true,
                };
                service.instances.insert(instance.id.clone(), entry);
                true
            }
        };
        if changed {
            self.bump(&mut state, &instance.name);
        }
        Ok(instance)
    }

    pub(crate) fn renew(self: &Arc<Self>, name: &str, id: &str) -> Result<(), DiscoveryError> {
        self.ensure_tasks();
        let now = Instant::now();
        let mut state = lock(&self.state);
        self.sweep_locked(&mut state, now);
        match state
            .services
            .get_mut(name)
            .and_then(|s| s.instances.get_mut(id))
        {
            Some(entry) => {
                entry.expires = now + self.ttl;
                Ok(())
            }
            None => Err(DiscoveryError::NotRegistered {
                service: name.to_owned(),
                id: id.to_owned(),
            }),
        }
    }

    pub(crate) fn remove(&self, name: &str, id: &str) -> bool {
        let mut state = lock(&self.state);
        let removed = state
            .services
            .get_mut(name)
            .and_then(|s| s.instances.remove(id))
            .is_some();
        if removed {
            self.bump(&mut state, name);
        }
        removed
    }

    fn sweep(&self) {
        let mut state = lock(&self.state);
        self.sweep_locked(&mut state, Instant::now());
    }

    fn sweep_locked(&self, state: &mut State, now: Instant) {
        let mut lapsed = Vec::new();
        for (name, service) in &mut state.services {
            let before = service.instances.len();
            service.instances.retain(|id, e| {
                let keep = e.expires > now;
                if !keep {
                    tracing::info!(service = %name, instance = %id, "lease lapsed: instance removed");
                }
                keep
            });
            if service.instances.len() != before {
                lapsed.push(name.clone());
            }
        }
        for name in lapsed {
            self.bump(state, &name);
        }
    }

    pub(crate) fn snapshot(&self, name: &str) -> Snapshot {
        let mut state = lock(&self.state);
        self.sweep_locked(&mut state, Instant::now());
        match state.services.get(name) {
            Some(service) => Snapshot {
                index: service.modify_index,
                instances: service
                    .instances
                    .values()
                    .filter(|e| e.healthy)
                    .map(|e| e.instance.clone())
                    .collect(),
            },
            None => Snapshot {
                index: 0,
                instances: Vec::new(),
            },
        }
    }

    /// The global index and every service with healthy instances.
    pub(crate) fn all(&self) -> (u64, BTreeMap<String, Vec<ServiceInstance>>) {
        let mut state = lock(&self.state);
        self.sweep_locked(&mut state, Instant::now());
        let services = state
            .services
            .iter()
            .filter_map(|(name, s)| {
                let healthy: Vec<_> = s
                    .instances
                    .values()
                    .filter(|e| e.healthy)
                    .map(|e| e.instance.clone())
                    .collect();
                (!healthy.is_empty()).then(|| (name.clone(), healthy))
            })
            .collect();
        (state.index, services)
    }

    /// Waits until service `name` changed after `index` (or `index` is ahead of this store,
    /// e.g. after a restart), at most `wait`; returns the snapshot then.
    pub(crate) async fn wait(&self, name: &str, index: u64, wait: Duration) -> Snapshot {
        let mut rx = self.changed.subscribe();
        let deadline = Instant::now() + wait;
        loop {
            let snapshot = self.snapshot(name);
            let global = *rx.borrow_and_update();
            if snapshot.index > index || index > global {
                return snapshot;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.snapshot(name),
            }
        }
    }

    pub(crate) fn watch(self: &Arc<Self>, name: &str) -> InstanceStream {
        self.ensure_tasks();
        let rx = self.changed.subscribe();
        let store = Arc::clone(self);
        let name = name.to_owned();
        Box::pin(futures_util::stream::unfold(
            (store, rx, name, None::<u64>),
            |(store, mut rx, name, last)| async move {
                loop {
                    rx.borrow_and_update();
                    let snapshot = store.snapshot(&name);
                    if last != Some(snapshot.index) {
                        let index = snapshot.index;
                        return Some((snapshot.instances, (store, rx, name, Some(index))));
                    }
                    rx.changed().await.ok()?;
                }
            },
        ))
    }

    #[cfg(feature = "health-check")]
    fn monitor_for(&self, instance: &ServiceInstance) -> Option<forten_health::HealthMonitor> {
        let health = self.health?;
        let url = instance.health_check_url.as_ref()?;
        let check = forten_health::Check::http("instance:health", url)
            .timeout(health.timeout)
            .failure_threshold(health.failure_threshold);
        match forten_health::HealthMonitor::builder(instance.name.clone(), instance.version.clone())
            .interval(health.interval)
            .check(check)
            .build()
        {
            Ok(monitor) => Some(monitor),
            Err(e) => {
                tracing::warn!(instance = %instance.id, error = %e, "cannot health-check this instance");
                None
            }
        }
    }

    /// One round of health checks: every monitored instance, concurrently.
    #[cfg(feature = "health-check")]
    pub(crate) async fn check_health(&self) {
        use forten_health::{Endpoint, Status};
        let monitors: Vec<(String, String, forten_health::HealthMonitor)> = {
            let state = lock(&self.state);
            state
                .services
                .iter()
                .flat_map(|(name, s)| {
                    s.instances.iter().filter_map(move |(id, e)| {
                        e.monitor.clone().map(|m| (name.clone(), id.clone(), m))
                    })
                })
                .collect()
        };
        futures_util::future::join_all(monitors.iter().map(|(_, _, m)| m.run_checks_once())).await;
        let mut state = lock(&self.state);
        let mut flipped = Vec::new();
        for (name, id, monitor) in &monitors {
            let healthy = monitor.report(Endpoint::Health).status != Status::Fail;
            if let Some(entry) = state
                .services
                .get_mut(name)
                .and_then(|s| s.instances.get_mut(id))
            {
                if entry.healthy != healthy {
                    tracing::info!(service = %name, instance = %id, healthy, "health check changed");
                    entry.healthy = healthy;
                    flipped.push(name.clone());
                }
            }
        }
        for name in flipped {
            self.bump(&mut state, &name);
        }
    }
}

impl Registry for MemoryRegistry {
    fn register(
        &self,
        instance: ServiceInstance,
    ) -> impl Future<Output = Result<Registration, DiscoveryError>> + Send {
        let store = Arc::clone(&self.store);
        async move {
            let instance = store.put(instance)?;
            let weak = Arc::downgrade(&store);
            let every = heartbeat_interval(store.ttl);
            let renewed = instance.clone();
            let heartbeat = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(store) = weak.upgrade() else { break };
                    if store.renew(&renewed.name, &renewed.id).is_err() {
                        tracing::warn!(instance = %renewed.id, "lease was lost: registering again");
                        if let Err(e) = store.put(renewed.clone()) {
                            tracing::warn!(instance = %renewed.id, error = %e, "re-registration failed");
                        }
                    }
                }
            });
            let (name, id) = (instance.name.clone(), instance.id.clone());
            let weak = Arc::downgrade(&store);
            Ok(Registration::new(
                instance,
                store.ttl,
                Some(heartbeat),
                move || async move {
                    if let Some(store) = weak.upgrade() {
                        store.remove(&name, &id);
                    }
                    Ok(())
                },
            ))
        }
    }

    fn deregister(
        &self,
        name: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send {
        self.store.remove(name, id);
        std::future::ready(Ok(()))
    }

    fn discover(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInstance>, DiscoveryError>> + Send {
        std::future::ready(Ok(self.store.snapshot(name).instances))
    }

    fn watch(&self, name: &str) -> InstanceStream {
        self.store.watch(name)
    }
}

//! `DiscoveryClient`: a cached, watched view of services with load-balanced picks.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use futures_util::StreamExt;
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::balance::{BalancerState, Endpoint, LoadBalancer};
use crate::discover::DiscoverChanges;
use crate::error::DiscoveryError;
use crate::instance::ServiceInstance;
use crate::registry::{AnyRegistry, Registry};

/// Finds instances of services through a [`Registry`] and picks one per call.
///
/// The first lookup of a service asks the registry (`discover`), then a background task
/// watches the service and keeps a cached view up to date; later lookups read the cache and
/// never wait on the registry. While the registry is unreachable the last view stays in use.
/// Cheap to clone (an `Arc`); the watch tasks stop when the last clone is dropped.
///
/// ```
/// use forten_discovery::{DiscoveryClient, LoadBalancer, MemoryRegistry, Registry, ServiceInstance};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), forten_discovery::DiscoveryError> {
/// let registry = MemoryRegistry::new();
/// let _a = registry.register(ServiceInstance::builder("events", "127.0.0.1", 3002).build()?).await?;
/// let _b = registry.register(ServiceInstance::builder("events", "127.0.0.1", 3012).build()?).await?;
///
/// let discovery = DiscoveryClient::builder(registry)
///     .load_balancer(LoadBalancer::LeastOutstanding)
///     .build();
/// let url = discovery.get_service_url("events").await?;
/// assert!(url.starts_with("http://127.0.0.1:30"));
///
/// // A pick with feedback: in flight until done, its latency feeds the balancer.
/// let pick = discovery.pick("events").await?;
/// let _base = pick.instance().base_url();
/// pick.done(true);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DiscoveryClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for DiscoveryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryClient")
            .field("load_balancer", &self.inner.balancer)
            .finish_non_exhaustive()
    }
}

struct Inner {
    registry: AnyRegistry,
    balancer: LoadBalancer,
    services: Mutex<HashMap<String, Arc<ServiceView>>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The cached view of one service.
#[derive(Default)]
struct ServiceView {
    loaded: OnceCell<()>,
    /// A background load started by `try_pick` is running (at most one at a time).
    loading: std::sync::atomic::AtomicBool,
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    state: BalancerState,
}

impl ServiceView {
    fn current(&self) -> Arc<Vec<Arc<Endpoint>>> {
        Arc::clone(
            &self
                .endpoints
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Replaces the instance set, keeping the load statistics of unchanged instances.
    fn update(&self, mut instances: Vec<ServiceInstance>) {
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        let old = self.current();
        let next: Vec<Arc<Endpoint>> = instances
            .into_iter()
            .map(|instance| {
                old.iter()
                    .find(|e| e.instance == instance)
                    .map_or_else(|| Arc::new(Endpoint::new(instance)), Arc::clone)
            })
            .collect();
        *self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }
}

/// Configures a [`DiscoveryClient`]; see [`DiscoveryClient::builder`].
#[must_use]
pub struct DiscoveryClientBuilder {
    registry: AnyRegistry,
    balancer: LoadBalancer,
}

impl fmt::Debug for DiscoveryClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryClientBuilder")
            .field("load_balancer", &self.balancer)
            .finish_non_exhaustive()
    }
}

impl DiscoveryClientBuilder {
    /// How one instance is picked (default [`LoadBalancer::RoundRobin`]).
    pub fn load_balancer(mut self, balancer: LoadBalancer) -> Self {
        self.balancer = balancer;
        self
    }

    /// Builds the client (nothing to validate: every combination works).
    pub fn build(self) -> DiscoveryClient {
        DiscoveryClient {
            inner: Arc::new(Inner {
                registry: self.registry,
                balancer: self.balancer,
                services: Mutex::new(HashMap::new()),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl DiscoveryClient {
    /// A client over `registry` with round-robin balancing.
    pub fn new(registry: impl Registry) -> Self {
        Self::builder(registry).build()
    }

    /// Starts configuring a client over `registry`.
    pub fn builder(registry: impl Registry) -> DiscoveryClientBuilder {
        DiscoveryClientBuilder {
            registry: AnyRegistry::new(registry),
            balancer: LoadBalancer::default(),
        }
    }

    /// The registry this client reads.
    pub fn registry(&self) -> &AnyRegistry {
        &self.inner.registry
    }

    /// The balancer in use.
    pub fn load_balancer(&self) -> LoadBalancer {
        self.inner.balancer
    }

    fn view_slot(&self, name: &str) -> Arc<ServiceView> {
        let mut services = self
            .inner
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Looked up first: the name is copied only the first time.
        if let Some(view) = services.get(name) {
            return Arc::clone(view);
        }
        Arc::clone(services.entry(name.to_owned()).or_default())
    }

    /// The loaded view of `name`: asks the registry once, then starts the watch.
    async fn view(&self, name: &str) -> Result<Arc<ServiceView>, DiscoveryError> {
        let view = self.view_slot(name);
        self.load(name, &view).await?;
        Ok(view)
    }

    /// Loads `view` (of `name`) once: asks the registry, then starts the watch.
    async fn load(&self, name: &str, view: &Arc<ServiceView>) -> Result<(), DiscoveryError> {
        view.loaded
            .get_or_try_init(|| async {
                let instances = self.inner.registry.discover(name).await?;
                view.update(instances);
                self.spawn_watch(name, Arc::downgrade(view))?;
                Ok::<_, DiscoveryError>(())
            })
            .await?;
        Ok(())
    }

    /// A handle on service `name`'s view, for a caller that picks from one
    /// service again and again (a client of that service): its picks skip
    /// this client's table of services, which takes a lock shared by every
    /// service and hashes the name on each [`try_pick`](Self::try_pick).
    /// The view is loaded on the handle's first pick, as with
    /// [`pick`](Self::pick); handles and this client share it.
    pub fn service(&self, name: &str) -> ServiceHandle {
        ServiceHandle {
            client: self.clone(),
            name: Arc::from(name),
            view: self.view_slot(name),
        }
    }

    fn spawn_watch(&self, name: &str, view: Weak<ServiceView>) -> Result<(), DiscoveryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
        let mut stream = self.inner.registry.watch(name);
        let service = name.to_owned();
        let task = runtime.spawn(async move {
            while let Some(instances) = stream.next().await {
                let Some(view) = view.upgrade() else { break };
                tracing::debug!(service = %service, instances = instances.len(), "instance set changed");
                view.update(instances);
            }
        });
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
        Ok(())
    }

    /// The healthy instances of `name` from the cached view (loading it on first use).
    pub async fn instances(&self, name: &str) -> Result<Vec<ServiceInstance>, DiscoveryError> {
        let view = self.view(name).await?;
        Ok(view.current().iter().map(|e| e.instance.clone()).collect())
    }

    /// One instance of `name`, chosen by the balancer; `NoInstances` when there is none.
    pub async fn get_service_instance(
        &self,
        name: &str,
    ) -> Result<ServiceInstance, DiscoveryError> {
        let pick = self.pick(name).await?;
        Ok(pick.instance().clone())
    }

    /// The base URL (`http://address:port`) of one instance of `name`.
    pub async fn get_service_url(&self, name: &str) -> Result<String, DiscoveryError> {
        Ok(self.pick(name).await?.instance().base_url())
    }

    /// A load-balanced pick with feedback: the [`Pick`] counts as a request in flight until it
    /// is dropped, and [`Pick::done`] records its latency (for
    /// [`LoadBalancer::LeastOutstanding`] and [`LoadBalancer::PeakEwma`]).
    pub async fn pick(&self, name: &str) -> Result<Pick, DiscoveryError> {
        let view = self.view(name).await?;
        self.pick_from(name, &view)
    }

    /// Like [`pick`](Self::pick) from the cached view only, without awaiting: `None` until the
    /// view of `name` was loaded once (the first call starts loading it in the background).
    pub fn try_pick(&self, name: &str) -> Option<Result<Pick, DiscoveryError>> {
        self.try_pick_from(name, self.view_slot(name))
    }

    /// [`try_pick`](Self::try_pick) from the view of `name` at hand.
    fn try_pick_from(
        &self,
        name: &str,
        view: Arc<ServiceView>,
    ) -> Option<Result<Pick, DiscoveryError>> {
        if view.loaded.initialized() {
            return Some(self.pick_from(name, &view));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return None;
        };
        if view.loading.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return None; // already loading
        }
        let client = self.clone();
        let name = name.to_owned();
        runtime.spawn(async move {
            if let Err(e) = client.load(&name, &view).await {
                tracing::debug!(service = %name, error = %e, "background load failed");
            }
            view.loading
                .store(false, std::sync::atomic::Ordering::Release);
        });
        None
    }

    fn pick_from(&self, name: &str, view: &ServiceView) -> Result<Pick, DiscoveryError> {
        let endpoints = view.current();
        if endpoints.is_empty() {
            return Err(DiscoveryError::NoInstances {
                service: name.to_owned(),
            });
        }
        let balancer = self.inner.balancer;
        let i = view.state.pick(balancer, &endpoints);
        let endpoint = Arc::clone(&endpoints[i]);
        // Only these balancers read the requests in flight and the latency:
        // the others skip the count and the estimate's lock on every pick.
        let tracked = matches!(
            balancer,
            LoadBalancer::LeastOutstanding | LoadBalancer::PeakEwma
        );
        if tracked {
            endpoint.begin();
        }
        Ok(Pick {
            endpoint,
            start: Instant::now(),
            candidates: endpoints.len(),
            tracked,
            finished: false,
        })
    }

    /// A `tower::discover::Discover` of service `name`: `Change::Insert(id, make(instance))`
    /// for each new or changed instance and `Change::Remove(id)` for each one gone, diffed
    /// from the registry's watch. Feed it to `tower::balance::p2c::Balance`.
    pub fn discover_service<S, F>(&self, name: &str, make: F) -> DiscoverChanges<S, F>
    where
        F: FnMut(&ServiceInstance) -> S,
    {
        DiscoverChanges::new(self.inner.registry.watch(name), make)
    }
}

/// One service's view in a [`DiscoveryClient`], from
/// [`DiscoveryClient::service`]: picks without looking the service up.
/// Cheap to clone.
///
/// ```
/// use forten_discovery::{DiscoveryClient, MemoryRegistry, Registry, ServiceInstance};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), forten_discovery::DiscoveryError> {
/// let registry = MemoryRegistry::new();
/// let _a = registry.register(ServiceInstance::builder("events", "127.0.0.1", 3002).build()?).await?;
/// let events = DiscoveryClient::new(registry).service("events");
/// let pick = events.pick().await?;
/// assert_eq!(pick.instance().port, 3002);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ServiceHandle {
    client: DiscoveryClient,
    name: Arc<str>,
    view: Arc<ServiceView>,
}

impl fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServiceHandle {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`DiscoveryClient::instances`] of this service.
    pub async fn instances(&self) -> Result<Vec<ServiceInstance>, DiscoveryError> {
        self.client.load(&self.name, &self.view).await?;
        Ok(self
            .view
            .current()
            .iter()
            .map(|e| e.instance.clone())
            .collect())
    }

    /// [`DiscoveryClient::pick`] of this service.
    pub async fn pick(&self) -> Result<Pick, DiscoveryError> {
        self.client.load(&self.name, &self.view).await?;
        self.client.pick_from(&self.name, &self.view)
    }

    /// [`DiscoveryClient::try_pick`] of this service: `None` until its view
    /// was loaded once (the first call starts loading it in the background).
    pub fn try_pick(&self) -> Option<Result<Pick, DiscoveryError>> {
        self.client
            .try_pick_from(&self.name, Arc::clone(&self.view))
    }
}

/// One picked instance, counted as a request in flight until finished or dropped.
///
/// Call [`done`](Pick::done) when the response came back so its latency feeds the peak-EWMA
/// estimate; dropping the pick without `done` ends it without a measurement. (Only
/// [`LoadBalancer::LeastOutstanding`] and [`LoadBalancer::PeakEwma`] keep these counts; with
/// the others a pick records nothing.)
#[derive(Debug)]
pub struct Pick {
    endpoint: Arc<Endpoint>,
    start: Instant,
    /// How many instances the pick was made among.
    candidates: usize,
    /// Whether the balancer counts this request in flight and learns its latency.
    tracked: bool,
    finished: bool,
}

impl Pick {
    /// The picked instance.
    pub fn instance(&self) -> &ServiceInstance {
        &self.endpoint.instance
    }

    /// The picked instance's base URL.
    pub fn base_url(&self) -> String {
        self.endpoint.instance.base_url()
    }

    /// The picked instance's id, shared: cloning it counts a reference
    /// instead of copying the string.
    pub fn instance_id(&self) -> &Arc<str> {
        &self.endpoint.id
    }

    /// The `host:port` of the [`base_url`](Self::base_url) as a URI
    /// authority, parsed once when the instance was discovered (cloning it
    /// counts a reference); `None` when the instance's address is not a valid
    /// authority.
    pub fn authority(&self) -> Option<&http::uri::Authority> {
        self.endpoint.authority.as_ref()
    }

    /// How many healthy instances the pick was made among (at least 1): with
    /// one, there was no other choice.
    pub fn candidates(&self) -> usize {
        self.candidates
    }

    /// When the pick was made.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Ends the request and records its latency. A failure counts as at least 1 s, so an
    /// instance that fails fast is not mistaken for a fast one (peak EWMA).
    pub fn done(mut self, success: bool) {
        self.finished = true;
        if !self.tracked {
            return;
        }
        let elapsed = self.start.elapsed();
        let latency = if success {
            elapsed
        } else {
            elapsed.max(crate::balance::FAILURE_PENALTY)
        };
        self.endpoint.end(Some(latency));
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        if !self.finished && self.tracked {
            self.endpoint.end(None);
        }
    }
}

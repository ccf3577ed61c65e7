//! The `Registry` trait, the `Registration` handle and a type-erased registry.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use tokio::task::JoinHandle;

use crate::error::DiscoveryError;
use crate::instance::ServiceInstance;

/// A boxed future, for the type-erased registry (registry calls are not on a request's hot path).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The stream [`Registry::watch`] returns: snapshots of a service's healthy instances.
///
/// The first item is the current set; then one item per change. A backend that loses its
/// connection keeps retrying in the stream and never yields an error: consumers keep their
/// last snapshot meanwhile.
pub type InstanceStream = Pin<Box<dyn Stream<Item = Vec<ServiceInstance>> + Send + 'static>>;

/// A service registry: where instances register and callers discover them.
///
/// Backends: [`MemoryRegistry`](crate::MemoryRegistry) (embedded),
/// `HttpRegistry` (a `RegistryServer` over HTTP, feature `http-client`),
/// `EtcdRegistry` (feature `etcd`) and `ConsulRegistry` (feature `consul`). For a trait object
/// use [`AnyRegistry`].
///
/// Implementing a backend: validate the instance ([`ServiceInstance::validate`]), store it with a
/// lease, spawn a task renewing it (re-registering when the backend forgot it) and return
/// [`Registration::new`] with that task and a deregistration closure.
pub trait Registry: Send + Sync + 'static {
    /// Registers `instance` (validated first; a missing id is generated) and keeps its lease
    /// alive in the background until the returned [`Registration`] is deregistered or dropped.
    fn register(
        &self,
        instance: ServiceInstance,
    ) -> impl Future<Output = Result<Registration, DiscoveryError>> + Send;

    /// Removes an instance. Removing an unknown instance is not an error.
    fn deregister(
        &self,
        name: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send;

    /// The healthy instances of service `name`, sorted by id (empty when none).
    fn discover(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInstance>, DiscoveryError>> + Send;

    /// Snapshots of the healthy instances of `name`: the current set first, then each change.
    fn watch(&self, name: &str) -> InstanceStream;
}

/// The object-safe twin of [`Registry`], implemented for every registry.
trait DynRegistry: Send + Sync + 'static {
    fn register_dyn(
        &self,
        instance: ServiceInstance,
    ) -> BoxFuture<'_, Result<Registration, DiscoveryError>>;
    fn deregister_dyn<'a>(
        &'a self,
        name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), DiscoveryError>>;
    fn discover_dyn<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ServiceInstance>, DiscoveryError>>;
    fn watch_dyn(&self, name: &str) -> InstanceStream;
}

impl<R: Registry> DynRegistry for R {
    fn register_dyn(
        &self,
        instance: ServiceInstance,
    ) -> BoxFuture<'_, Result<Registration, DiscoveryError>> {
        Box::pin(self.register(instance))
    }
    fn deregister_dyn<'a>(
        &'a self,
        name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(self.deregister(name, id))
    }
    fn discover_dyn<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ServiceInstance>, DiscoveryError>> {
        Box::pin(self.discover(name))
    }
    fn watch_dyn(&self, name: &str) -> InstanceStream {
        self.watch(name)
    }
}

/// Any [`Registry`] behind an `Arc`: cloneable, type-erased, itself a `Registry`.
///
/// ```
/// use forten_discovery::{AnyRegistry, MemoryRegistry};
/// let registry = AnyRegistry::new(MemoryRegistry::new());
/// let same = registry.clone();
/// # let _ = same;
/// ```
#[derive(Clone)]
pub struct AnyRegistry {
    inner: Arc<dyn DynRegistry>,
}

impl fmt::Debug for AnyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyRegistry").finish_non_exhaustive()
    }
}

impl AnyRegistry {
    /// Erases the type of `registry` (an `AnyRegistry` is not wrapped twice).
    pub fn new(registry: impl Registry) -> Self {
        let mut slot = Some(registry);
        // Avoid double boxing when handed an AnyRegistry.
        if let Some(any) =
            (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<AnyRegistry>>()
        {
            if let Some(any) = any.take() {
                return any;
            }
        }
        match slot {
            Some(registry) => AnyRegistry {
                inner: Arc::new(registry),
            },
            None => unreachable!("the slot is only emptied when it holds an AnyRegistry"),
        }
    }
}

impl Registry for AnyRegistry {
    fn register(
        &self,
        instance: ServiceInstance,
    ) -> impl Future<Output = Result<Registration, DiscoveryError>> + Send {
        self.inner.register_dyn(instance)
    }
    fn deregister(
        &self,
        name: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        let (name, id) = (name.to_owned(), id.to_owned());
        async move { inner.deregister_dyn(&name, &id).await }
    }
    fn discover(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInstance>, DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        async move { inner.discover_dyn(&name).await }
    }
    fn watch(&self, name: &str) -> InstanceStream {
        self.inner.watch_dyn(name)
    }
}

impl<R: Registry> Registry for Arc<R> {
    fn register(
        &self,
        instance: ServiceInstance,
    ) -> impl Future<Output = Result<Registration, DiscoveryError>> + Send {
        (**self).register(instance)
    }
    fn deregister(
        &self,
        name: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send {
        (**self).deregister(name, id)
    }
    fn discover(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInstance>, DiscoveryError>> + Send {
        (**self).discover(name)
    }
    fn watch(&self, name: &str) -> InstanceStream {
        (**self).watch(name)
    }
}

type DeregisterFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), DiscoveryError>> + Send>;

/// A live registration: its lease is renewed by a background task until
/// [`deregister`](Registration::deregister) is called or the handle is dropped.
///
/// Dropping the handle inside a tokio runtime stops the heartbeats and deregisters in a spawned
/// task (best effort); [`abandon`](Registration::abandon) stops the heartbeats and leaves the
/// lease to lapse, as a crashed process would.
pub struct Registration {
    instance: ServiceInstance,
    ttl: Duration,
    heartbeat: Option<JoinHandle<()>>,
    deregister: Option<DeregisterFn>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("instance", &self.instance)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// For backend implementers: a registration of `instance` with lease `ttl`, whose
    /// `heartbeat` task is aborted when the registration ends and whose `deregister`
    /// future runs on [`deregister`](Registration::deregister) or drop.
    pub fn new<F, Fut>(
        instance: ServiceInstance,
        ttl: Duration,
        heartbeat: Option<JoinHandle<()>>,
        deregister: F,
    ) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), DiscoveryError>> + Send + 'static,
    {
        Registration {
            instance,
            ttl,
            heartbeat,
            deregister: Some(Box::new(move || Box::pin(deregister()))),
        }
    }

    /// The registered instance (with its id).
    pub fn instance(&self) -> &ServiceInstance {
        &self.instance
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.instance.id
    }

    /// The lease's time to live; heartbeats renew it at a third of that.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the heartbeat task is still running.
    pub fn is_active(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops the heartbeats and removes the instance from the registry.
    pub async fn deregister(mut self) -> Result<(), DiscoveryError> {
        self.stop_heartbeats();
        match self.deregister.take() {
            Some(deregister) => deregister().await,
            None => Ok(()),
        }
    }

    /// Stops the heartbeats without deregistering: the lease lapses after its TTL
    /// (what a crash looks like to the registry).
    pub fn abandon(mut self) {
        self.stop_heartbeats();
        self.deregister = None;
    }

    fn stop_heartbeats(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop_heartbeats();
        if let Some(deregister) = self.deregister.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let id = self.instance.id.clone();
                runtime.spawn(async move {
                    if let Err(e) = deregister().await {
                        tracing::warn!(instance = %id, error = %e, "deregistration on drop failed");
                    }
                });
            }
        }
    }
}

/// How often a lease of `ttl` is renewed: a third of it, at least 50 ms.
pub(crate) fn heartbeat_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(50))
}

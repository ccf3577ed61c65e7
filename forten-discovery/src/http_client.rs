//! `HttpRegistry`: the client of a `RegistryServer`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use forten_core::backoff::{Backoff, ExponentialBackoff};
use http::{Method, StatusCode};

use crate::error::DiscoveryError;
use crate::instance::{ServiceInstance, validate_service_name};
use crate::registry::{InstanceStream, Registration, Registry, heartbeat_interval};
use crate::transport::{Transport, parse_base, transient, unexpected, with_retries};
use crate::wire::{Lease, ServiceInstances};

const BACKEND: &str = "http";

/// A [`Registry`] on a remote registry HTTP API (a [`RegistryServer`](crate::RegistryServer),
/// e.g. the one the gateway hosts), over hyper-util's client.
///
/// - calls retry transport errors, timeouts and 5xx with jittered exponential backoff
///   (forten-core's [`Backoff`]);
/// - a [`Registration`] heartbeats every TTL/3; when the server answers 404 (it restarted or the
///   lease lapsed) the instance is registered again;
/// - [`watch`](Registry::watch) long-polls `GET /registry/services/{name}?index=N&wait=30s`,
///   backing off while the server is down and starting over when its index goes backwards.
///
/// ```no_run
/// use forten_discovery::{HttpRegistry, Registry, ServiceInstance};
/// # async fn run() -> Result<(), forten_discovery::DiscoveryError> {
/// let registry = HttpRegistry::new("http://127.0.0.1:3000")?; // the API under /registry
/// let registration = registry
///     .register(ServiceInstance::builder("events-service", "127.0.0.1", 3002).build()?)
///     .await?;
/// // ... serve ...
/// registration.deregister().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HttpRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// `http://host:port/registry`, without a trailing slash.
    base: String,
    transport: Transport,
    backoff: Backoff,
    wait: Duration,
}

impl fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRegistry")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// Configures an [`HttpRegistry`]; see [`HttpRegistry::builder`].
#[derive(Debug)]
#[must_use]
pub struct HttpRegistryBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    backoff: Backoff,
    wait: Duration,
    headers: Vec<(String, String)>,
}

impl HttpRegistryBuilder {
    /// A header sent on every call, e.g. the API key a gateway requires
    /// before it lets an instance register (`x-internal-auth`, forten-auth's
    /// `ApiKeyLayer`). Its value is marked sensitive (never logged).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The path the API is mounted under (default `/registry`; `""` for the root).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may take (default 5 s; long polls get their wait on top).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retry schedule of calls (default: 4 retries from 100 ms, capped at 2 s, full jitter).
    pub fn backoff(mut self, backoff: impl Into<Backoff>) -> Self {
        self.backoff = backoff.into();
        self
    }

    /// How long one long poll of a watch waits for a change (default 30 s, at most 60 s).
    pub fn watch_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Validates the configuration (it does not contact the server).
    pub fn build(self) -> Result<HttpRegistry, DiscoveryError> {
        let base = parse_base(BACKEND, &self.url)?;
        let prefix = self.prefix.trim_end_matches('/');
        if !prefix.is_empty() && !prefix.starts_with('/') {
            return Err(DiscoveryError::Config(format!(
                "path prefix {prefix:?} must start with '/'"
            )));
        }
        if self.timeout.is_zero() || self.wait.is_zero() || self.wait > Duration::from_secs(60) {
            return Err(DiscoveryError::Config(
                "the timeout must be above zero and the watch wait 1 ms to 60 s".to_owned(),
            ));
        }
        let mut transport = Transport::new(BACKEND, self.timeout);
        for (name, value) in &self.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                DiscoveryError::Config(format!("{name:?} is not a valid header name"))
            })?;
            let mut value = http::HeaderValue::from_str(value).map_err(|_| {
                DiscoveryError::Config(format!(
                    "the value of header {name} is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            transport.headers.append(name, value);
        }
        Ok(HttpRegistry {
            inner: Arc::new(Inner {
                base: format!("{base}{prefix}"),
                transport,
                backoff: self.backoff,
                wait: self.wait,
            }),
        })
    }
}

fn default_backoff() -> Backoff {
    ExponentialBackoff::builder()
        .base(Duration::from_millis(100))
        .max_delay(Duration::from_secs(2))
        .max_retries(4)
        .build()
        .map_or_else(|_| Backoff::default(), Backoff::from)
}

impl HttpRegistry {
    /// A client of the registry API served at `url` under `/registry`.
    pub fn new(url: impl Into<String>) -> Result<Self, DiscoveryError> {
        Self::builder(url).build()
    }

    /// Starts configuring a client of the registry API at `url`.
    pub fn builder(url: impl Into<String>) -> HttpRegistryBuilder {
        HttpRegistryBuilder {
            url: url.into(),
            prefix: "/registry".to_owned(),
            timeout: Duration::from_secs(5),
            backoff: default_backoff(),
            wait: Duration::from_secs(30),
            headers: Vec::new(),
        }
    }
}

impl Inner {
    fn timeout(&self) -> Duration {
        self.transport.timeout
    }

    /// `POST /services`: the lease granted.
    async fn post(&self, instance: &ServiceInstance) -> Result<Lease, DiscoveryError> {
        let body = serde_json::to_vec(instance)
            .map_err(|e| DiscoveryError::backend(BACKEND, e.to_string()))?;
        let url = format!("{}/services", self.base);
        let (status, answer) = self
            .transport
            .send(Method::POST, &url, Some(body), self.timeout())
            .await?;
        match status {
            s if s.is_success() => serde_json::from_slice(&answer)
                .map_err(|e| DiscoveryError::backend(BACKEND, format!("bad lease: {e}"))),
            StatusCode::BAD_REQUEST => Err(rejected(&answer)),
            s if s.is_server_error() => Err(unexpected(BACKEND, s, &answer)),
            s => Err(permanent(s, &answer)),
        }
    }

    /// `PUT .../heartbeat`: `NotRegistered` on 404.
    async fn heartbeat(&self, instance: &ServiceInstance) -> Result<(), DiscoveryError> {
        let url = format!(
            "{}/services/{}/instances/{}/heartbeat",
            self.base, instance.name, instance.id
        );
        let (status, answer) = self
            .transport
            .send(Method::PUT, &url, None, self.timeout())
            .await?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(DiscoveryError::NotRegistered {
                service: instance.name.clone(),
                id: instance.id.clone(),
            }),
            s if s.is_server_error() => Err(unexpected(BACKEND, s, &answer)),
            s => Err(permanent(s, &answer)),
        }
    }

    async fn delete(&self, name: &str, id: &str) -> Result<(), DiscoveryError> {
        let url = format!("{}/services/{name}/instances/{id}", self.base);
        let (status, answer) = self
            .transport
            .send(Method::DELETE, &url, None, self.timeout())
            .await?;
        match status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s if s.is_server_error() => Err(unexpected(BACKEND, s, &answer)),
            s => Err(permanent(s, &answer)),
        }
    }

    async fn get(&self, name: &str, poll: Option<u64>) -> Result<ServiceInstances, DiscoveryError> {
        let (url, timeout) = match poll {
            Some(index) => (
                format!(
                    "{}/services/{name}?index={index}&wait={}ms",
                    self.base,
                    self.wait.as_millis()
                ),
                self.timeout() + self.wait,
            ),
            None => (format!("{}/services/{name}", self.base), self.timeout()),
        };
        let (status, answer) = self
            .transport
            .send(Method::GET, &url, None, timeout)
            .await?;
        match status {
            s if s.is_success() => serde_json::from_slice(&answer)
                .map_err(|e| DiscoveryError::backend(BACKEND, format!("bad listing: {e}"))),
            s if s.is_server_error() => Err(unexpected(BACKEND, s, &answer)),
            s => Err(permanent(s, &answer)),
        }
    }
}

/// A 4xx other than the expected ones: not worth retrying.
fn permanent(status: StatusCode, body: &[u8]) -> DiscoveryError {
    let detail = forten_core::error::ErrorDocument::from_slice(body)
        .ok()
        .and_then(|d| d.errors.into_iter().next())
        .map_or_else(
            || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            |e| e.detail,
        );
    DiscoveryError::Config(format!(
        "the registry refused the call ({status}): {detail}"
    ))
}

/// A 400 on registration: the server's validation error, with the field when it says.
fn rejected(body: &[u8]) -> DiscoveryError {
    let error = forten_core::error::ErrorDocument::from_slice(body)
        .ok()
        .and_then(|d| d.errors.into_iter().next());
    let field = error
        .as_ref()
        .and_then(|e| e.source.as_ref())
        .map(|s| s.pointer.trim_start_matches('/'))
        .and_then(|f| {
            [
                "id",
                "name",
                "version",
                "address",
                "port",
                "healthCheckUrl",
                "metadata",
                "weight",
            ]
            .into_iter()
            .find(|known| *known == f)
        })
        .unwrap_or("instance");
    DiscoveryError::InvalidInstance {
        field,
        reason: error.map_or_else(|| "was refused by the registry".to_owned(), |e| e.detail),
    }
}

impl Registry for HttpRegistry {
    fn register(
        &self,
        mut instance: ServiceInstance,
    ) -> impl Future<Output = Result<Registration, DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        async move {
            instance.ensure_id();
            instance.validate()?;
            let lease = with_retries(&inner.backoff, || inner.post(&instance)).await?;
            let ttl = Duration::from_secs(lease.ttl_seconds.max(1));
            let heartbeat = tokio::spawn(heartbeat_loop(Arc::clone(&inner), instance.clone(), ttl));
            let (name, id) = (instance.name.clone(), instance.id.clone());
            let deregister_inner = Arc::clone(&inner);
            Ok(Registration::new(
                instance,
                ttl,
                Some(heartbeat),
                move || async move {
                    with_retries(&deregister_inner.backoff, || {
                        deregister_inner.delete(&name, &id)
                    })
                    .await
                },
            ))
        }
    }

    fn deregister(
        &self,
        name: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        let (name, id) = (name.to_owned(), id.to_owned());
        async move { with_retries(&inner.backoff, || inner.delete(&name, &id)).await }
    }

    fn discover(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInstance>, DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        async move {
            validate_service_name(&name)?;
            let listing = with_retries(&inner.backoff, || inner.get(&name, None)).await?;
            Ok(listing.instances)
        }
    }

    fn watch(&self, name: &str) -> InstanceStream {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        let state = WatchState {
            inner,
            name,
            index: None,
            last: None,
            failures: 0,
        };
        Box::pin(futures_util::stream::unfold(
            state,
            |mut state| async move {
                let snapshot = state.next().await;
                Some((snapshot, state))
            },
        ))
    }
}

struct WatchState {
    inner: Arc<Inner>,
    name: String,
    index: Option<u64>,
    last: Option<Vec<ServiceInstance>>,
    failures: u32,
}

impl WatchState {
    /// Long-polls until the set differs from the last one yielded.
    async fn next(&mut self) -> Vec<ServiceInstance> {
        loop {
            match self.inner.get(&self.name, self.index).await {
                Ok(listing) => {
                    self.failures = 0;
                    // An index going backwards means the server restarted: follow it.
                    self.index = Some(listing.index);
                    if self.last.as_ref() != Some(&listing.instances) {
                        self.last = Some(listing.instances.clone());
                        return listing.instances;
                    }
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    // The index may be from a server that restarted since: ask afresh.
                    self.index = None;
                    let delay = retry_delay(self.failures);
                    tracing::warn!(service = %self.name, error = %e, ?delay, "registry watch failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// 100 ms doubling per consecutive failure, capped at 5 s, with full jitter.
fn retry_delay(failures: u32) -> Duration {
    use rand::RngExt;
    let cap = Duration::from_millis(100)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(5));
    let millis = u64::try_from(cap.as_millis()).unwrap_or(5000);
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

async fn heartbeat_loop(inner: Arc<Inner>, instance: ServiceInstance, ttl: Duration) {
    let mut every = heartbeat_interval(ttl);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match inner.heartbeat(&instance).await {
            Ok(()) => {}
            Err(DiscoveryError::NotRegistered { .. }) => {
                tracing::warn!(instance = %instance.id, "the registry forgot this instance: registering again");
                match inner.post(&instance).await {
                    Ok(lease) => {
                        let ttl = Duration::from_secs(lease.ttl_seconds.max(1));
                        if heartbeat_interval(ttl) != every {
                            every = heartbeat_interval(ttl);
                            tick = tokio::time::interval(every);
                            tick.tick().await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(instance = %instance.id, error = %e, "re-registration failed");
                    }
                }
            }
            Err(e) if transient(&e) => {
                tracing::warn!(instance = %instance.id, error = %e, "heartbeat failed; retrying next beat");
            }
            Err(e) => {
                tracing::error!(instance = %instance.id, error = %e, "heartbeat refused");
            }
        }
    }
}

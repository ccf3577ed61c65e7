//! `ConsulRegistry`: Consul's agent HTTP API (TTL checks, blocking health queries).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use forten_core::backoff::{Backoff, ExponentialBackoff};
use http::{HeaderValue, Method};
use serde::Deserialize;
use serde_json::json;

use crate::error::DiscoveryError;
use crate::instance::{ServiceInstance, validate_service_name};
use crate::registry::{InstanceStream, Registration, Registry, heartbeat_interval};
use crate::transport::{Transport, parse_base, transient, unexpected, with_retries};

const BACKEND: &str = "consul";
/// Metadata keys that carry the instance fields Consul has no place for.
const META_VERSION: &str = "forten-version";
const META_HEALTH_URL: &str = "forten-health-check-url";

/// A [`Registry`] on a Consul agent (its HTTP API, default `http://127.0.0.1:8500`).
///
/// - registration is `PUT /v1/agent/service/register` with a TTL check
///   (`service:<id>`, TTL as configured, default 10 s) and `DeregisterCriticalServiceAfter`
///   (default 1 min); the [`Registration`] passes the check every TTL/3
///   (`PUT /v1/agent/check/pass/service:<id>`) and registers again when the agent does not know
///   the check any more (an agent restart);
/// - [`discover`](Registry::discover) reads `GET /v1/health/service/<name>?passing=true`:
///   instances whose check is critical (missed heartbeats) drop out;
/// - [`watch`](Registry::watch) repeats that as a blocking query (`index`, `wait`), starting over
///   when `X-Consul-Index` goes backwards.
///
/// The instance's `version` and `healthCheckUrl` travel in the service's `Meta`
/// (`forten-version`, `forten-health-check-url`), its `weight` as `Weights.Passing`.
/// Tested against wiremock stand-ins for the documented API, not a real Consul.
///
/// ```no_run
/// use forten_discovery::{ConsulRegistry, Registry, ServiceInstance};
/// # async fn run() -> Result<(), forten_discovery::DiscoveryError> {
/// let registry = ConsulRegistry::builder("http://127.0.0.1:8500").token("secret").build()?;
/// let registration = registry
///     .register(ServiceInstance::builder("events-service", "10.0.0.7", 3002).build()?)
///     .await?;
/// # let _ = registration;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ConsulRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    ttl: Duration,
    deregister_after: Duration,
    wait: Duration,
    transport: Transport,
    backoff: Backoff,
}

impl fmt::Debug for ConsulRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulRegistry")
            .field("base", &self.inner.base)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// Configures a [`ConsulRegistry`]; see [`ConsulRegistry::builder`].
#[must_use]
pub struct ConsulRegistryBuilder {
    url: String,
    token: Option<String>,
    ttl: Duration,
    deregister_after: Duration,
    wait: Duration,
    timeout: Duration,
    backoff: Backoff,
}

impl fmt::Debug for ConsulRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulRegistryBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ConsulRegistryBuilder {
    /// The ACL token sent as `X-Consul-Token`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The TTL of the service check (default 10 s, at least 1 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// `DeregisterCriticalServiceAfter`: how long a critical instance stays registered before
    /// the agent removes it (default 1 min, Consul's minimum).
    pub fn deregister_critical_after(mut self, after: Duration) -> Self {
        self.deregister_after = after;
        self
    }

    /// The `wait` of one blocking query of a watch (default 30 s, at most 10 min).
    pub fn watch_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How long one call may take (default 5 s; blocking queries get their wait on top).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retry schedule of calls (default: 4 retries from 100 ms, capped at 2 s).
    pub fn backoff(mut self, backoff: impl Into<Backoff>) -> Self {
        self.backoff = backoff.into();
        self
    }

    /// Validates the configuration (it does not contact Consul).
    pub fn build(self) -> Result<ConsulRegistry, DiscoveryError> {
        let base = parse_base(BACKEND, &self.url)?;
        if self.ttl < Duration::from_secs(1)
            || self.timeout.is_zero()
            || self.wait.is_zero()
            || self.wait > Duration::from_secs(600)
        {
            return Err(DiscoveryError::Config(
                "Consul needs a TTL of at least 1 s, a non-zero timeout and a wait up to 10 min"
                    .to_owned(),
            ));
        }
        let mut transport = Transport::new(BACKEND, self.timeout);
        if let Some(token) = self.token {
            let mut value = HeaderValue::from_str(&token).map_err(|_| {
                DiscoveryError::Config("the Consul token is not a valid header value".to_owned())
            })?;
            value.set_sensitive(true);
            transport.headers.insert("x-consul-token", value);
        }
        Ok(ConsulRegistry {
            inner: Arc::new(Inner {
                base,
                ttl: self.ttl,
                deregister_after: self.deregister_after,
                wait: self.wait,
                transport,
                backoff: self.backoff,
            }),
        })
    }
}

impl ConsulRegistry {
    /// A registry on the Consul agent at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Result<Self, DiscoveryError> {
        Self::builder(url).build()
    }

    /// Starts configuring a registry on the Consul agent at `url`.
    pub fn builder(url: impl Into<String>) -> ConsulRegistryBuilder {
        ConsulRegistryBuilder {
            url: url.into(),
            token: None,
            ttl: Duration::from_secs(10),
            deregister_after: Duration::from_secs(60),
            wait: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            backoff: ExponentialBackoff::builder()
                .base(Duration::from_millis(100))
                .max_delay(Duration::from_secs(2))
                .max_retries(4)
                .build()
                .map_or_else(|_| Backoff::default(), Backoff::from),
        }
    }
}

/// Consul's Go-style duration: whole seconds (`10s`).
fn go_duration(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

fn check_id(id: &str) -> String {
    format!("service:{id}")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    #[serde(default)]
    node: Node,
    service: AgentService,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default)]
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentService {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default)]
    address: String,
    port: u16,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    weights: Option<Weights>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Weights {
    passing: u32,
}

impl HealthEntry {
    fn into_instance(self) -> Option<ServiceInstance> {
        let mut metadata = self.service.meta.unwrap_or_default();
        let version = metadata.remove(META_VERSION).unwrap_or_default();
        let health_check_url = metadata.remove(META_HEALTH_URL);
        let address = if self.service.address.is_empty() {
            self.node.address
        } else {
            self.service.address
        };
        let instance = ServiceInstance {
            id: self.service.id,
            name: self.service.service,
            version,
            address,
            port: self.service.port,
            health_check_url,
            metadata,
            weight: self.service.weights.map_or(1, |w| w.passing),
        };
        match instance.validate() {
            Ok(()) => Some(instance),
            Err(e) => {
                tracing::warn!(instance = %instance.id, error = %e, "ignoring a Consul service that is not a valid instance");
                None
            }
        }
    }
}

impl Inner {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn put(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::StatusCode, DiscoveryError> {
        let (status, answer) = self
            .transport
            .send(Method::PUT, &self.url(path), body, self.transport.timeout)
            .await?;
        if status.is_server_error() {
            return Err(unexpected(BACKEND, status, &answer));
        }
        Ok(status)
    }

    async fn register(&self, instance: &ServiceInstance) -> Result<(), DiscoveryError> {
        let mut meta = instance.metadata.clone();
        if !instance.version.is_empty() {
            meta.insert(META_VERSION.to_owned(), instance.version.clone());
        }
        if let Some(url) = &instance.health_check_url {
            meta.insert(META_HEALTH_URL.to_owned(), url.clone());
        }
        let body = json!({
            "ID": instance.id,
            "Name": instance.name,
            "Address": instance.address,
            "Port": instance.port,
            "Meta": meta,
            "Weights": { "Passing": instance.weight, "Warning": 1 },
            "Check": {
                "CheckID": check_id(&instance.id),
                "Name": format!("forten heartbeat of {}", instance.id),
                "TTL": go_duration(self.ttl),
                "DeregisterCriticalServiceAfter": go_duration(self.deregister_after),
            },
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| DiscoveryError::backend(BACKEND, e.to_string()))?;
        let status = self.put("/v1/agent/service/register", Some(body)).await?;
        if status.is_success() {
            // A fresh TTL check starts critical: pass it at once so the instance is discoverable.
            self.pass(&instance.id).await.map(drop)
        } else {
            Err(DiscoveryError::backend(
                BACKEND,
                format!("service registration answered {status}"),
            ))
        }
    }

    /// Passes the TTL check; `Ok(false)` when the agent does not know it.
    async fn pass(&self, id: &str) -> Result<bool, DiscoveryError> {
        let path = format!("/v1/agent/check/pass/{}", check_id(id));
        match self.put(&path, None).await {
            Ok(status) if status.is_success() => Ok(true),
            Ok(http::StatusCode::NOT_FOUND) => Ok(false),
            Ok(status) => Err(DiscoveryError::backend(
                BACKEND,
                format!("check pass answered {status}"),
            )),
            // Older agents answer an unknown check with 500 "does not have associated TTL".
            Err(DiscoveryError::Backend { detail, .. })
                if detail.contains("TTL") || detail.contains("Unknown check") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn deregister(&self, id: &str) -> Result<(), DiscoveryError> {
        let status = self
            .put(&format!("/v1/agent/service/deregister/{id}"), None)
            .await?;
        if status.is_success() || status == http::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(DiscoveryError::backend(
                BACKEND,
                format!("deregistration answered {status}"),
            ))
        }
    }

    /// Passing instances of `name` and the `X-Consul-Index`, blocking after `index` when given.
    async fn health(
        &self,
        name: &str,
        index: Option<u64>,
    ) -> Result<(Vec<ServiceInstance>, u64), DiscoveryError> {
        let (url, timeout) = match index {
            Some(index) => (
                self.url(&format!(
                    "/v1/health/service/{name}?passing=true&index={index}&wait={}",
                    go_duration(self.wait)
                )),
                // Consul adds up to wait/16 of jitter.
                self.transport.timeout + self.wait + self.wait / 16,
            ),
            None => (
                self.url(&format!("/v1/health/service/{name}?passing=true")),
                self.transport.timeout,
            ),
        };
        let (status, headers, body) = self
            .transport
            .send_full(Method::GET, &url, None, timeout)
            .await?;
        if !status.is_success() {
            return Err(unexpected(BACKEND, status, &body));
        }
        let entries: Vec<HealthEntry> = serde_json::from_slice(&body).map_err(|e| {
            DiscoveryError::backend(BACKEND, format!("unexpected health answer: {e}"))
        })?;
        let index = headers
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let mut instances: Vec<ServiceInstance> = entries
            .into_iter()
            .filter_map(HealthEntry::into_instance)
            .filter(|i| i.name == name)
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((instances, index))
    }
}

async fn heartbeat_loop(inner: Arc<Inner>, instance: ServiceInstance) {
    let mut tick = tokio::time::interval(heartbeat_interval(inner.ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match inner.pass(&instance.id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(instance = %instance.id, "the Consul agent forgot this instance: registering again");
                if let Err(e) = inner.register(&instance).await {
                    tracing::warn!(instance = %instance.id, error = %e, "re-registration failed");
                }
            }
            Err(e) if transient(&e) => {
                tracing::warn!(instance = %instance.id, error = %e, "TTL pass failed; retrying next beat");
            }
            Err(e) => tracing::error!(instance = %instance.id, error = %e, "TTL pass refused"),
        }
    }
}

impl Registry for ConsulRegistry {
    fn register(
        &self,
        mut instance: ServiceInstance,
    ) -> impl Future<Output = Result<Registration, DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        async move {
            instance.ensure_id();
            instance.validate()?;
            with_retries(&inner.backoff, || inner.register(&instance)).await?;
            let heartbeat = tokio::spawn(heartbeat_loop(Arc::clone(&inner), instance.clone()));
            let id = instance.id.clone();
            let ttl = inner.ttl;
            Ok(Registration::new(
                instance,
                ttl,
                Some(heartbeat),
                move || async move { with_retries(&inner.backoff, || inner.deregister(&id)).await },
            ))
        }
    }

    fn deregister(
        &self,
        _name: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        let id = id.to_owned();
        async move { with_retries(&inner.backoff, || inner.deregister(&id)).await }
    }

    fn discover(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInstance>, DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        async move {
            validate_service_name(&name)?;
            let (instances, _) = with_retries(&inner.backoff, || inner.health(&name, None)).await?;
            Ok(instances)
        }
    }

    fn watch(&self, name: &str) -> InstanceStream {
        let state = WatchState {
            inner: Arc::clone(&self.inner),
            name: name.to_owned(),
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
    async fn next(&mut self) -> Vec<ServiceInstance> {
        use rand::RngExt;
        loop {
            match self.inner.health(&self.name, self.index).await {
                Ok((instances, index)) => {
                    self.failures = 0;
                    // Consul's guidance: reset when the index goes backwards, never block on 0.
                    let previous = self.index.unwrap_or(0);
                    self.index = Some(if index < previous { 0 } else { index }.max(1));
                    if self.last.as_ref() != Some(&instances) {
                        self.last = Some(instances.clone());
                        return instances;
                    }
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    self.index = None;
                    let cap = Duration::from_millis(100)
                        .saturating_mul(1 << self.failures.min(6))
                        .min(Duration::from_secs(5));
                    let millis = u64::try_from(cap.as_millis()).unwrap_or(5000);
                    let delay =
                        Duration::from_millis(rand::rng().random_range(millis / 2..=millis));
                    tracing::warn!(service = %self.name, error = %e, ?delay, "Consul watch failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_entries_map_to_instances() {
        let body = br#"[{"Node":{"Node":"n1","Address":"10.0.0.1"},
            "Service":{"ID":"a","Service":"svc","Address":"","Port":3002,
              "Meta":{"forten-version":"1.2","forten-health-check-url":"http://10.0.0.1:3002/health","zone":"a"},
              "Weights":{"Passing":3,"Warning":1}},
            "Checks":[]}]"#;
        let entries: Vec<HealthEntry> = serde_json::from_slice(body).unwrap();
        let instance = entries.into_iter().next().unwrap().into_instance().unwrap();
        assert_eq!(instance.address, "10.0.0.1");
        assert_eq!(instance.version, "1.2");
        assert_eq!(instance.weight, 3);
        assert_eq!(instance.metadata.len(), 1);
        assert_eq!(
            instance.health_check_url.as_deref(),
            Some("http://10.0.0.1:3002/health")
        );
    }

    proptest::proptest! {
        #[test]
        fn health_parser_never_panics(body: Vec<u8>) {
            if let Ok(entries) = serde_json::from_slice::<Vec<HealthEntry>>(&body) {
                for e in entries { let _ = e.into_instance(); }
            }
        }
    }
}

//! `EtcdRegistry`: etcd v3 through its JSON gateway (`/v3/...`), on hyper-util's client.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Buf, BytesMut};
use forten_core::backoff::{Backoff, ExponentialBackoff};
use http::Method;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;

use crate::error::DiscoveryError;
use crate::instance::{ServiceInstance, validate_service_name};
use crate::registry::{InstanceStream, Registration, Registry, heartbeat_interval};
use crate::transport::{Transport, parse_base, transient, unexpected, with_retries};

const BACKEND: &str = "etcd";

/// A [`Registry`] on etcd v3 (3.4 or newer), spoken over etcd's JSON gateway, so no protoc or
/// gRPC stack is needed.
///
/// - each instance is a JSON value under `<prefix>/<name>/<id>` (default prefix
///   `/forten/services`), attached to a lease of the configured TTL (default 10 s);
/// - a [`Registration`] keeps the lease alive every TTL/3 (`/v3/lease/keepalive`); when etcd
///   reports the lease gone (etcd 3.4 answers 200 without a `TTL`), e.g. after etcd lost its
///   data or the process stalled past the TTL, it grants a new lease and puts the key again;
/// - deregistration deletes the key and revokes the lease;
/// - [`watch`](Registry::watch) reads the prefix, then follows `/v3/watch` from the next
///   revision, re-reading on each event; a broken stream is re-opened with backoff.
///
/// ```no_run
/// use forten_discovery::{EtcdRegistry, Registry, ServiceInstance};
/// # async fn run() -> Result<(), forten_discovery::DiscoveryError> {
/// let registry = EtcdRegistry::new("http://127.0.0.1:2379")?;
/// let registration = registry
///     .register(ServiceInstance::builder("events-service", "10.0.0.7", 3002).build()?)
///     .await?;
/// let instances = registry.discover("events-service").await?;
/// # let _ = (registration, instances);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    prefix: String,
    ttl: Duration,
    transport: Transport,
    backoff: Backoff,
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("base", &self.inner.base)
            .field("prefix", &self.inner.prefix)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// Configures an [`EtcdRegistry`]; see [`EtcdRegistry::builder`].
#[derive(Debug)]
#[must_use]
pub struct EtcdRegistryBuilder {
    url: String,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    backoff: Backoff,
}

impl EtcdRegistryBuilder {
    /// The key prefix (default `/forten/services`); instances live at `<prefix>/<name>/<id>`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The lease TTL (default 10 s, whole seconds, at least 2 s: etcd's own minimum).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long one call may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retry schedule of calls (default: 4 retries from 100 ms, capped at 2 s).
    pub fn backoff(mut self, backoff: impl Into<Backoff>) -> Self {
        self.backoff = backoff.into();
        self
    }

    /// Validates the configuration (it does not contact etcd).
    pub fn build(self) -> Result<EtcdRegistry, DiscoveryError> {
        let base = parse_base(BACKEND, &self.url)?;
        let prefix = self.prefix.trim_end_matches('/').to_owned();
        if !prefix.starts_with('/') {
            return Err(DiscoveryError::Config(format!(
                "etcd key prefix {prefix:?} must start with '/'"
            )));
        }
        if self.ttl < Duration::from_secs(2) {
            return Err(DiscoveryError::Config(
                "the etcd lease TTL must be at least 2 s".to_owned(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(DiscoveryError::Config(
                "the timeout must be above zero".to_owned(),
            ));
        }
        Ok(EtcdRegistry {
            inner: Arc::new(Inner {
                base,
                prefix,
                ttl: self.ttl,
                transport: Transport::new(BACKEND, self.timeout),
                backoff: self.backoff,
            }),
        })
    }
}

impl EtcdRegistry {
    /// A registry on the etcd at `url` (e.g. `http://127.0.0.1:2379`) with the defaults.
    pub fn new(url: impl Into<String>) -> Result<Self, DiscoveryError> {
        Self::builder(url).build()
    }

    /// Starts configuring a registry on the etcd at `url`.
    pub fn builder(url: impl Into<String>) -> EtcdRegistryBuilder {
        EtcdRegistryBuilder {
            url: url.into(),
            prefix: "/forten/services".to_owned(),
            ttl: Duration::from_secs(10),
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

/// etcd's int64 fields arrive as JSON strings (grpc-gateway's mapping); accept numbers too.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(i64),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => None,
        Some(Either::N(n)) => Some(n),
        Some(Either::S(s)) => Some(s.parse().map_err(serde::de::Error::custom)?),
    })
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: Option<i64>,
}

#[derive(Deserialize)]
struct Grant {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: Option<i64>,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    ttl: Option<i64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct KeepAlive {
    result: Option<Grant>,
}

#[derive(Deserialize)]
struct Kv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct Range {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<Kv>,
}

#[derive(Deserialize)]
struct WatchLine {
    result: Option<WatchResult>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    compact_revision: Option<i64>,
    #[serde(default)]
    events: Vec<serde_json::Value>,
}

/// The first key after every key starting with `prefix` (its last byte incremented).
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Inner {
    fn key(&self, name: &str, id: &str) -> String {
        format!("{}/{name}/{id}", self.prefix)
    }

    fn service_prefix(&self, name: &str) -> String {
        format!("{}/{name}/", self.prefix)
    }

    async fn call(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<bytes::Bytes, DiscoveryError> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body)
            .map_err(|e| DiscoveryError::backend(BACKEND, e.to_string()))?;
        let (status, answer) = self
            .transport
            .send(Method::POST, &url, Some(body), self.transport.timeout)
            .await?;
        if status.is_success() {
            Ok(answer)
        } else {
            Err(unexpected(BACKEND, status, &answer))
        }
    }

    async fn grant(&self) -> Result<i64, DiscoveryError> {
        let answer = self
            .call("/v3/lease/grant", &json!({ "TTL": self.ttl.as_secs() }))
            .await?;
        let grant: Grant = parse(&answer)?;
        match (grant.id, grant.error) {
            (Some(id), None) => Ok(id),
            (_, error) => Err(DiscoveryError::backend(
                BACKEND,
                format!("lease grant failed: {}", error.unwrap_or_default()),
            )),
        }
    }

    async fn put(&self, instance: &ServiceInstance, lease: i64) -> Result<(), DiscoveryError> {
        let value = serde_json::to_vec(instance)
            .map_err(|e| DiscoveryError::backend(BACKEND, e.to_string()))?;
        self.call(
            "/v3/kv/put",
            &json!({
                "key": B64.encode(self.key(&instance.name, &instance.id)),
                "value": B64.encode(value),
                "lease": lease.to_string(),
            }),
        )
        .await
        .map(drop)
    }

    /// Grants a lease and puts the instance under it.
    async fn register_once(&self, instance: &ServiceInstance) -> Result<i64, DiscoveryError> {
        let lease = self.grant().await?;
        self.put(instance, lease).await?;
        Ok(lease)
    }

    /// `Ok(true)` while the lease lives; `Ok(false)` when etcd says it is gone.
    async fn keepalive(&self, lease: i64) -> Result<bool, DiscoveryError> {
        let answer = self
            .call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        // The gateway streams: take the first line.
        let first = answer.split(|b| *b == b'\n').next().unwrap_or_default();
        let keepalive: KeepAlive = parse(first)?;
        Ok(keepalive
            .result
            .is_some_and(|r| r.ttl.is_some_and(|ttl| ttl > 0)))
    }

    async fn delete(&self, name: &str, id: &str) -> Result<(), DiscoveryError> {
        self.call(
            "/v3/kv/deleterange",
            &json!({ "key": B64.encode(self.key(name, id)) }),
        )
        .await
        .map(drop)
    }

    async fn revoke(&self, lease: i64) {
        // An unknown lease answers an error: nothing left to revoke.
        if let Err(e) = self
            .call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
        {
            tracing::debug!(lease, error = %e, "lease revoke failed");
        }
    }

    /// The instances under the service's prefix and the store revision read at.
    async fn range(&self, name: &str) -> Result<(Vec<ServiceInstance>, i64), DiscoveryError> {
        let prefix = self.service_prefix(name);
        let answer = self
            .call(
                "/v3/kv/range",
                &json!({
                    "key": B64.encode(&prefix),
                    "range_end": B64.encode(range_end(prefix.as_bytes())),
                }),
            )
            .await?;
        let range: Range = parse(&answer)?;
        let mut instances: Vec<ServiceInstance> = range
            .kvs
            .iter()
            .filter_map(|kv| {
                let value = B64.decode(&kv.value).ok()?;
                match serde_json::from_slice::<ServiceInstance>(&value) {
                    Ok(i) if i.validate().is_ok() && i.name == name => Some(i),
                    _ => {
                        tracing::warn!(key = %kv.key, "ignoring a value that is not a valid instance");
                        None
                    }
                }
            })
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((instances, range.header.revision.unwrap_or(0)))
    }

    /// Follows `/v3/watch` on the service prefix from `revision + 1` until the first event
    /// (`Ok(true)`) or the end of the stream (`Ok(false)`, e.g. a compaction cancel).
    async fn wait_for_event(&self, name: &str, revision: i64) -> Result<bool, DiscoveryError> {
        let prefix = self.service_prefix(name);
        let body = json!({
            "create_request": {
                "key": B64.encode(&prefix),
                "range_end": B64.encode(range_end(prefix.as_bytes())),
                "start_revision": (revision + 1).to_string(),
            }
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| DiscoveryError::backend(BACKEND, e.to_string()))?;
        let response = self
            .transport
            .open(Method::POST, &format!("{}/v3/watch", self.base), Some(body))
            .await?;
        if !response.status().is_success() {
            return Err(DiscoveryError::backend(
                BACKEND,
                format!("watch answered {}", response.status()),
            ));
        }
        let mut body = response.into_body();
        let mut buffer = BytesMut::new();
        loop {
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line = buffer.split_to(end + 1);
                let line: WatchLine = parse(&line[..end])?;
                if let Some(error) = line.error {
                    return Err(DiscoveryError::backend(
                        BACKEND,
                        format!("watch error: {error}"),
                    ));
                }
                let Some(result) = line.result else { continue };
                if result.canceled || result.compact_revision.is_some_and(|r| r > 0) {
                    return Ok(false);
                }
                if !result.events.is_empty() {
                    return Ok(true);
                }
                let _ = result.created;
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        let chunk = data.copy_to_bytes(data.remaining());
                        buffer.extend_from_slice(&chunk);
                        if buffer.len() > 16 * 1024 * 1024 {
                            return Err(DiscoveryError::backend(BACKEND, "watch line too long"));
                        }
                    }
                }
                Some(Err(e)) => {
                    return Err(DiscoveryError::backend(
                        BACKEND,
                        format!("watch stream broke: {e}"),
                    ));
                }
                None => return Ok(false),
            }
        }
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DiscoveryError> {
    serde_json::from_slice(body).map_err(|e| {
        DiscoveryError::backend(
            BACKEND,
            format!(
                "unexpected answer ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ),
        )
    })
}

async fn keepalive_loop(
    inner: Arc<Inner>,
    instance: ServiceInstance,
    lease: Arc<std::sync::atomic::AtomicI64>,
) {
    use std::sync::atomic::Ordering;
    let mut tick = tokio::time::interval(heartbeat_interval(inner.ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let current = lease.load(Ordering::Acquire);
        match inner.keepalive(current).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(instance = %instance.id, lease = current, "etcd lost the lease: granting a new one");
                match inner.register_once(&instance).await {
                    Ok(new) => lease.store(new, Ordering::Release),
                    Err(e) => {
                        tracing::warn!(instance = %instance.id, error = %e, "re-registration failed");
                    }
                }
            }
            Err(e) if transient(&e) => {
                tracing::warn!(instance = %instance.id, error = %e, "keepalive failed; retrying next beat");
            }
            Err(e) => tracing::error!(instance = %instance.id, error = %e, "keepalive refused"),
        }
    }
}

impl Registry for EtcdRegistry {
    fn register(
        &self,
        mut instance: ServiceInstance,
    ) -> impl Future<Output = Result<Registration, DiscoveryError>> + Send {
        let inner = Arc::clone(&self.inner);
        async move {
            instance.ensure_id();
            instance.validate()?;
            let lease = with_retries(&inner.backoff, || inner.register_once(&instance)).await?;
            let lease = Arc::new(std::sync::atomic::AtomicI64::new(lease));
            let heartbeat = tokio::spawn(keepalive_loop(
                Arc::clone(&inner),
                instance.clone(),
                Arc::clone(&lease),
            ));
            let (name, id) = (instance.name.clone(), instance.id.clone());
            let ttl = inner.ttl;
            let owner = Arc::clone(&inner);
            Ok(Registration::new(
                instance,
                ttl,
                Some(heartbeat),
                move || async move {
                    with_retries(&owner.backoff, || owner.delete(&name, &id)).await?;
                    owner
                        .revoke(lease.load(std::sync::atomic::Ordering::Acquire))
                        .await;
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
            let (instances, _) = with_retries(&inner.backoff, || inner.range(&name)).await?;
            Ok(instances)
        }
    }

    fn watch(&self, name: &str) -> InstanceStream {
        let state = WatchState {
            inner: Arc::clone(&self.inner),
            name: name.to_owned(),
            revision: None,
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
    /// The revision of the last read; `None` to read afresh.
    revision: Option<i64>,
    last: Option<Vec<ServiceInstance>>,
    failures: u32,
}

impl WatchState {
    async fn next(&mut self) -> Vec<ServiceInstance> {
        loop {
            if let Some(revision) = self.revision {
                match self.inner.wait_for_event(&self.name, revision).await {
                    Ok(_) => {}
                    Err(e) => self.failed(&e).await,
                }
                self.revision = None;
            }
            match self.inner.range(&self.name).await {
                Ok((instances, revision)) => {
                    self.failures = 0;
                    self.revision = Some(revision);
                    if self.last.as_ref() != Some(&instances) {
                        self.last = Some(instances.clone());
                        return instances;
                    }
                }
                Err(e) => self.failed(&e).await,
            }
        }
    }

    async fn failed(&mut self, e: &DiscoveryError) {
        use rand::RngExt;
        self.failures = self.failures.saturating_add(1);
        let cap = Duration::from_millis(100)
            .saturating_mul(1 << self.failures.min(6))
            .min(Duration::from_secs(5));
        let millis = u64::try_from(cap.as_millis()).unwrap_or(5000);
        let delay = Duration::from_millis(rand::rng().random_range(millis / 2..=millis));
        tracing::warn!(service = %self.name, error = %e, ?delay, "etcd watch failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end() {
        assert_eq!(range_end(b"/a/"), b"/a0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff"), b"\0");
    }

    #[test]
    fn etcd_answers_parse() {
        let grant: Grant =
            parse(br#"{"header":{"revision":"1"},"ID":"4111120160403493381","TTL":"5"}"#).unwrap();
        assert_eq!(
            (grant.id, grant.ttl),
            (Some(4_111_120_160_403_493_381), Some(5))
        );
        let lost: KeepAlive =
            parse(br#"{"result":{"header":{"revision":"1"},"ID":"123"}}"#).unwrap();
        assert!(lost.result.unwrap().ttl.is_none());
        let line: WatchLine = parse(
            br#"{"result":{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"L2E=","mod_revision":"3"}}]}}"#,
        )
        .unwrap();
        assert_eq!(line.result.unwrap().events.len(), 1);
        let empty: Range = parse(br#"{"header":{"revision":"2"}}"#).unwrap();
        assert!(empty.kvs.is_empty());
        assert_eq!(empty.header.revision, Some(2));
    }

    proptest::proptest! {
        #[test]
        fn etcd_parsers_never_panic(body: Vec<u8>) {
            let _ = parse::<Range>(&body);
            let _ = parse::<WatchLine>(&body);
            let _ = parse::<KeepAlive>(&body);
        }
    }
}

//! `RegistryServer`: the registry HTTP API of DESIGN 4.9 as a tower `Service`.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};

use crate::error::DiscoveryError;
use crate::instance::ServiceInstance;
use crate::memory::MemoryRegistry;
use crate::registry::BoxFuture;
use crate::wire::{INDEX_HEADER, Lease, ServiceDirectory, ServiceInstances};

/// The default request body limit.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The longest long poll a client may ask for (`wait`), and the default when it gives an
/// `index` without a `wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The default `wait` of a long poll.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The registry HTTP API (DESIGN 4.9) over a [`MemoryRegistry`], as a tower `Service`:
///
/// | call | answer |
/// |---|---|
/// | `POST /registry/services` (an instance) | 201 `{instanceId, ttlSeconds}` |
/// | `PUT /registry/services/{name}/instances/{id}/heartbeat` | 200 `{instanceId, ttlSeconds}`, 404 when the lease is gone |
/// | `DELETE /registry/services/{name}/instances/{id}` | 204 |
/// | `GET /registry/services/{name}[?index=N&wait=30s]` | 200 `{name, index, instances}`, header `x-registry-index` |
/// | `GET /registry/services` | 200 `{index, services: {name: [instances]}}` |
///
/// Errors are JSON:API documents (forten-core's [`Error`](forten_core::Error)): an invalid
/// instance is 400 `VALIDATION_ERROR` with `source.pointer` at the field, a body over the limit
/// 413. With `?index=N` a `GET` of one service blocks until its index passes `N` (or `wait`
/// ends, at most 60 s); an `index` ahead of the registry (it restarted) answers at once.
///
/// The paths work with and without the `/registry` prefix, so the server mounts in axum either
/// way: `Router::new().nest_service("/registry", server)` (axum strips the prefix) or
/// `.fallback_service(server)` / `.route_service("/registry/{*rest}", server)`. The error type is
/// `Infallible`, as axum wants. The same [`MemoryRegistry`] can back the gateway's own
/// [`DiscoveryClient`](crate::DiscoveryClient), so it discovers in process what services
/// register over HTTP.
///
/// ```
/// use forten_discovery::{MemoryRegistry, RegistryServer};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = MemoryRegistry::new();
/// let server = RegistryServer::new(registry.clone());
/// // In axum: `Router::new().nest_service("/registry", server.clone())`.
///
/// let body = r#"{"name":"events-service","address":"127.0.0.1","port":3002}"#;
/// let response = server
///     .clone()
///     .oneshot(http::Request::post("/registry/services").body(body.to_owned())?)
///     .await?;
/// assert_eq!(response.status(), 201);
/// assert_eq!(registry.services()["events-service"].len(), 1);
///
/// let bad = r#"{"name":"events-service","address":"127.0.0.1","port":0}"#;
/// let response = server.oneshot(http::Request::post("/registry/services").body(bad.to_owned())?).await?;
/// assert_eq!(response.status(), 400);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RegistryServer {
    registry: MemoryRegistry,
    config: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    body_limit: usize,
    max_wait: Duration,
}

impl fmt::Debug for RegistryServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryServer")
            .field("registry", &self.registry)
            .field("body_limit", &self.config.body_limit)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RegistryServer`]; see [`RegistryServer::builder`].
#[derive(Debug)]
#[must_use]
pub struct RegistryServerBuilder {
    registry: MemoryRegistry,
    body_limit: usize,
    max_wait: Duration,
}

impl RegistryServerBuilder {
    /// The largest request body accepted (default 64 KiB); larger ones get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The longest long poll (default and upper bound 60 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<RegistryServer, DiscoveryError> {
        if self.body_limit < 256 {
            return Err(DiscoveryError::Config(
                "the body limit must be at least 256 bytes".to_owned(),
            ));
        }
        if self.max_wait.is_zero() || self.max_wait > MAX_WAIT {
            return Err(DiscoveryError::Config(
                "the longest wait must be above zero and at most 60 s".to_owned(),
            ));
        }
        Ok(RegistryServer {
            registry: self.registry,
            config: Arc::new(Config {
                body_limit: self.body_limit,
                max_wait: self.max_wait,
            }),
        })
    }
}

impl RegistryServer {
    /// Serves `registry` with the defaults (64 KiB bodies, 60 s longest wait).
    pub fn new(registry: MemoryRegistry) -> Self {
        RegistryServer {
            registry,
            config: Arc::new(Config {
                body_limit: DEFAULT_BODY_LIMIT,
                max_wait: MAX_WAIT,
            }),
        }
    }

    /// Starts configuring a server of `registry`.
    pub fn builder(registry: MemoryRegistry) -> RegistryServerBuilder {
        RegistryServerBuilder {
            registry,
            body_limit: DEFAULT_BODY_LIMIT,
            max_wait: MAX_WAIT,
        }
    }

    /// The registry served.
    pub fn registry(&self) -> &MemoryRegistry {
        &self.registry
    }
}

type Reply = Response<Full<Bytes>>;

impl<B> tower_service::Service<Request<B>> for RegistryServer
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Reply, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let request_id = request
                .headers()
                .get(forten_core::headers::X_CORRELATION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok(match this.handle(request).await {
                Ok(reply) => reply,
                Err(e) => e.to_response(request_id.as_deref()),
            })
        })
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_found(detail: impl Into<String>) -> forten_core::Error {
    forten_core::Error::NotFound {
        detail: detail.into(),
    }
}

/// Parses `wait`: `30s`, `500ms`, `1m`, or bare seconds.
pub(crate) fn parse_wait(value: &str) -> Option<Duration> {
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let n: u64 = number.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

impl RegistryServer {
    async fn handle<B>(&self, request: Request<B>) -> Result<Reply, forten_core::Error>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path();
        let path = path.strip_prefix("/registry").unwrap_or(path);
        let segments: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let method = request.method().clone();
        match (method, segments.as_slice()) {
            (Method::POST, ["services"]) => {
                let instance = self.read_instance(request).await?;
                let stored = self
                    .registry
                    .put(instance)
                    .map_err(forten_core::Error::from)?;
                Ok(json(StatusCode::CREATED, &self.lease(stored.id)))
            }
            (Method::PUT, ["services", name, "instances", id, "heartbeat"]) => {
                self.registry
                    .renew(name, id)
                    .map_err(forten_core::Error::from)?;
                Ok(json(StatusCode::OK, &self.lease((*id).to_owned())))
            }
            (Method::DELETE, ["services", name, "instances", id]) => {
                self.registry.remove(name, id);
                let mut reply = Response::new(Full::new(Bytes::new()));
                *reply.status_mut() = StatusCode::NO_CONTENT;
                Ok(reply)
            }
            (Method::GET, ["services", name]) => {
                let (index, wait) = self.long_poll(request.uri().query())?;
                let store = self.registry.store();
                let snapshot = match index {
                    Some(index) => store.wait(name, index, wait).await,
                    None => store.snapshot(name),
                };
                let mut reply = json(
                    StatusCode::OK,
                    &ServiceInstances {
                        name: (*name).to_owned(),
                        index: snapshot.index,
                        instances: snapshot.instances,
                    },
                );
                reply
                    .headers_mut()
                    .insert(INDEX_HEADER, HeaderValue::from(snapshot.index));
                Ok(reply)
            }
            (Method::GET, ["services"]) => {
                let (index, services) = self.registry.store().all();
                Ok(json(StatusCode::OK, &ServiceDirectory { index, services }))
            }
            (method, ["services", ..]) => Err(not_found(format!(
                "{method} {} is not a registry call; see DESIGN 4.9 for the API",
                request.uri().path()
            ))),
            _ => Err(not_found(format!(
                "{} is not a registry path; the API lives under /registry/services",
                request.uri().path()
            ))),
        }
    }

    fn lease(&self, instance_id: String) -> Lease {
        Lease {
            instance_id,
            ttl_seconds: self.registry.ttl().as_secs().max(1),
        }
    }

    fn long_poll(
        &self,
        query: Option<&str>,
    ) -> Result<(Option<u64>, Duration), forten_core::Error> {
        let bad = |detail: String, field: &str| forten_core::Error::BadRequest {
            detail,
            pointer: Some(format!("/{field}")),
        };
        let mut index = None;
        let mut wait = None;
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "index" => {
                    index = Some(value.parse::<u64>().map_err(|_| {
                        bad(
                            format!("index {value:?} is not a non-negative integer"),
                            "index",
                        )
                    })?);
                }
                "wait" => {
                    wait = Some(parse_wait(value).ok_or_else(|| {
                        bad(
                            format!("wait {value:?} is not a duration like 30s or 500ms"),
                            "wait",
                        )
                    })?);
                }
                _ => {}
            }
        }
        let wait = wait.unwrap_or(DEFAULT_WAIT).min(self.config.max_wait);
        Ok((index, wait))
    }

    async fn read_instance<B>(
        &self,
        request: Request<B>,
    ) -> Result<ServiceInstance, forten_core::Error>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.config.body_limit;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(forten_core::Error::PayloadTooLarge { limit });
        }
        let body = Limited::new(request.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    forten_core::Error::PayloadTooLarge { limit }
                } else {
                    forten_core::Error::BadRequest {
                        detail: format!("reading the body failed: {e}"),
                        pointer: None,
                    }
                }
            })?
            .to_bytes();
        serde_json::from_slice::<ServiceInstance>(&body).map_err(|e| {
            forten_core::Error::BadRequest {
                detail: format!("the body is not a service instance: {e}"),
                pointer: missing_field(&e.to_string()).map(|f| format!("/{f}")),
            }
        })
    }
}

/// serde_json's "missing field `port`" (or "invalid type ... for field") names the field.
fn missing_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    let field = &message[start..start + len];
    field
        .chars()
        .all(|c| c.is_ascii_alphanumeric())
        .then(|| field.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_wait("s"), None);
        assert_eq!(parse_wait("1h"), None);
        assert_eq!(parse_wait("-1s"), None);
    }

    proptest::proptest! {
        #[test]
        fn wait_parser_never_panics(s in ".{0,30}") {
            let _ = parse_wait(&s);
            let _ = missing_field(&s);
        }
    }
}

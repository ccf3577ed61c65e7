//! [`ServiceClientBuilder`]: one builder, sensible defaults, validated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use forten_auth::{ServiceAuth, ServiceTokenLayer};
use forten_core::circuit::{
    CircuitBreaker, CircuitBreakerConfig, KeyedCircuitBreakerLayer, KeyedCircuitBreakers,
};
use forten_core::correlation::PropagateCorrelationLayer;
use forten_core::deadline::TimeoutLayer;
use forten_core::idempotency::IdempotencyKeyLayer;
use forten_core::ratelimit::{GovernorBackend, RateLimitPolicy};
use forten_core::retry::{RetryConfig, RetryLayer};
use forten_discovery::DiscoveryClient;
use http::{HeaderMap, HeaderName, HeaderValue};
use tower::util::{Either, MapErr};
use tower_layer::Layer;

use crate::client::{
    Attempt, ClientShared, ReqBody, ServiceClient, Stack, Wire, map_transport_error,
};
use crate::error::ClientBuildError;
use crate::fallback::Fallback;
use crate::select::{Instance, KeyFn, Select, SelectShared, Upstream, instance_key};
use crate::total::TotalDeadline;
use crate::transport::{Transport, TransportConfig};

/// The per-attempt timeout unless [`timeout`](ServiceClientBuilder::timeout) says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The total timeout unless [`total_timeout`](ServiceClientBuilder::total_timeout) says otherwise.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The request and response body limit unless set otherwise (4 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Builds a [`ServiceClient`]; start with [`ServiceClient::builder`].
///
/// Defaults: 10 s per attempt, 30 s in total, forten-core's default retry
/// (exponential backoff from 50 ms, full jitter, 3 retries, a budget of 20 % +
/// 10/s), one default circuit breaker per instance (100-call window, opening
/// at 50 % failures after 20 calls, 30 s open), no service auth, no rate limit,
/// no fallback, HTTP/1.1 with keep-alive (90 s idle, 32 idle connections per
/// instance), 4 MiB body limits each way.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServiceClientBuilder {
    service: String,
    base_urls: Vec<String>,
    discovery: Option<DiscoveryClient>,
    timeout: Duration,
    total_timeout: Option<Duration>,
    retry: RetryConfig,
    breaker: Option<CircuitBreakerConfig>,
    service_auth: Option<ServiceAuth>,
    rate_limit: Option<RateLimitPolicy>,
    fallback: Option<Fallback>,
    transport: TransportConfig,
    max_in_flight: Option<usize>,
    max_request_body: usize,
    headers: Vec<(String, String)>,
    idempotency_keys: bool,
}

impl ServiceClientBuilder {
    pub(crate) fn new(service: impl Into<String>) -> Self {
        ServiceClientBuilder {
            service: service.into(),
            base_urls: Vec::new(),
            discovery: None,
            timeout: DEFAULT_TIMEOUT,
            total_timeout: Some(DEFAULT_TOTAL_TIMEOUT),
            retry: RetryConfig::default(),
            breaker: None,
            service_auth: None,
            rate_limit: None,
            fallback: None,
            transport: TransportConfig {
                http2_only: false,
                pool_idle_timeout: Duration::from_secs(90),
                pool_max_idle_per_host: 32,
                connect_timeout: Some(Duration::from_secs(5)),
                max_response_body: DEFAULT_BODY_LIMIT,
            },
            max_in_flight: None,
            max_request_body: DEFAULT_BODY_LIMIT,
            headers: Vec::new(),
            idempotency_keys: true,
        }
    }

    /// Calls the service at this base URL (`http://host:port`, optionally with
    /// a path prefix): one instance, one breaker, whose id is the URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_urls = vec![url.into()];
        self
    }

    /// Calls the service at several fixed base URLs, round robin, each with
    /// its own breaker (an instance whose breaker is open is skipped).
    pub fn base_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.base_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Finds the service's instances through forten-discovery: each attempt
    /// takes the discovery client's load-balanced [`pick`](DiscoveryClient::try_pick)
    /// (its latency fed back to the balancer), skipping instances whose
    /// breaker is open. Instance ids are the registered ids. The first call
    /// loads the service's view; later ones read the cache without waiting.
    pub fn discovery(mut self, client: DiscoveryClient) -> Self {
        self.discovery = Some(client);
        self
    }

    /// The timeout of each attempt (default 10 s). The upstream is told
    /// min(this, what is left of the total deadline) in `x-request-timeout-ms`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The deadline of the whole call, every attempt and backoff included
    /// (default 30 s). A deadline of the calling task (a server handler's) is
    /// honoured too: the earlier one wins.
    pub fn total_timeout(mut self, total: Duration) -> Self {
        self.total_timeout = Some(total);
        self
    }

    /// No total timeout of the client's own: only the per-attempt timeout,
    /// the retry bound and the calling task's deadline apply.
    pub fn no_total_timeout(mut self) -> Self {
        self.total_timeout = None;
        self
    }

    /// How to retry ([`forten_core::retry::RetryConfig`]): backoff, attempt
    /// bound, budget. A backoff with `max_retries` 0 turns retries off.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = config;
        self
    }

    /// The configuration of every instance's breaker (each named
    /// `<config name>/<instance id>`).
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// Sends this service's token for the target service on every attempt
    /// (`Authorization: Bearer`, audience = the service name given to
    /// [`ServiceClient::builder`]). It replaces an `authorization` header set
    /// on the request.
    pub fn service_auth(mut self, auth: ServiceAuth) -> Self {
        self.service_auth = Some(auth);
        self
    }

    /// Limits the calls this client makes (GCRA, in process); a call over the
    /// limit fails at once with [`Error::RateLimited`](forten_core::Error::RateLimited)
    /// without being sent. Retries are bounded by the retry budget instead.
    pub fn rate_limit(mut self, policy: RateLimitPolicy) -> Self {
        self.rate_limit = Some(policy);
        self
    }

    /// Whether POST and PATCH requests without an `Idempotency-Key` get a
    /// fresh one (default `true`). The key is what lets the retry layer retry
    /// them; turn it off for an upstream that does not deduplicate by key,
    /// and such requests are then sent once (unless you set a key yourself).
    pub fn idempotency_keys(mut self, enabled: bool) -> Self {
        self.idempotency_keys = enabled;
        self
    }

    /// What to answer when the upstream fails (off by default).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Speaks HTTP/2 over cleartext with prior knowledge (h2c) instead of
    /// HTTP/1.1: one multiplexed connection per instance.
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.transport.http2_only = true;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.transport.pool_idle_timeout = idle;
        self
    }

    /// Most idle connections kept per instance (default 32).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.transport.pool_max_idle_per_host = max;
        self
    }

    /// The TCP connect timeout (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.transport.connect_timeout = Some(timeout);
        self
    }

    /// At most `max` requests of this client on the wire at once (over
    /// HTTP/1.1, at most `max` connections busy); further attempts wait for a
    /// slot within their own timeout (default: unlimited).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = Some(max);
        self
    }

    /// The largest request body accepted (default 4 MiB).
    pub fn max_request_body(mut self, limit: usize) -> Self {
        self.max_request_body = limit;
        self
    }

    /// The largest response body read (default 4 MiB); a larger one fails the
    /// attempt with [`ClientError::ResponseTooLarge`](crate::ClientError::ResponseTooLarge).
    pub fn max_response_body(mut self, limit: usize) -> Self {
        self.transport.max_response_body = limit;
        self
    }

    /// A header sent on every request that does not set it itself.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Validates the settings and builds the client. Needs a tokio runtime
    /// only when the first request is sent.
    pub fn build(self) -> Result<ServiceClient, ClientBuildError> {
        if self.service.trim().is_empty() {
            return Err(ClientBuildError::EmptyServiceName);
        }
        let upstream = match (self.base_urls.is_empty(), self.discovery) {
            (true, None) => return Err(ClientBuildError::NoUpstream(self.service)),
            (false, Some(_)) => return Err(ClientBuildError::BothUpstreams(self.service)),
            (true, Some(client)) => Upstream::Discovery {
                service: client.service(&self.service),
                loaded: AtomicBool::new(false),
            },
            (false, None) => Upstream::Static {
                instances: self
                    .base_urls
                    .iter()
                    .map(|url| Instance::from_base_url(url))
                    .collect::<Result<Box<[_]>, _>>()?,
                next: AtomicUsize::new(0),
            },
        };
        if self.timeout.is_zero() {
            return Err(ClientBuildError::ZeroTimeout("the per-attempt timeout"));
        }
        if let Some(total) = self.total_timeout {
            if total.is_zero() {
                return Err(ClientBuildError::ZeroTimeout("the total timeout"));
            }
            if self.timeout > total {
                return Err(ClientBuildError::AttemptLongerThanTotal {
                    attempt: self.timeout,
                    total,
                });
            }
        }
        if self.max_request_body == 0 {
            return Err(ClientBuildError::ZeroLimit("max_request_body"));
        }
        if self.transport.max_response_body == 0 {
            return Err(ClientBuildError::ZeroLimit("max_response_body"));
        }
        if self.max_in_flight == Some(0) {
            return Err(ClientBuildError::ZeroLimit("max_in_flight"));
        }
        if self.fallback.as_ref().is_some_and(|f| !f.is_valid()) {
            return Err(ClientBuildError::InvalidFallback);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| ClientBuildError::InvalidHeader(format!("{name:?}: {e}")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| ClientBuildError::InvalidHeader(format!("{name}: {e}")))?;
            headers.append(name, value);
        }
        let breaker_config = match self.breaker {
            Some(config) => config,
            None => CircuitBreaker::builder(self.service.as_str())
                .config()
                .map_err(|_| ClientBuildError::EmptyServiceName)?,
        };

        let service: Arc<str> = self.service.as_str().into();
        let breakers = KeyedCircuitBreakers::<Arc<str>>::new(breaker_config);
        let select = Arc::new(SelectShared {
            service: Arc::clone(&service),
            upstream,
            load_timeout: self.total_timeout.unwrap_or(self.timeout),
            breakers: breakers.clone(),
        });

        // innermost first
        let transport = Transport::new(&self.transport, self.max_in_flight);
        let wire: Wire = match &self.service_auth {
            Some(auth) => Either::Left(
                ServiceTokenLayer::new(auth.clone(), Arc::clone(&service)).layer(transport),
            ),
            None => Either::Right(MapErr::new(transport, map_transport_error as fn(_) -> _)),
        };
        let attempt: Attempt = TimeoutLayer::new(self.timeout).layer(wire);
        let guarded = KeyedCircuitBreakerLayer::with_breakers(
            breakers.clone(),
            instance_key::<ReqBody> as KeyFn<ReqBody>,
        )
        .layer(attempt);
        let selected = Select {
            inner: guarded,
            shared: Arc::clone(&select),
            loading: std::sync::Mutex::new(None),
        };
        let retry = match self.retry.name() {
            Some(_) => self.retry,
            None => self.retry.with_name(Arc::clone(&service)),
        };
        let retried = RetryLayer::new(retry).layer(selected);
        let total = TotalDeadline {
            inner: retried,
            total: self.total_timeout,
        };
        let keys = if self.idempotency_keys {
            IdempotencyKeyLayer::new()
        } else {
            IdempotencyKeyLayer::methods([])
        };
        let keyed = keys.layer(total);
        let stack: Stack = PropagateCorrelationLayer::new().layer(keyed);

        Ok(ServiceClient {
            stack,
            shared: Arc::new(ClientShared {
                #[cfg(feature = "metrics")]
                metrics: forten_core::metrics::RequestMetrics::client(Arc::clone(&service)),
                service,
                select,
                breakers,
                fallback: self.fallback,
                rate_limit: self.rate_limit.map(GovernorBackend::new),
                max_request_body: self.max_request_body,
                default_headers: headers,
            }),
        })
    }
}

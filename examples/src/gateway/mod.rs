//! `api-gateway` (:3000), the BFF: the public API of EventBoard.
//!
//! Stack (outermost first): service span, correlation, JSON:API errors,
//! deadline (the common [`server_stack`]); then on the `/api/v1` routes that
//! need a user: [`JwtAuthLayer`](forten_auth::JwtAuthLayer) (user tokens,
//! 401 with `WWW-Authenticate`), [`RateLimitLayer`] per user (client IP when
//! anonymous: signup and login), [`IdempotencyLayer`] for POST/PATCH (scoped
//! by user; signup and login have no user yet, so they are not keyed: a shared
//! anonymous scope would replay one caller's answer to another).
//!
//! Each service is called through a forten-client [`ServiceClient`] in
//! discovery mode: instances from the registry this gateway hosts
//! (`/registry`, forten-discovery's [`RegistryServer`], health-checking every
//! instance's `/health/ready`), one circuit breaker per instance, safe
//! retries with a budget, the gateway's service token in `Authorization` and
//! the user's token in `x-user-token` (see [`crate::runtime::auth`]); in
//! front of the client, one breaker for the service as a whole ([`Upstream`]).
//!
//! The registry API's writes need the registry key (`x-internal-auth`, see
//! [`Secrets`](crate::runtime::Secrets)); its reads are open.
//!
//! `/health` aggregates the services' readiness: one informational check per
//! service (`<service>:ready`), passing while the registry holds a healthy
//! instance of it. The gateway's own readiness does not depend on them: it
//! keeps serving, degraded.

mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::handler::{Handler, HandlerService};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get_service, post, post_service};
use bytes::Bytes;
use forten_client::ServiceClient;
use forten_core::circuit::{CircuitBreaker, CircuitBreakerBuilder};
use forten_core::idempotency::{ClientIdentity, IdempotencyLayer, MemoryStore};
use forten_core::ratelimit::{
    GovernorBackend, KeyExtractor, LimitKey, RateLimitLayer, RateLimitPolicy,
};
use forten_core::retry::RetryConfig;
use forten_discovery::{DiscoveryClient, MemoryRegistry, Registry, RegistryServer};
use forten_health::{Check, CheckResult};
use http::Request;
use http_body_util::{Either, Full};
use tower::Layer;

pub use proxy::{Failure, Upstream, Upstreams, forward, upstream_failure};

use crate::runtime::input::ApiError;
use crate::runtime::input::wrong_method;
use crate::runtime::names::{AUTH, EVENTS, GATEWAY, NOTIFICATIONS};
use crate::runtime::serve::server_layers;
use crate::runtime::{Launch, ServiceContext, server_stack};
use crate::system::SystemError;

/// A boxed future (the demo controls are not on a hot path).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Stops and starts services, for the demo-only routes
/// `POST /demo/services/{name}/stop|start` (forten-demo all-in-one).
pub trait DemoControl: Send + Sync + 'static {
    /// Stops (`start == false`) or starts `service` (`auth`, `events`,
    /// `notifications`); `Ok(false)` when the name is unknown.
    fn control(&self, service: &str, start: bool) -> BoxFuture<Result<bool, SystemError>>;
}

/// The gateway's settings.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The registry it hosts (services register in it, it discovers from it).
    pub registry: MemoryRegistry,
    /// Per-user (or per-IP) rate limit.
    pub rate_limit: RateLimitPolicy,
    /// Per-attempt timeout of upstream calls.
    pub upstream_timeout: Duration,
    /// All attempts of one upstream call together.
    pub upstream_total_timeout: Duration,
    /// The demo controls, when forten-demo runs everything in one process.
    pub demo: Option<Arc<dyn DemoControl>>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("rate_limit", &self.rate_limit)
            .field("demo", &self.demo.is_some())
            .finish_non_exhaustive()
    }
}

/// The per-user rate limit: `per_second` sustained, bursts of `burst`.
pub fn rate_limit_policy(per_second: u32, burst: u32) -> Result<RateLimitPolicy, SystemError> {
    if per_second == 0 || burst == 0 {
        return Err(SystemError::Config(
            "the rate limit needs a rate and a burst above zero".to_owned(),
        ));
    }
    let window = Duration::from_secs_f64(f64::from(burst) / f64::from(per_second));
    RateLimitPolicy::new("per-user", burst, window)
        .map_err(|e| SystemError::Config(format!("rate limit: {e}")))
}

/// The breakers' settings: a window of the last 20 calls, acting from 5,
/// opening at half of them failing, open for 5 s.
fn breaker(name: &str) -> CircuitBreakerBuilder {
    CircuitBreaker::builder(name)
        .count_window(20)
        .minimum_calls(5)
        .failure_rate_threshold(0.5)
        .wait_duration(Duration::from_secs(5))
}

fn upstream(
    ctx: &ServiceContext,
    cfg: &GatewayConfig,
    discovery: &DiscoveryClient,
    service: &str,
) -> Result<Upstream, SystemError> {
    let config_error =
        |e: forten_core::circuit::ConfigError| SystemError::Config(format!("circuit breaker: {e}"));
    let per_instance = breaker(service).config().map_err(config_error)?;
    let client = ServiceClient::builder(service)
        .discovery(discovery.clone())
        .service_auth(ctx.keys.service_auth(GATEWAY)?)
        .timeout(cfg.upstream_timeout)
        .total_timeout(cfg.upstream_total_timeout)
        .retry(RetryConfig::default())
        .circuit_breaker(per_instance)
        .build()?;
    Ok(Upstream {
        client,
        breaker: breaker(service).build().map_err(config_error)?,
    })
}

/// The rate-limit key: the user (`sub`) when authenticated, else the client IP
/// (axum's `ConnectInfo`, which the default extractor does not read).
fn user_or_ip() -> KeyExtractor {
    KeyExtractor::new(|parts| {
        if let Some(id) = parts.extensions.get::<ClientIdentity>() {
            return LimitKey::Client(id.as_arc());
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(LimitKey::Global, |c| LimitKey::Ip(c.0.ip()))
    })
}

/// `handler` (with the upstreams as its state) inside `layers`.
fn behind<L, H, T>(layers: &L, handler: H, upstreams: &Arc<Upstreams>) -> L::Service
where
    L: Layer<HandlerService<H, T, Arc<Upstreams>>>,
    H: Handler<T, Arc<Upstreams>>,
    T: 'static,
{
    layers.layer(handler.with_state(Arc::clone(upstreams)))
}

/// Builds the gateway.
pub fn launch(ctx: &ServiceContext, cfg: &GatewayConfig) -> Result<Launch, SystemError> {
    let discovery = DiscoveryClient::new(cfg.registry.clone());
    // Shared: axum clones a route's state for every request.
    let upstreams = Arc::new(Upstreams {
        auth: upstream(ctx, cfg, &discovery, AUTH)?,
        events: upstream(ctx, cfg, &discovery, EVENTS)?,
        notifications: upstream(ctx, cfg, &discovery, NOTIFICATIONS)?,
        dashboard_part_timeout: cfg.upstream_timeout.min(Duration::from_secs(2)),
    });
    let mut monitor = ctx.monitor(GATEWAY, None);
    for service in [AUTH, EVENTS, NOTIFICATIONS] {
        let registry = cfg.registry.clone();
        monitor = monitor.check(
            Check::from_fn(format!("{service}:ready"), move || {
                let registry = registry.clone();
                async move {
                    match registry.discover(service).await {
                        Ok(list) if !list.is_empty() => {
                            CheckResult::pass().with_observed_value(list.len())
                        }
                        Ok(_) => CheckResult::fail(format!("no ready instance of {service}")),
                        Err(e) => CheckResult::fail(e.to_string()),
                    }
                }
            })
            .non_critical()
            .informational(),
        );
    }
    let monitor = monitor.build()?;

    let limiter = Arc::new(GovernorBackend::new(cfg.rate_limit.clone()));
    let rate_limit = RateLimitLayer::with_shared(limiter, user_or_ip());
    let idempotency = IdempotencyLayer::new(MemoryStore::new());
    // A request the idempotency layer let through keeps its own body (no
    // second box around it); only a buffered one is boxed into a `Body`.
    let to_body = |req: Request<Either<Body, Full<Bytes>>>| {
        req.map(|body| match body {
            Either::Left(body) => body,
            Either::Right(buffered) => Body::new(buffered),
        })
    };

    // The `/api/v1` routes carry the whole stack themselves, the server's
    // layers ([`server_layers`]) and theirs, around the handler: one boxed
    // level a request (the route axum keeps), where `server_stack`'s
    // `Router::layer` and a `route_layer` would each add one more, cloned
    // and boxed again on every request. They are merged in after
    // `server_stack`, so its layers do not wrap them a second time.
    // A refusal by the layers below (401, 429, 409, ...) becomes its JSON:API
    // document in the server's layers, and their metrics count it with its
    // status.
    let api = server_layers(GATEWAY, ctx.max_deadline);
    let public_layers = api.clone().layer(rate_limit.clone());
    let protected_layers = api
        .clone()
        .layer(ctx.keys.user_layer())
        .layer(rate_limit)
        .layer(idempotency)
        .map_request(to_body);
    // 405 for a method a route does not take, as `server_stack` answers it
    // for its routes (no credentials needed to learn that).
    let refuse_method = behind(&api, wrong_method, &upstreams);
    let events = behind(&protected_layers, proxy::events, &upstreams);
    let notifications = behind(&protected_layers, proxy::notifications, &upstreams);
    let api = Router::new()
        .route(
            "/api/v1/auth/signup",
            post_service(behind(&public_layers, proxy::signup, &upstreams))
                .fallback_service(refuse_method.clone()),
        )
        .route(
            "/api/v1/auth/login",
            post_service(behind(&public_layers, proxy::login, &upstreams))
                .fallback_service(refuse_method.clone()),
        )
        .route(
            "/api/v1/auth/me",
            get_service(behind(&protected_layers, proxy::me, &upstreams))
                .fallback_service(refuse_method.clone()),
        )
        .route_service("/api/v1/events", events.clone())
        .route_service("/api/v1/events/{*rest}", events)
        .route_service("/api/v1/notifications", notifications.clone())
        .route_service("/api/v1/notifications/{*rest}", notifications)
        .route(
            "/api/v1/dashboard",
            get_service(behind(&protected_layers, proxy::dashboard, &upstreams))
                .fallback_service(refuse_method.clone()),
        );
    let demo = Router::new()
        .route("/demo/services/{name}/{action}", post(demo_control))
        .with_state(cfg.demo.clone());
    let router = server_stack(
        GATEWAY,
        demo.nest_service("/registry", registry_api(ctx, &cfg.registry))
            .nest_service("/health", monitor.routes().nested()),
        ctx.max_deadline,
        None,
    )
    .merge(api);
    Ok(Launch {
        name: GATEWAY,
        router,
        monitor,
        registry: None,
        bus: None,
        subscriptions: Vec::new(),
    })
}

/// The registry API: reads open, writes (register, heartbeat, deregister)
/// only with the registry key, so nobody else can put an instance of
/// `auth-service` in front of the gateway's user tokens.
fn registry_api(ctx: &ServiceContext, registry: &MemoryRegistry) -> MethodRouter {
    let server = RegistryServer::new(registry.clone());
    get_service(server.clone()).fallback_service(ctx.keys.registry_guard().layer(server))
}

async fn demo_control(
    State(demo): State<Option<Arc<dyn DemoControl>>>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path((name, action))) = path else {
        return Err(ApiError::not_found("no such service"));
    };
    let Some(demo) = demo else {
        return Err(ApiError::not_found(
            "demo controls exist only in forten-demo's all-in-one mode",
        ));
    };
    let start = match action.as_str() {
        "start" => true,
        "stop" => false,
        _ => return Err(ApiError::not_found("the action is stop or start")),
    };
    match demo.control(&name, start).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(ApiError::not_found(
            "the service is auth, events or notifications",
        )),
        Err(e) => Err(ApiError::conflict(e.to_string())),
    }
}

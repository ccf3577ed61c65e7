//! Serving one service: the server stack, registration, health and the
//! graceful stop.

use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use forten_core::correlation::CorrelationLayer;
use forten_core::deadline::DeadlineLayer;
use forten_core::error::ErrorResponseLayer;
use forten_core::metrics::ServerMetricsLayer;
use forten_discovery::{AnyRegistry, Registration, Registry, ServiceInstance};
use forten_events::SubscriptionHandle;
use forten_health::HealthMonitor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::accept::{Stops, serve};
use super::auth::Keys;
use super::bus::Bus;
use super::input::{MAX_BODY_BYTES, no_route, wrong_method};

/// How often a service's own health checks run.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Wraps a service's routes in the stack every EventBoard service uses
/// (outermost first): a span naming the service, [`CorrelationLayer`]
/// (correlation id and trace context, echoed, a span field on every log
/// line), RED metrics per route template ([`super::metrics`]: they see the
/// answer the caller gets, a refusal or a timeout with its status),
/// [`ErrorResponseLayer`] (any error of the stack as a JSON:API document),
/// [`DeadlineLayer`] (`x-request-timeout-ms`, capped at `max`).
/// Every service also serves `GET /metrics` (Prometheus text).
/// Unknown routes and methods answer JSON:API 404 / 405; bodies are capped
/// at [`MAX_BODY_BYTES`]; the [`Keys`], when given, go into request
/// extensions for [`CurrentUser`](super::auth::CurrentUser) (the gateway,
/// which has no such handler, passes `None`).
///
/// One `ServiceBuilder`, because axum wants every layer it is given to be
/// infallible (`ErrorResponseLayer` turns the deadline's errors into
/// documents), and because each `Router::layer` call wraps every route in one
/// more boxed service that is cloned and boxed again on every request. A hot
/// route can carry [`server_layers`] itself instead and be merged in after
/// this (the gateway's `/api/v1` routes do), so it has no such level at all.
pub fn server_stack(
    service: &'static str,
    router: Router,
    max: Duration,
    keys: Option<&Keys>,
) -> Router {
    router
        .route("/metrics", axum::routing::get(super::metrics::render))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(
            server_layers(service, max)
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
                .option_layer(keys.map(|k| axum::Extension(k.clone()))),
        )
}

/// The layers of [`server_stack`], outermost first.
pub type ServerLayers = Stack<
    DeadlineLayer,
    Stack<
        ErrorResponseLayer,
        Stack<ServerMetricsLayer, Stack<CorrelationLayer, Stack<ServiceSpanLayer, Identity>>>,
    >,
>;

/// The layers [`server_stack`] puts around every route, for a route that
/// carries them itself (`route_service(path, server_layers(..).service(svc))`,
/// merged into the router after [`server_stack`]): the service's span,
/// correlation, the RED metrics (labelled with the route's template, which
/// the router has set by then), JSON:API errors and the deadline capped at
/// `max`. Layers added to the returned builder sit inside them; an error any
/// of them returns becomes a JSON:API document, counted by the metrics with
/// its status.
///
/// The metrics sit outside the errors and the deadline so that they count
/// what the caller gets: inside the deadline, a request that timed out was
/// dropped uncounted (its 504 never reached them), and a refusal by a layer
/// below was an `error`, not its 401, 403 or 429.
///
/// Not the body limit for extractors (`DefaultBodyLimit`, which
/// [`server_stack`] adds): it is one more request extension, boxed, and a
/// route carrying these layers itself reads its body with an explicit limit
/// (the gateway's proxy: `axum::body::to_bytes(body, MAX_BODY_BYTES)`).
pub fn server_layers(service: &'static str, max: Duration) -> ServiceBuilder<ServerLayers> {
    ServiceBuilder::new()
        .layer(ServiceSpanLayer(service))
        // Handlers and the layers inside read both from the task
        // (`current()`), so neither goes into request extensions too:
        // that saves two boxed values a request.
        .layer(CorrelationLayer::new().request_extension(false))
        .layer(super::metrics::server_metrics())
        .layer(ErrorResponseLayer::new())
        .layer(DeadlineLayer::new(max).request_extension(false))
}

/// A span per request naming the service, so every log line says which
/// service wrote it (the correlation span inside adds `correlation_id`).
/// A small layer rather than `axum::middleware::from_fn`, which boxes the
/// rest of the stack and its future on every request.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpanLayer(&'static str);

impl<S> Layer<S> for ServiceSpanLayer {
    type Service = ServiceSpan<S>;

    fn layer(&self, inner: S) -> ServiceSpan<S> {
        ServiceSpan {
            service: self.0,
            inner,
        }
    }
}

/// The service of [`ServiceSpanLayer`].
#[derive(Debug, Clone)]
pub struct ServiceSpan<S> {
    service: &'static str,
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ServiceSpan<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "request",
            service = self.service,
            method = %req.method(),
            path = req.uri().path(),
        );
        let inner = &mut self.inner;
        span.in_scope(|| inner.call(req)).instrument(span)
    }
}

/// The health-check URL a service registers.
pub fn ready_url(addr: SocketAddr) -> String {
    format!("http://{addr}/health/ready")
}

/// What [`RunningService::start`] needs.
pub struct Launch {
    /// The service name (registered, and the span field).
    pub name: &'static str,
    /// The service's complete router (already through [`server_stack`]).
    pub router: Router,
    /// Its health monitor (started here; readiness fails first on stop).
    pub monitor: HealthMonitor,
    /// Where to register (none for the gateway, which hosts the registry).
    pub registry: Option<AnyRegistry>,
    /// Its bus connection, closed (draining consumers) on stop.
    pub bus: Option<Bus>,
    /// Its running subscriptions, closed on stop.
    pub subscriptions: Vec<SubscriptionHandle>,
}

/// A service serving on its listener.
#[derive(Debug)]
pub struct RunningService {
    name: &'static str,
    addr: SocketAddr,
    monitor: HealthMonitor,
    monitor_task: JoinHandle<()>,
    registration: Option<Reg>,
    stops: Stops,
    server: JoinHandle<()>,
    bus: Option<Bus>,
    subscriptions: Vec<SubscriptionHandle>,
}

impl RunningService {
    /// Runs the health checks once, serves `launch.router` on `listener` and
    /// registers the service (retrying in the background while the registry
    /// is unreachable).
    pub async fn start(launch: Launch, listener: TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let monitor_task = launch
            .monitor
            .start()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        launch.monitor.run_checks_once().await;
        let stops = Stops::default();
        let name = launch.name;
        let server = tokio::spawn(serve(listener, launch.router, stops.clone()));
        let registration = match launch.registry {
            Some(registry) => Some(register(registry, name, addr).await),
            None => None,
        };
        tracing::info!(service = name, %addr, "listening");
        Ok(RunningService {
            name,
            addr,
            monitor: launch.monitor,
            monitor_task,
            registration,
            stops,
            server,
            bus: launch.bus,
            subscriptions: launch.subscriptions,
        })
    }

    /// The service name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop, in this order: readiness fails (`/health/ready` 503);
    /// the instance deregisters, so the gateway sends it nothing new; the
    /// server stops accepting and every request it accepted finishes;
    /// consumers drain (in-flight handlers settle) and the bus closes.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.monitor.shutting_down();
        let registration = match self.registration.take() {
            Some(Reg::Ready(r)) => Some(r),
            Some(Reg::Pending(task)) if task.is_finished() => task.await.ok(),
            Some(Reg::Pending(task)) => {
                task.abort();
                None
            }
            None => None,
        };
        if let Some(r) = registration
            && let Err(e) = r.deregister().await
        {
            tracing::warn!(service = self.name, error = %e, "deregistration failed; the lease will lapse");
        }
        self.stops.graceful.cancel();
        let served = (&mut self.server)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()));
        for sub in self.subscriptions.drain(..) {
            sub.close().await;
        }
        if let Some(bus) = self.bus.take() {
            bus.close().await;
        }
        self.monitor_task.abort();
        tracing::info!(service = self.name, "stopped");
        served
    }
}

impl RunningService {
    /// Simulates a crash: the listener and every connection are dropped at
    /// once, in-flight requests are lost, readiness never fails and the
    /// instance does not deregister (its lease stays until the registry's
    /// health checks or its TTL drop it). Subscriptions stop consuming; the
    /// deliveries they had not settled go back to the queue.
    pub async fn kill(mut self) {
        self.stops.kill.cancel();
        let _ = (&mut self.server).await;
        match self.registration.take() {
            Some(Reg::Ready(r)) => r.abandon(),
            Some(Reg::Pending(task)) => task.abort(),
            None => {}
        }
        for sub in self.subscriptions.drain(..) {
            sub.close().await;
        }
        if let Some(bus) = self.bus.take() {
            bus.close().await;
        }
        self.monitor_task.abort();
        tracing::warn!(service = self.name, "killed");
    }

    /// Runs the health checks now (the gateway's, once every service has registered).
    pub async fn check_health(&self) {
        self.monitor.run_checks_once().await;
    }
}

/// A registration made, or still being retried.
#[derive(Debug)]
enum Reg {
    Ready(Registration),
    Pending(JoinHandle<Registration>),
}

/// Registers `name` at `addr` with its health-check URL: at once when the
/// registry answers, else in the background until it does.
async fn register(registry: AnyRegistry, name: &'static str, addr: SocketAddr) -> Reg {
    let short = uuid::Uuid::new_v4().simple().to_string();
    let instance = ServiceInstance::builder(name, addr.ip().to_string(), addr.port())
        .id(format!("{name}-{}-{}", addr.port(), &short[..8]))
        .version(env!("CARGO_PKG_VERSION"))
        .health_check_url(ready_url(addr))
        .build();
    let instance = match instance {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(service = name, error = %e, "invalid instance; not registered");
            return Reg::Pending(tokio::spawn(std::future::pending()));
        }
    };
    match registry.register(instance.clone()).await {
        Ok(r) => return Reg::Ready(r),
        Err(e) => {
            tracing::warn!(service = name, error = %e, "registration failed; retrying in the background");
        }
    }
    Reg::Pending(tokio::spawn(async move {
        loop {
            match registry.register(instance.clone()).await {
                Ok(r) => {
                    tracing::info!(service = name, "registered");
                    return r;
                }
                Err(e) => {
                    tracing::warn!(service = name, error = %e, "registration failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}

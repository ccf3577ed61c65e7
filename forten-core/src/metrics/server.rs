//! [`ServerMetricsLayer`]: RED metrics of a server, by route and status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Request, Response};
use metrics::SharedString;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::RequestMetrics;

type RouteFn = dyn Fn(&Parts) -> Option<SharedString> + Send + Sync;

const UNMATCHED: &str = "unmatched";

/// Counts a server's requests and times them: `forten_server_requests_total`
/// and `forten_server_request_duration_seconds`, both `{route, status}`
/// (`status` is the response code, `error` when the service failed).
///
/// The route label comes from the function given to [`route`](Self::route),
/// which sees the request head (an axum `MatchedPath` in its extensions, for
/// instance: add the layer with `Router::layer` so the path is matched
/// first); without one, or when it returns `None`, the label is `unmatched`.
/// Never the raw path: one series per URL is a cardinality explosion.
///
/// The duration runs from the call until the response head is ready (a
/// streamed body is not waited for).
///
/// Put it outside the layers that time requests out or turn errors into
/// responses: a request whose future is dropped (a timeout outside this
/// layer, a client gone) is not recorded, and an error is recorded as
/// `error`, not as the status it is answered with.
#[derive(Clone)]
pub struct ServerMetricsLayer {
    route: Option<Arc<RouteFn>>,
    metrics: Arc<RequestMetrics>,
}

impl Default for ServerMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ServerMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetricsLayer")
            .field("route", &self.route.as_ref().map(|_| "fn"))
            .finish_non_exhaustive()
    }
}

impl ServerMetricsLayer {
    /// A layer labelling every request `route="unmatched"` until
    /// [`route`](Self::route) says better.
    pub fn new() -> Self {
        ServerMetricsLayer {
            route: None,
            metrics: Arc::new(RequestMetrics::server()),
        }
    }

    /// The function naming a request's route. Return values from a bounded
    /// set (route templates, not paths); `None` labels it `unmatched`.
    pub fn route<F>(mut self, route: F) -> Self
    where
        F: Fn(&Parts) -> Option<SharedString> + Send + Sync + 'static,
    {
        self.route = Some(Arc::new(route));
        self
    }
}

impl<S> Layer<S> for ServerMetricsLayer {
    type Service = ServerMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service whose requests are counted and timed; built by [`ServerMetricsLayer`].
#[derive(Debug, Clone)]
pub struct ServerMetrics<S> {
    inner: S,
    layer: ServerMetricsLayer,
}

impl<S, B, ResB> Service<Request<B>> for ServerMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ServerMetricsFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (route, req) = match &self.layer.route {
            Some(route_fn) => {
                let (parts, body) = req.into_parts();
                let route = route_fn(&parts);
                (route, Request::from_parts(parts, body))
            }
            None => (None, req),
        };
        ServerMetricsFuture {
            inner: self.inner.call(req),
            record: Some(Record {
                metrics: Arc::clone(&self.layer.metrics),
                route: route.unwrap_or(SharedString::const_str(UNMATCHED)),
                started: Instant::now(),
            }),
        }
    }
}

struct Record {
    metrics: Arc<RequestMetrics>,
    route: SharedString,
    started: Instant,
}

pin_project! {
    /// The future of [`ServerMetrics`]: the inner future, recorded when it ends.
    pub struct ServerMetricsFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
    }
}

impl<F> std::fmt::Debug for ServerMetricsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetricsFuture")
            .finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ServerMetricsFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(record) = this.record.take() {
            let status = result.as_ref().ok().map(Response::status);
            record
                .metrics
                .record(record.route, status, record.started.elapsed());
        }
        Poll::Ready(result)
    }
}

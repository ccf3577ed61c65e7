//! [`CorrelationLayer`]: the server side of DESIGN 4.1.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::CorrelationContext;
use crate::headers::X_CORRELATION_ID;

/// Server-side correlation: extracts or creates the request's
/// [`CorrelationContext`], puts it into the request extensions and around the
/// handler (task-local and a `tracing` span with `correlation_id` and
/// `trace_id` fields), and echoes `x-correlation-id` on the response.
///
/// ```
/// use forten_core::correlation::{CorrelationContext, CorrelationLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let handler = service_fn(|_req: http::Request<()>| async {
///     let ctx = CorrelationContext::current().expect("inside the layer");
///     Ok::<_, std::convert::Infallible>(http::Response::new(ctx.correlation_id().to_string()))
/// });
/// let req = http::Request::builder().header("x-correlation-id", "abc-1").body(()).unwrap();
/// let res = CorrelationLayer::new().layer(handler).oneshot(req).await.unwrap();
/// assert_eq!(res.headers()["x-correlation-id"], "abc-1");
/// assert_eq!(res.body(), "abc-1");
/// # });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CorrelationLayer {
    extension: bool,
}

impl Default for CorrelationLayer {
    fn default() -> Self {
        CorrelationLayer { extension: true }
    }
}

impl CorrelationLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to also put the [`CorrelationContext`] into the request's
    /// extensions (default `true`). Handlers always have
    /// [`CorrelationContext::current`]; the extension is for code that moves
    /// the request to another task, and for `ErrorResponseLayer` placed
    /// outside this layer. Turning it off saves the extension map's
    /// allocations on a request that has no other extensions.
    pub fn request_extension(mut self, insert: bool) -> Self {
        self.extension = insert;
        self
    }
}

impl<S> Layer<S> for CorrelationLayer {
    type Service = Correlation<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Correlation {
            inner,
            extension: self.extension,
        }
    }
}

/// The service produced by [`CorrelationLayer`].
#[derive(Debug, Clone)]
pub struct Correlation<S> {
    inner: S,
    extension: bool,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Correlation<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = CorrelationFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let ctx = CorrelationContext::from_headers(req.headers());
        // Echo the caller's header value as is when it was valid (no copy);
        // otherwise encode the id we settled on.
        let echo = match req.headers().get(X_CORRELATION_ID) {
            Some(v) if v.as_bytes() == ctx.correlation_id().as_str().as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(ctx.correlation_id().as_str()).ok(),
        };
        let span = tracing::info_span!(
            "request",
            correlation_id = %ctx.correlation_id(),
            trace_id = %ctx.trace_parent().trace_id(),
        );
        ctx.set_parent_of(&span);
        if self.extension {
            req.extensions_mut().insert(ctx.clone());
        }
        let inner = span.in_scope(|| ctx.clone().sync_scope(|| self.inner.call(req)));
        CorrelationFuture {
            inner: ctx.scope(inner).instrument(span),
            echo,
        }
    }
}

pin_project! {
    /// Response future of [`Correlation`].
    pub struct CorrelationFuture<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<CorrelationContext, F>>,
        echo: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for CorrelationFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            other => return other,
        };
        if let Some(v) = this.echo.take() {
            response.headers_mut().insert(X_CORRELATION_ID, v);
        }
        Poll::Ready(Ok(response))
    }
}

//! [`PropagateCorrelationLayer`]: the client side of DESIGN 4.1.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::CorrelationContext;

/// Client-side propagation: writes the current [`CorrelationContext`] into
/// every outbound request, with the same correlation id, trace id, flags and
/// tracestate and a fresh parent-id for this hop ([`CorrelationContext::hop`]:
/// the current span's id under the `opentelemetry` feature).
///
/// The context is taken from the request's extensions when one was put there
/// explicitly, else from [`CorrelationContext::current`]; a request made
/// outside any context starts a new one.
///
/// ```
/// use forten_core::correlation::{CorrelationContext, PropagateCorrelationLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let upstream = service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.headers()["x-correlation-id"].to_str().unwrap().to_owned())
/// });
/// let client = PropagateCorrelationLayer::new().layer(upstream);
/// let ctx = CorrelationContext::from_values(Some("order-42"), None, None);
/// let seen = ctx.scope(client.oneshot(http::Request::new(()))).await.unwrap();
/// assert_eq!(seen, "order-42");
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateCorrelationLayer {
    _priv: (),
}

impl PropagateCorrelationLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for PropagateCorrelationLayer {
    type Service = PropagateCorrelation<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateCorrelation { inner }
    }
}

/// The service produced by [`PropagateCorrelationLayer`].
#[derive(Debug, Clone)]
pub struct PropagateCorrelation<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for PropagateCorrelation<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let hop = match req.extensions().get::<CorrelationContext>() {
            Some(ctx) => ctx.hop(),
            None => {
                if let Some(ctx) = CorrelationContext::current() {
                    ctx.hop()
                } else {
                    let root = CorrelationContext::new_root();
                    root.from_current_span().unwrap_or(root)
                }
            }
        };
        hop.inject(req.headers_mut());
        self.inner.call(req)
    }
}

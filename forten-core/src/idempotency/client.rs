//! [`IdempotencyKeyLayer`]: the client side, one key per logical request.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request};
use tower_layer::Layer;
use tower_service::Service;

use super::IdempotencyKey;
use crate::headers::IDEMPOTENCY_KEY;

/// Adds a fresh `Idempotency-Key` to requests of the configured methods
/// (POST and PATCH by default) that carry none.
///
/// Place it *outside* a retry layer: the key is added once, and every
/// attempt (a clone of the keyed request) carries the same key, which is what
/// makes retrying a POST safe and what lets the retry policy treat it as
/// retryable.
///
/// ```
/// use forten_core::idempotency::IdempotencyKeyLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let svc = IdempotencyKeyLayer::new().layer(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.headers().contains_key("idempotency-key"))
/// }));
/// let post = http::Request::post("/events").body(()).unwrap();
/// assert!(svc.clone().oneshot(post).await.unwrap());
/// let get = http::Request::get("/events").body(()).unwrap();
/// assert!(!svc.oneshot(get).await.unwrap());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct IdempotencyKeyLayer {
    methods: Arc<[Method]>,
}

impl Default for IdempotencyKeyLayer {
    fn default() -> Self {
        IdempotencyKeyLayer {
            methods: Arc::new([Method::POST, Method::PATCH]),
        }
    }
}

impl IdempotencyKeyLayer {
    /// Keys POST and PATCH requests.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys requests of these methods instead.
    pub fn methods(methods: impl IntoIterator<Item = Method>) -> Self {
        IdempotencyKeyLayer {
            methods: methods.into_iter().collect(),
        }
    }
}

impl<S> Layer<S> for IdempotencyKeyLayer {
    type Service = AddIdempotencyKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AddIdempotencyKey {
            inner,
            methods: Arc::clone(&self.methods),
        }
    }
}

/// The service produced by [`IdempotencyKeyLayer`].
#[derive(Debug, Clone)]
pub struct AddIdempotencyKey<S> {
    inner: S,
    methods: Arc<[Method]>,
}

impl<S, B> Service<Request<B>> for AddIdempotencyKey<S>
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
        if self.methods.contains(req.method()) && !req.headers().contains_key(IDEMPOTENCY_KEY) {
            req.headers_mut().insert(
                IDEMPOTENCY_KEY,
                IdempotencyKey::generate().to_header_value(),
            );
        }
        self.inner.call(req)
    }
}

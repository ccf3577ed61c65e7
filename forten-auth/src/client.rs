//! The calling side as a layer: [`ServiceTokenLayer`] adds this service's
//! token for one target to every outbound request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use forten_core::BoxError;
use http::Request;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::service::{ServiceAuth, Slot};

/// Sets `Authorization: Bearer <token>` on every request, with the cached
/// token [`ServiceAuth`] holds for `target` (no signing per request). A
/// failure to mint fails the call with an [`AuthError`](crate::AuthError)
/// (boxed); the inner service is then not called.
///
/// ```
/// use forten_auth::{ServiceAuth, ServiceTokenLayer, SigningKey};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let auth = ServiceAuth::builder("orders")
///     .signing_key(SigningKey::hs256(&[8u8; 32]).unwrap())
///     .build()
///     .unwrap();
/// let client = ServiceTokenLayer::new(auth, "events").layer(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.headers().contains_key("authorization"))
/// }));
/// assert!(client.oneshot(http::Request::new(())).await.unwrap());
/// # });
/// ```
#[derive(Clone)]
pub struct ServiceTokenLayer {
    auth: ServiceAuth,
    target: Arc<str>,
}

impl fmt::Debug for ServiceTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokenLayer")
            .field("auth", &self.auth)
            .field("target", &self.target)
            .finish()
    }
}

impl ServiceTokenLayer {
    /// Tokens from `auth`, addressed to the service `target`.
    pub fn new(auth: ServiceAuth, target: impl Into<Arc<str>>) -> Self {
        ServiceTokenLayer {
            auth,
            target: target.into(),
        }
    }
}

impl<S> Layer<S> for ServiceTokenLayer {
    type Service = ServiceToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServiceToken {
            inner,
            target: Arc::new(Target {
                slot: self.auth.slot(&self.target),
                auth: self.auth.clone(),
                name: self.target.clone(),
            }),
        }
    }
}

/// The target's token as a layer's services read it: its cache slot, so a
/// request costs a read lock, not a lookup by name; behind one `Arc`, so
/// cloning the service (once per request, in most stacks) counts one
/// reference.
struct Target {
    auth: ServiceAuth,
    name: Arc<str>,
    slot: Arc<Slot>,
}

/// The service produced by [`ServiceTokenLayer`].
#[derive(Clone)]
pub struct ServiceToken<S> {
    inner: S,
    target: Arc<Target>,
}

impl<S: fmt::Debug> fmt::Debug for ServiceToken<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("inner", &self.inner)
            .field("target", &self.target.name)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for ServiceToken<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ServiceTokenFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let target = &*self.target;
        match target.auth.auth_header_in(&target.slot, &target.name) {
            Ok(value) => {
                req.headers_mut().insert(http::header::AUTHORIZATION, value);
                ServiceTokenFuture {
                    state: State::Inner {
                        fut: self.inner.call(req),
                    },
                }
            }
            Err(e) => ServiceTokenFuture {
                state: State::Failed {
                    error: Some(Box::new(e)),
                },
            },
        }
    }
}

pin_project! {
    /// Response future of [`ServiceToken`].
    pub struct ServiceTokenFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            fut: F,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F, T, E> Future for ServiceTokenFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            StateProj::Failed { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => panic!("ServiceTokenFuture polled after completion"),
            },
        }
    }
}

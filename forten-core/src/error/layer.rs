//! [`ErrorResponseLayer`]: turns a stack's `Err` into its JSON:API response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::Error;
use crate::BoxError;
use crate::correlation::{CorrelationContext, CorrelationId};

/// Turns every `Err` of the wrapped service into the HTTP response DESIGN 4.3
/// prescribes, so the stack below can speak `Result<_, BoxError>` while the
/// server above sees only responses.
///
/// A forten [`Error`] keeps its status, code and headers; tower's `Elapsed` and
/// `Overloaded` become 504 and 503; anything else becomes a 500 whose detail
/// does not leak the internal message. `meta.requestId` carries the request's
/// correlation id (from its [`CorrelationContext`] extension, or the current
/// task-local context), so place this layer inside the `CorrelationLayer`.
///
/// ```
/// use forten_core::{BoxError, Error, error::ErrorResponseLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let inner = service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<String>, BoxError>(Error::Forbidden { detail: "needs events:approve".into() }.into())
/// });
/// let response = ErrorResponseLayer::new().layer(inner).oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.status(), 403);
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorResponseLayer {
    _priv: (),
}

impl ErrorResponseLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponseService {
            inner,
            not_ready: None,
        }
    }
}

/// The service produced by [`ErrorResponseLayer`].
#[derive(Debug)]
pub struct ErrorResponseService<S> {
    inner: S,
    /// A readiness error, answered as the next call's response.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for ErrorResponseService<S> {
    fn clone(&self) -> Self {
        ErrorResponseService {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorResponseService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = Infallible;
    type Future = ErrorResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A readiness error becomes the next call's response: the caller
        // sees a document, and the failed inner service is not called.
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(e.into());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Only the correlation id is needed (for meta.requestId), and only on
        // error: the request's own context is kept (its id, not the whole
        // context); the task's is looked up only when an error is rendered.
        let request_id = req
            .extensions()
            .get::<CorrelationContext>()
            .map(|c| c.correlation_id().clone());
        if let Some(e) = self.not_ready.take() {
            let request_id = request_id.or_else(current_id);
            let request_id = request_id.as_ref().map(CorrelationId::as_str);
            let response = Some(Error::render(e.as_ref(), request_id));
            return ErrorResponseFuture {
                state: State::NotReady { response },
            };
        }
        ErrorResponseFuture {
            state: State::Inner {
                inner: self.inner.call(req),
                request_id,
            },
        }
    }
}

pin_project! {
    /// Response future of [`ErrorResponseService`].
    pub struct ErrorResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = ErrorResponseProj]
    enum State<F> {
        // Waiting on the inner service.
        Inner {
            #[pin]
            inner: F,
            request_id: Option<CorrelationId>,
        },
        // The inner service failed readiness; this is its rendered error.
        NotReady {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<F, B, E> Future for ErrorResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ErrorResponseProj::NotReady { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r.map(Either::Right))),
                None => panic!("ErrorResponseFuture polled after completion"),
            },
            ErrorResponseProj::Inner { inner, request_id } => match inner.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(response.map(Either::Left))),
                Poll::Ready(Err(e)) => {
                    let e: BoxError = e.into();
                    let request_id = request_id.take().or_else(current_id);
                    let request_id = request_id.as_ref().map(CorrelationId::as_str);
                    let response = Error::render(e.as_ref(), request_id);
                    Poll::Ready(Ok(response.map(Either::Right)))
                }
            },
        }
    }
}

/// The correlation id of the task's context, if it runs inside one.
fn current_id() -> Option<CorrelationId> {
    CorrelationContext::current().map(|c| c.correlation_id().clone())
}

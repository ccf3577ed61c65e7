//! [`ServiceClient`]: the stack, the call path and the tower `Service` impl.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use forten_auth::ServiceToken;
use forten_core::BoxError;
use forten_core::circuit::{
    CircuitEvents, CircuitState, KeyedCircuitBreakerService, KeyedCircuitBreakers,
};
use forten_core::correlation::{CorrelationContext, PropagateCorrelation};
use forten_core::deadline::TimeoutService;
use forten_core::idempotency::AddIdempotencyKey;
use forten_core::ratelimit::{GovernorBackend, LimitKey, RateLimitBackend};
use forten_core::retry::Retry;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use pin_project_lite::pin_project;
use std::sync::atomic::Ordering;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::Oneshot;
use tower::util::{Either, MapErr};
use tower_service::Service;
use tracing::field::Empty;

use crate::ServiceClientBuilder;
use crate::error::ClientError;
use crate::fallback::{Fallback, FallbackContext};
use crate::request::RequestBuilder;
use crate::select::{CallInfo, KeyFn, Select, SelectShared};
use crate::total::TotalDeadline;
use crate::transport::{Transport, TransportError};

/// The request body inside the stack: buffered, so retries replay it.
pub(crate) type ReqBody = Full<Bytes>;

pub(crate) fn map_transport_error(e: TransportError) -> BoxError {
    Box::new(e)
}

/// The wire: the pooled client behind the in-flight limit, with the service
/// token when configured.
pub(crate) type Wire =
    Either<ServiceToken<Transport>, MapErr<Transport, fn(TransportError) -> BoxError>>;

/// One attempt: the per-attempt timeout around the wire.
pub(crate) type Attempt = TimeoutService<Wire>;

/// The whole stack, outermost first (see the crate docs for why this order).
pub(crate) type Stack = PropagateCorrelation<
    AddIdempotencyKey<
        TotalDeadline<Retry<Select<KeyedCircuitBreakerService<Attempt, Arc<str>, KeyFn<ReqBody>>>>>,
    >,
>;

pub(crate) struct ClientShared {
    pub(crate) service: Arc<str>,
    pub(crate) select: Arc<SelectShared>,
    pub(crate) breakers: KeyedCircuitBreakers<Arc<str>>,
    pub(crate) fallback: Option<Fallback>,
    pub(crate) rate_limit: Option<GovernorBackend>,
    pub(crate) max_request_body: usize,
    pub(crate) default_headers: HeaderMap,
    /// Call durations by method and status.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: forten_core::metrics::RequestMetrics,
}

/// An HTTP client for one upstream service with the whole resilience stack;
/// see the [crate docs](crate) for the stack and an example.
///
/// Cheap to clone (clones share the connection pool, the breakers, the retry
/// budget and the fallback cache). Also a tower
/// `Service<http::Request<B>>` answering `http::Response<Bytes>`, so you can
/// put layers of your own around it.
#[derive(Clone)]
pub struct ServiceClient {
    pub(crate) stack: Stack,
    pub(crate) shared: Arc<ClientShared>,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.shared.service)
            .field("instances", &self.shared.select.instance_ids())
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// Starts building a client for the service `service` (the name it is
    /// registered under; also the audience of its service token).
    pub fn builder(service: impl Into<String>) -> ServiceClientBuilder {
        ServiceClientBuilder::new(service)
    }

    /// The target service's name.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// A request of any method to `path` (plus query, e.g. `/events?page=2`),
    /// relative to the chosen instance's base URL.
    pub fn request(&self, method: Method, path: impl AsRef<str>) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, path.as_ref())
    }

    /// A GET request.
    pub fn get(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A POST request (an `Idempotency-Key` is added unless it has one).
    pub fn post(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// A PUT request.
    pub fn put(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A PATCH request (an `Idempotency-Key` is added unless it has one).
    pub fn patch(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// A DELETE request.
    pub fn delete(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// The state of `instance`'s breaker (`instance` is the instance id: the
    /// base URL in base-URL mode), `None` before its first call.
    pub fn circuit_state(&self, instance: &str) -> Option<CircuitState> {
        self.shared.breakers.state(&Arc::from(instance))
    }

    /// Every breaker's transitions and rejections (the event's name is
    /// `<breaker name>/<instance id>`).
    pub fn subscribe_circuit_events(&self) -> CircuitEvents {
        self.shared.breakers.subscribe()
    }

    /// The per-instance breakers: look one up to force it open, reset it or
    /// read its metrics.
    pub fn circuit_breakers(&self) -> &KeyedCircuitBreakers<Arc<str>> {
        &self.shared.breakers
    }

    /// The ids of the instances known now.
    pub fn instances(&self) -> Vec<String> {
        self.shared
            .select
            .instance_ids()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Turns a non-2xx response into [`ClientError::Status`], keeping its
    /// JSON:API error document when it has one.
    pub fn check_status(&self, response: Response<Bytes>) -> Result<Response<Bytes>, ClientError> {
        check_status(&self.shared.service, response)
    }

    /// Sends a request built by hand through the stack. Its URI's path and
    /// query are used; scheme and authority are the chosen instance's.
    ///
    /// The future is a named type, [`ResponseFuture`].
    pub fn execute(&self, req: Request<Full<Bytes>>) -> ResponseFuture {
        self.clone().execute_owned(req)
    }

    /// [`execute`](Self::execute) on a client the caller owns (a clone it
    /// made, or the one [`RequestBuilder::build`] hands back): the stack is
    /// moved into the call instead of cloned again.
    pub fn execute_owned(self, mut req: Request<Full<Bytes>>) -> ResponseFuture {
        let ServiceClient { stack, shared } = self;
        let shared = &shared;
        let span = tracing::info_span!(
            "forten_client.call",
            service = %shared.service,
            correlation_id = Empty,
            method = %req.method(),
            path = req.uri().path(),
            instance = Empty,
            attempts = Empty,
            status = Empty,
            outcome = Empty,
            latency_ms = Empty,
        );
        for (name, value) in &shared.default_headers {
            if !req.headers().contains_key(name) {
                req.headers_mut().insert(name, value.clone());
            }
        }
        // What only the span reads is skipped when nobody records the span.
        let info = if span.is_disabled() {
            None
        } else {
            // The context this call propagates, decided here so the span
            // carries its correlation id (DESIGN 4.1); the layer sends its child.
            if let Some(ctx) = req.extensions().get::<CorrelationContext>() {
                span.record("correlation_id", ctx.correlation_id().as_str());
            } else {
                let ctx =
                    CorrelationContext::current().unwrap_or_else(CorrelationContext::new_root);
                span.record("correlation_id", ctx.correlation_id().as_str());
                req.extensions_mut().insert(ctx);
            }
            let info = Arc::new(CallInfo::default());
            req.extensions_mut().insert(Arc::clone(&info));
            Some(info)
        };
        let call = Call {
            shared: Arc::clone(shared),
            started: Instant::now(),
            method: req.method().clone(),
            fallback: shared.fallback.as_ref().map(|_| {
                Box::new(FallbackKey {
                    path_and_query: req
                        .uri()
                        .path_and_query()
                        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
                    credential: req.headers().get(http::header::AUTHORIZATION).cloned(),
                })
            }),
            info,
            span,
        };
        if let Some(limiter) = &shared.rate_limit {
            let decision = limiter.check(&LimitKey::Global).into_inner();
            if let Ok(decision) = decision {
                if !decision.allowed {
                    limiter.policy().record_refusal();
                    let refused = ClientError::Resilience(forten_core::Error::RateLimited {
                        retry_after: decision.retry_after,
                    });
                    return ResponseFuture {
                        state: CallState::Refused {
                            error: Some(refused),
                        },
                        call: Some(call),
                    };
                }
            }
        }
        let future = {
            let _entered = call.span.enter();
            stack.oneshot(req)
        };
        ResponseFuture {
            state: CallState::Running { future },
            call: Some(call),
        }
    }

    /// A call that starts (its span, its rate-limit decision, the stack) when
    /// the future is first polled, in whatever span and task polls it: what
    /// [`RequestBuilder::send`] hands back, so `.send().instrument(span)`
    /// makes `span` the call's parent.
    pub(crate) fn deferred(self, req: Request<Full<Bytes>>) -> ResponseFuture {
        ResponseFuture {
            state: CallState::Deferred {
                start: Some((self, req)),
            },
            call: None,
        }
    }

    pub(crate) fn max_request_body(&self) -> usize {
        self.shared.max_request_body
    }
}

/// Lets the client sit under layers of your own. The body is buffered
/// (up to [`max_request_body`](crate::ServiceClientBuilder::max_request_body))
/// so retries can replay it; then the call goes through
/// [`ServiceClient::execute`]. Always ready: readiness is decided per attempt
/// inside the stack.
impl<B> Service<Request<B>> for ServiceClient
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Bytes>;
    type Error = ClientError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, ClientError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let client = self.clone();
        Box::pin(async move {
            let limit = client.max_request_body();
            let (parts, body) = req.into_parts();
            let bytes = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        ClientError::RequestTooLarge { limit }
                    } else {
                        ClientError::InvalidRequest {
                            detail: format!("reading the request body failed: {e}"),
                        }
                    }
                })?
                .to_bytes();
            client
                .execute(Request::from_parts(parts, Full::new(bytes)))
                .await
        })
    }
}

/// What a call needs after the stack answered.
struct Call {
    shared: Arc<ClientShared>,
    started: Instant,
    method: Method,
    /// What the fallback keys its answers by, when one is configured (boxed:
    /// every layer above moves this future, and most clients have none).
    fallback: Option<Box<FallbackKey>>,
    /// What the attempts did, when the span is recorded.
    info: Option<Arc<CallInfo>>,
    span: tracing::Span,
}

/// What a fallback keeps a call's answer under.
struct FallbackKey {
    /// Path and query.
    path_and_query: String,
    /// The caller's `authorization`: stale answers are kept per credential.
    credential: Option<http::HeaderValue>,
}

pin_project! {
    /// The future of [`ServiceClient::execute`]: the call through the stack,
    /// then the fallback and the span's fields.
    ///
    /// A named type rather than an `async fn`: an `async` block holding the
    /// stack's future directly fails the `Send` check (rust#64552, the
    /// layers' `Into<BoxError>` bounds), this struct does not.
    pub struct ResponseFuture {
        #[pin]
        state: CallState,
        call: Option<Call>,
    }
}

pin_project! {
    #[project = CallStateProj]
    enum CallState {
        Deferred { start: Option<(ServiceClient, Request<ReqBody>)> },
        Running { #[pin] future: Oneshot<Stack, Request<ReqBody>> },
        Refused { error: Option<ClientError> },
    }
}

/// The error of a [`ResponseFuture`] polled again after it answered.
fn polled_after_completion() -> ClientError {
    ClientError::InvalidRequest {
        detail: "the call's future was polled after completion".to_owned(),
    }
}

impl ResponseFuture {
    /// A call that failed before it started: answers `error` when polled.
    pub(crate) fn failed(error: ClientError) -> Self {
        ResponseFuture {
            state: CallState::Refused { error: Some(error) },
            call: None,
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Bytes>, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let CallStateProj::Deferred { start } = self.as_mut().project().state.project() {
            let started = match start.take() {
                Some((client, req)) => client.execute_owned(req),
                None => ResponseFuture::failed(polled_after_completion()),
            };
            self.set(started);
        }
        let this = self.project();
        let result = match this.state.project() {
            // replaced by the started call just above
            CallStateProj::Deferred { .. } => Err(polled_after_completion()),
            CallStateProj::Running { future } => {
                let polled = match this.call.as_ref() {
                    Some(call) => {
                        let _entered = call.span.enter();
                        future.poll(cx)
                    }
                    None => future.poll(cx),
                };
                match polled {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result.map_err(|e| {
                        let service = this.call.as_ref().map_or("", |c| &*c.shared.service);
                        ClientError::from_stack(service, e)
                    }),
                }
            }
            CallStateProj::Refused { error } => {
                Err(error.take().unwrap_or_else(polled_after_completion))
            }
        };
        Poll::Ready(match this.call.take() {
            Some(call) => call.finish(result),
            None => result,
        })
    }
}

impl Call {
    /// Applies the fallback and fills in the span.
    fn finish(
        self,
        result: Result<Response<Bytes>, ClientError>,
    ) -> Result<Response<Bytes>, ClientError> {
        // One clock read for the metric and the span (a read is tens of ns
        // on a VM).
        let elapsed = self.started.elapsed();
        #[cfg(feature = "metrics")]
        self.shared.metrics.record(
            forten_core::metrics::method_label(&self.method).into(),
            result.as_ref().ok().map(Response::status),
            elapsed,
        );
        let mut outcome = match &result {
            Ok(r) if r.status().is_server_error() => "upstream_error",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        let result = match (&self.shared.fallback, &self.fallback) {
            (Some(fallback), Some(key)) => match result {
                Ok(response) if !response.status().is_server_error() => {
                    fallback.record(
                        &self.method,
                        &key.path_and_query,
                        key.credential.as_ref(),
                        &response,
                    );
                    Ok(response)
                }
                other => {
                    let ctx = FallbackContext {
                        service: &self.shared.service,
                        method: &self.method,
                        path_and_query: &key.path_and_query,
                        credential: key.credential.as_ref(),
                        error: other.as_ref().err(),
                        response: other.as_ref().ok(),
                    };
                    match fallback.answer(&ctx) {
                        Some(answer) => {
                            outcome = "fallback";
                            tracing::debug!(parent: &self.span, error = ?ctx.error, "answered by the fallback");
                            Ok(answer)
                        }
                        None => other,
                    }
                }
            },
            _ => result,
        };
        let span = &self.span;
        if span.is_disabled() {
            return result;
        }
        if let Some(info) = &self.info {
            if let Some(instance) = info.last_instance() {
                span.record("instance", &*instance);
            }
            span.record("attempts", info.attempts.load(Ordering::Relaxed));
        }
        if let Ok(response) = &result {
            span.record("status", response.status().as_u16());
        }
        span.record("outcome", outcome);
        span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
        result
    }
}

/// [`ServiceClient::check_status`] for the service named `service`.
pub(crate) fn check_status(
    service: &str,
    response: Response<Bytes>,
) -> Result<Response<Bytes>, ClientError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let document = forten_core::error::ErrorDocument::from_slice(&body).ok();
    Err(ClientError::Status {
        service: service.to_owned(),
        status: parts.status,
        document,
        headers: Box::new(parts.headers),
        body,
    })
}

//! The gateway's handlers: routing `/api/v1/...` to the services through
//! forten-client, and the dashboard that degrades instead of failing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use forten_client::{ClientError, RequestBuilder, ServiceClient};
use forten_core::circuit::CircuitBreaker;
use forten_core::correlation::CorrelationContext;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

use crate::runtime::USER_TOKEN_HEADER;
use crate::runtime::input::{ApiError, MAX_BODY_BYTES};

/// [`USER_TOKEN_HEADER`] as a ready header name: a name parsed from a string
/// that is not one of the standard headers is a heap copy every time.
const USER_TOKEN: HeaderName = HeaderName::from_static(USER_TOKEN_HEADER);

/// One service as the gateway calls it: forten-client's [`ServiceClient`]
/// (discovery, retries, a breaker per instance) behind a breaker for the
/// service as a whole. The per-instance breakers route around a bad
/// instance; the service breaker opens when calls to the service keep
/// failing whatever the instance, including when no instance is registered
/// (a stopped service), so callers get a fast 503 CIRCUIT_OPEN with
/// Retry-After instead of waiting on retries.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The client.
    pub client: ServiceClient,
    /// The service-wide breaker.
    pub breaker: CircuitBreaker,
}

/// Why a call through an [`Upstream`] failed.
#[derive(Debug)]
pub enum Failure {
    /// The client failed (its error says how).
    Client(ClientError),
    /// The service breaker refused the call, or the answer was unusable.
    Other(forten_core::BoxError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Client(e) => e.fmt(f),
            Failure::Other(e) => e.fmt(f),
        }
    }
}

impl Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Client(e) => upstream_failure(&e),
            Failure::Other(e) => {
                let rid = request_id();
                forten_core::Error::render(e.as_ref(), rid.as_deref()).into_response()
            }
        }
    }
}

impl Upstream {
    /// Sends `call` through the service breaker and the client's stack; any
    /// status is a response.
    pub async fn send(&self, call: RequestBuilder) -> Result<http::Response<Bytes>, Failure> {
        let (client, req) = call.build().map_err(Failure::Client)?;
        match self
            .breaker
            .layer()
            .layer(Once(Some(client)))
            .oneshot(req)
            .await
        {
            Ok(response) => Ok(response),
            Err(e) => match e.downcast::<ClientError>() {
                Ok(client_error) => Err(Failure::Client(*client_error)),
                Err(other) => Err(Failure::Other(other)),
            },
        }
    }
}

/// The client as a service for one call: [`ServiceClient::execute_owned`]
/// rather than the client's own `Service` impl, which boxes its future and
/// buffers the body again; and the builder's clone of the client moves into
/// the call instead of being cloned once more.
struct Once(Option<ServiceClient>);

impl tower::Service<http::Request<http_body_util::Full<Bytes>>> for Once {
    type Response = http::Response<Bytes>;
    type Error = ClientError;
    type Future = futures::future::Either<
        forten_client::ResponseFuture,
        std::future::Ready<Result<http::Response<Bytes>, ClientError>>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ClientError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<http_body_util::Full<Bytes>>) -> Self::Future {
        match self.0.take() {
            Some(client) => futures::future::Either::Left(client.execute_owned(req)),
            None => futures::future::Either::Right(std::future::ready(Err(
                ClientError::InvalidRequest {
                    detail: "a one-call client was called twice".to_owned(),
                },
            ))),
        }
    }
}

/// The three services.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// auth-service.
    pub auth: Upstream,
    /// events-service.
    pub events: Upstream,
    /// notification-service.
    pub notifications: Upstream,
    /// How long one dashboard part may take.
    pub dashboard_part_timeout: Duration,
}

fn request_id() -> Option<String> {
    CorrelationContext::current().map(|c| c.correlation_id().to_string())
}

/// The answer for a failed upstream call: an upstream's own error document
/// passes through with its status; a failure to reach the service at all
/// (no instance, connection refused, retries exhausted on those) is 503
/// UPSTREAM_UNAVAILABLE (the service is down, not misbehaving); an open
/// circuit is 503 CIRCUIT_OPEN with Retry-After; a timeout 504.
pub fn upstream_failure(e: &ClientError) -> Response {
    let rid = request_id();
    let mut response = e.to_response(rid.as_deref());
    if !matches!(e, ClientError::Status { .. }) && response.status() == StatusCode::BAD_GATEWAY {
        let core = forten_core::Error::UpstreamUnavailable {
            detail: format!("{e}; the service may be down, try again shortly"),
        };
        let mut doc = core.to_document(rid.as_deref());
        for object in &mut doc.errors {
            "503".clone_into(&mut object.status);
            "Service Unavailable".clone_into(&mut object.title);
        }
        response = doc.to_response();
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    tracing::warn!(error = %e, status = %response.status(), "upstream call failed");
    response.into_response()
}

/// The user token the gateway's JWT layer accepted (the raw `Bearer` value).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Forwards `method path` with `body` to `client`; passes the answer back
/// (status, content type, body, Retry-After, Location).
pub async fn forward(
    up: &Upstream,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut call = up.client.request(method, path_and_query);
    if let Some(token) = bearer(headers) {
        call = call.header(USER_TOKEN, token);
    }
    if !body.is_empty() {
        call = call
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    match up.send(call).await {
        Ok(upstream) => {
            let (parts, body) = upstream.into_parts();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = parts.status;
            for name in [header::CONTENT_TYPE, header::RETRY_AFTER, header::LOCATION] {
                if let Some(v) = parts.headers.get(&name) {
                    response.headers_mut().insert(name, v.clone());
                }
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Reads a request's body (at most [`MAX_BODY_BYTES`]; a JSON:API 413 beyond).
async fn body_of(req: Request) -> Result<(http::request::Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError(forten_core::Error::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            })
        })?;
    Ok((parts, bytes))
}

/// Proxies `/api/v1/<prefix>...` to `client` as `<to>...`.
async fn proxy(up: &Upstream, from: &str, to: &str, req: Request) -> Response {
    let (parts, body) = match body_of(req).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let rest = pq.strip_prefix(from).unwrap_or("");
    let target = format!("{to}{rest}");
    forward(up, parts.method, &target, &parts.headers, body).await
}

/// `POST /api/v1/auth/signup` -> auth-service `POST /users`.
pub(super) async fn signup(State(up): State<Arc<Upstreams>>, req: Request) -> Response {
    proxy(&up.auth, "/api/v1/auth/signup", "/users", req).await
}

/// `POST /api/v1/auth/login` -> auth-service `POST /sessions`.
pub(super) async fn login(State(up): State<Arc<Upstreams>>, req: Request) -> Response {
    proxy(&up.auth, "/api/v1/auth/login", "/sessions", req).await
}

/// `GET /api/v1/auth/me` -> auth-service `GET /users/me`.
pub(super) async fn me(State(up): State<Arc<Upstreams>>, req: Request) -> Response {
    proxy(&up.auth, "/api/v1/auth/me", "/users/me", req).await
}

/// `/api/v1/events...` -> events-service `/events...`.
pub(super) async fn events(State(up): State<Arc<Upstreams>>, req: Request) -> Response {
    proxy(&up.events, "/api/v1/events", "/events", req).await
}

/// `/api/v1/notifications...` -> notification-service `/notifications...`.
pub(super) async fn notifications(State(up): State<Arc<Upstreams>>, req: Request) -> Response {
    proxy(
        &up.notifications,
        "/api/v1/notifications",
        "/notifications",
        req,
    )
    .await
}

/// One dashboard part: its `data`, or why it is missing.
async fn part(ups: &Upstreams, up: &Upstream, path: &str, token: Option<&str>) -> Option<Value> {
    let mut call = up.client.get(path).timeout(ups.dashboard_part_timeout);
    if let Some(t) = token {
        call = call.header(USER_TOKEN, t);
    }
    let service = up.client.service();
    let answer = match up.send(call).await {
        Ok(response) => up.client.check_status(response).map_err(Failure::Client),
        Err(e) => Err(e),
    };
    let parsed = answer.and_then(|r| {
        serde_json::from_slice::<Value>(r.body())
            .map_err(|e| Failure::Other(format!("{service} answered invalid JSON: {e}").into()))
    });
    match parsed {
        Ok(mut v) => Some(v["data"].take()),
        Err(e) => {
            tracing::warn!(service, path, error = %e, "dashboard part missing");
            None
        }
    }
}

/// `GET /api/v1/dashboard`: me, my organization's events and my unread
/// notifications, fetched concurrently. A part whose service is down, whose
/// circuit is open or that timed out is `null` and named in `meta.degraded`;
/// the answer is still 200.
pub(super) async fn dashboard(State(up): State<Arc<Upstreams>>, headers: HeaderMap) -> Response {
    let token = bearer(&headers);
    let (me, events, notifications) = tokio::join!(
        part(&up, &up.auth, "/users/me", token),
        part(&up, &up.events, "/events", token),
        part(&up, &up.notifications, "/notifications?unread=true", token),
    );
    let degraded: Vec<&str> = [
        ("me", &me),
        ("events", &events),
        ("notifications", &notifications),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_none())
    .map(|(name, _)| name)
    .collect();
    let mut response = axum::Json(json!({
        "data": { "me": me, "events": events, "notifications": notifications },
        "meta": { "degraded": degraded },
    }))
    .into_response();
    if !degraded.is_empty() {
        response
            .headers_mut()
            .insert("x-degraded", HeaderValue::from_static("true"));
    }
    response
}

//! The gateway's handlers: routing `/api/v1/...` to the services through
//! forten-client, and the dashboard that degrades instead of failing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use forten_auth::UserToken;
use forten_client::{ClientError, RequestBuilder, ServiceClient};
use forten_core::circuit::{CircuitBreaker, HttpClassifier};
use forten_core::correlation::CorrelationContext;
use futures::FutureExt;
use futures::future::Either;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

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
    ///
    /// The request is built before the returned future is: the future holds
    /// only the call in flight, not the builder too (an `async fn` keeps its
    /// arguments for its whole life, and this future sits inside every
    /// handler's, which each poll moves).
    pub fn send(
        &self,
        call: RequestBuilder,
    ) -> impl Future<Output = Result<http::Response<Bytes>, Failure>> + Send + use<> {
        // Combinators, not an `async` block: awaiting a future the block
        // captured would move it into a second slot of the block's own.
        match call.build() {
            Ok((client, req)) => Either::Left(
                // The breaker's own `run`, not its layer around a one-call
                // service: no `Oneshot` holding the client and the request
                // beside the call, one level less for every poll and move.
                self.breaker
                    .run(HttpClassifier, move || client.execute_owned(req))
                    .map(|result| {
                        result.map_err(|e| match e.downcast::<ClientError>() {
                            Ok(client_error) => Failure::Client(*client_error),
                            Err(other) => Failure::Other(other),
                        })
                    }),
            ),
            Err(e) => Either::Right(std::future::ready(Err(Failure::Client(e)))),
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

/// Forwards the request of `parts` (its method, the caller's user token) to
/// `path_and_query` on `up`, with `body`; passes the answer back (status,
/// content type, body, Retry-After, Location). The call is built at once
/// from the borrowed path and parts; the future owns what it needs.
pub fn forward(
    up: &Upstream,
    path_and_query: &str,
    parts: &http::request::Parts,
    body: Bytes,
) -> impl Future<Output = Response> + Send + use<> {
    let mut call = up.client.request(parts.method.clone(), path_and_query);
    // The token the JWT layer accepted, kept as a header value: no second
    // parse of `Authorization`, no copy. The public routes (signup, login)
    // have no JWT layer: a bearer token sent there still goes on.
    if let Some(token) = UserToken::from_extensions(&parts.extensions) {
        call = call.header(USER_TOKEN, token.header_value().clone());
    } else if let Some(token) = bearer(&parts.headers) {
        call = call.header(USER_TOKEN, token);
    }
    if !body.is_empty() {
        call = call
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    up.send(call).map(|answer| match answer {
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
    })
}

/// Which upstream a proxied route goes to.
type Pick = fn(&Upstreams) -> &Upstream;

/// Proxies `/api/v1/<prefix>...` to the upstream `pick` names as `<to>...`:
/// reads the body (at most [`MAX_BODY_BYTES`]; a JSON:API 413 beyond), then
/// [`forward`]s. A plain function returning the future, so the request
/// (given here, taken apart at once) is not kept inside it beside the call.
fn proxy(
    ups: Arc<Upstreams>,
    pick: Pick,
    from: &'static str,
    to: &'static str,
    req: Request,
) -> impl Future<Output = Response> + Send + 'static {
    // `<to>` plus what follows `<from>` in the request's path and query.
    let send = move |parts: &http::request::Parts, body: Bytes| {
        let pq = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        let target = format!("{to}{}", pq.strip_prefix(from).unwrap_or(""));
        forward(pick(&ups), &target, parts, body)
    };
    let (parts, body) = req.into_parts();
    // No body to read (a GET, say): forwarded at once, and the future is
    // the call's alone.
    if axum::body::HttpBody::is_end_stream(&body) {
        return Either::Left(send(&parts, Bytes::new()));
    }
    // A combinator, not an `async` block: a block keeps what it captured
    // (the request's parts) beside the call it awaits, so every route's
    // future, a GET's too, would be that much larger; `then` holds the
    // parts only while the body is read, in the space the call takes later.
    Either::Right(
        axum::body::to_bytes(body, MAX_BODY_BYTES).then(move |read| match read {
            Ok(body) => Either::Left(send(&parts, body)),
            Err(_) => Either::Right(std::future::ready(
                ApiError(forten_core::Error::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                })
                .into_response(),
            )),
        }),
    )
}

/// `POST /api/v1/auth/signup` -> auth-service `POST /users`.
pub(super) fn signup(
    State(up): State<Arc<Upstreams>>,
    req: Request,
) -> impl Future<Output = Response> + Send {
    proxy(up, |u| &u.auth, "/api/v1/auth/signup", "/users", req)
}

/// `POST /api/v1/auth/login` -> auth-service `POST /sessions`.
pub(super) fn login(
    State(up): State<Arc<Upstreams>>,
    req: Request,
) -> impl Future<Output = Response> + Send {
    proxy(up, |u| &u.auth, "/api/v1/auth/login", "/sessions", req)
}

/// `GET /api/v1/auth/me` -> auth-service `GET /users/me`.
pub(super) fn me(
    State(up): State<Arc<Upstreams>>,
    req: Request,
) -> impl Future<Output = Response> + Send {
    proxy(up, |u| &u.auth, "/api/v1/auth/me", "/users/me", req)
}

/// `/api/v1/events...` -> events-service `/events...`.
pub(super) fn events(
    State(up): State<Arc<Upstreams>>,
    req: Request,
) -> impl Future<Output = Response> + Send {
    proxy(up, |u| &u.events, "/api/v1/events", "/events", req)
}

/// `/api/v1/notifications...` -> notification-service `/notifications...`.
pub(super) fn notifications(
    State(up): State<Arc<Upstreams>>,
    req: Request,
) -> impl Future<Output = Response> + Send {
    proxy(
        up,
        |u| &u.notifications,
        "/api/v1/notifications",
        "/notifications",
        req,
    )
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

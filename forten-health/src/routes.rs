//! The tower service answering `/health`, `/health/live` and `/health/ready`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::monitor::{Endpoint, HealthMonitor};
use crate::report::HEALTH_JSON_CONTENT_TYPE;

/// A tower `Service` answering the health endpoints from the monitor's cache.
///
/// Every answer is immediate (it never waits on a check): `application/health+json`,
/// `Cache-Control: no-store`, 200 for pass and warn, 503 for fail. `GET` and `HEAD` only
/// (405 otherwise); any other path is 404.
///
/// By default it matches the full paths, for an axum fallback or a `route_service` per path.
/// [`nested`](Self::nested) matches the paths left after axum's `nest_service("/health", ..)`
/// strips its prefix (`/`, `/live`, `/ready`).
///
/// ```
/// use forten_health::HealthMonitor;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let monitor = HealthMonitor::builder("auth-service", "1.0.0").build().unwrap();
///
/// // axum: `Router::new().fallback_service(monitor.routes())`
/// //   or  `Router::new().nest_service("/health", monitor.routes().nested())`
/// let request = http::Request::get("/health/live").body(()).unwrap();
/// let response = monitor.routes().oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["content-type"], "application/health+json");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HealthRoutes {
    monitor: HealthMonitor,
    nested: bool,
}

impl HealthRoutes {
    pub(crate) fn new(monitor: HealthMonitor) -> Self {
        HealthRoutes {
            monitor,
            nested: false,
        }
    }

    /// Matches `/` (or the empty path), `/live` and `/ready`: for axum's
    /// `nest_service("/health", ...)`, which strips the prefix.
    pub fn nested(mut self) -> Self {
        self.nested = true;
        self
    }

    fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let rest = if self.nested {
            path
        } else {
            path.strip_prefix("/health")?
        };
        match rest {
            "" | "/" => Some(Endpoint::Health),
            "/live" | "/live/" => Some(Endpoint::Live),
            "/ready" | "/ready/" => Some(Endpoint::Ready),
            _ => None,
        }
    }

    /// Answers one request (what `call` does, without the future).
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let Some(endpoint) = self.endpoint(path) else {
            return plain(StatusCode::NOT_FOUND);
        };
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let report = self.monitor.report(endpoint);
        let Ok(body) = serde_json::to_vec(&report) else {
            return plain(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = report.status.http_status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(HEALTH_JSON_CONTENT_TYPE),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<B> tower_service::Service<Request<B>> for HealthRoutes {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.uri().path())))
    }
}

//! [`ClientError`] and [`ClientBuildError`].

use std::time::Duration;

use bytes::Bytes;
use forten_core::BoxError;
use forten_core::error::{ErrorDocument, JSON_API_CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::transport::TransportError;

/// Why a call through a [`ServiceClient`](crate::ServiceClient) failed.
///
/// A concrete type (not a boxed error), so it is `Send + Sync + 'static` and
/// easy to match. It turns into forten-core's [`Error`](forten_core::Error)
/// (`From`), and [`to_response`](Self::to_response) renders it as the JSON:API
/// document a gateway should answer with: an upstream's own error document
/// passes through with its status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The upstream answered with a status outside 2xx (from
    /// [`send_json`](crate::RequestBuilder::send_json) or
    /// [`ServiceClient::check_status`](crate::ServiceClient::check_status)). `document` is its
    /// JSON:API error document when the body is one.
    #[error("{service} answered {status}{}", fmt_detail(document.as_ref()))]
    Status {
        /// The target service.
        service: String,
        /// The upstream's status.
        status: StatusCode,
        /// The upstream's JSON:API error document, if the body is one.
        document: Option<ErrorDocument>,
        /// The response headers (boxed: they are rarely read and large).
        headers: Box<HeaderMap>,
        /// The raw response body.
        body: Bytes,
    },
    /// A resilience layer refused or gave up: deadline passed, circuit open,
    /// retries exhausted, rate limited, no instance available. The inner error
    /// carries the HTTP mapping (`status()`, `code()`, `Retry-After`).
    #[error("{0}")]
    Resilience(#[source] forten_core::Error),
    /// Talking to the upstream failed and the call was not retried (e.g. a
    /// POST without an idempotency key whose connection broke mid-way).
    #[error("transport error talking to {service}: {source}")]
    Transport {
        /// The target service.
        service: String,
        /// The underlying error (hyper / io in its source chain).
        source: BoxError,
    },
    /// The upstream's response body exceeded the client's limit
    /// ([`max_response_body`](crate::ServiceClientBuilder::max_response_body)).
    #[error("the response of {service} is larger than the {limit}-byte limit")]
    ResponseTooLarge {
        /// The target service.
        service: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body exceeded the client's limit
    /// ([`max_request_body`](crate::ServiceClientBuilder::max_request_body)).
    #[error("the request body is larger than the {limit}-byte limit")]
    RequestTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request could not be built (bad path, header, query or JSON body).
    #[error("invalid request: {detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
    },
    /// A 2xx response whose body is not the expected JSON.
    #[error("the {status} response of {service} is not the expected JSON: {source}")]
    Decode {
        /// The target service.
        service: String,
        /// The response status.
        status: StatusCode,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Anything else the stack reported, e.g. minting the service token failed.
    #[error("call to {service} failed: {source}")]
    Other {
        /// The target service.
        service: String,
        /// The error.
        source: BoxError,
    },
}

fn fmt_detail(document: Option<&ErrorDocument>) -> String {
    document
        .and_then(|d| d.errors.first())
        .map_or_else(String::new, |e| format!(": {} ({})", e.detail, e.code))
}

impl ClientError {
    /// Sorts an error of the stack into its variant.
    pub(crate) fn from_stack(service: &str, err: BoxError) -> Self {
        let err = match err.downcast::<forten_core::Error>() {
            Ok(e) => return ClientError::Resilience(*e),
            Err(err) => err,
        };
        match err.downcast::<TransportError>() {
            Ok(t) => match *t {
                TransportError::ResponseTooLarge { limit } => ClientError::ResponseTooLarge {
                    service: service.to_owned(),
                    limit,
                },
                other => ClientError::Transport {
                    service: service.to_owned(),
                    source: Box::new(other),
                },
            },
            Err(err) => ClientError::Other {
                service: service.to_owned(),
                source: err,
            },
        }
    }

    /// The HTTP status the failure maps to (the upstream's own for [`Status`](Self::Status)).
    pub fn status(&self) -> StatusCode {
        match self {
            ClientError::Status { status, .. } => *status,
            ClientError::Resilience(e) => e.status(),
            ClientError::Transport { .. }
            | ClientError::ResponseTooLarge { .. }
            | ClientError::Decode { .. } => StatusCode::BAD_GATEWAY,
            ClientError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ClientError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ClientError::Other { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The upstream's JSON:API error document, for [`Status`](Self::Status).
    pub fn document(&self) -> Option<&ErrorDocument> {
        match self {
            ClientError::Status { document, .. } => document.as_ref(),
            _ => None,
        }
    }

    /// The forten-core error this maps to, without consuming `self` (see the
    /// `From` impl for the mapping).
    fn to_core(&self) -> Option<forten_core::Error> {
        use forten_core::Error;
        Some(match self {
            ClientError::Resilience(_) | ClientError::Other { .. } => return None,
            ClientError::Status {
                service,
                status,
                document,
                headers,
                ..
            } => {
                let detail = document
                    .as_ref()
                    .and_then(|d| d.errors.first())
                    .map_or_else(
                        || format!("{service} answered {status}"),
                        |e| e.detail.clone(),
                    );
                match status.as_u16() {
                    400 => Error::BadRequest {
                        detail,
                        pointer: pointer(document.as_ref()),
                    },
                    401 => Error::Unauthenticated { detail },
                    403 => Error::Forbidden { detail },
                    404 => Error::NotFound { detail },
                    409 => Error::Conflict { detail },
                    422 => Error::Validation {
                        detail,
                        pointer: pointer(document.as_ref()),
                    },
                    429 => Error::RateLimited {
                        retry_after: forten_core::retry::retry_after(headers),
                    },
                    504 => Error::Timeout { after: None },
                    _ => Error::UpstreamUnavailable { detail },
                }
            }
            ClientError::Transport { service, .. } => Error::UpstreamUnavailable {
                detail: format!("could not talk to {service}"),
            },
            ClientError::ResponseTooLarge { service, limit } => Error::UpstreamUnavailable {
                detail: format!("the response of {service} is larger than the {limit}-byte limit"),
            },
            ClientError::Decode {
                service, status, ..
            } => Error::UpstreamUnavailable {
                detail: format!("the {status} response of {service} is not the expected JSON"),
            },
            ClientError::RequestTooLarge { limit } => Error::PayloadTooLarge { limit: *limit },
            ClientError::InvalidRequest { detail } => Error::BadRequest {
                detail: detail.clone(),
                pointer: None,
            },
        })
    }

    /// The response a gateway should answer with: an upstream's JSON:API
    /// error document passes through with the upstream's status (and
    /// `Retry-After`); every other failure is rendered from its
    /// forten-core mapping, with `request_id` as `meta.requestId`.
    pub fn to_response(&self, request_id: Option<&str>) -> Response<Full<Bytes>> {
        if let ClientError::Status {
            status,
            document: Some(document),
            headers,
            ..
        } = self
        {
            let mut response = Response::new(Full::new(document.to_bytes()));
            *response.status_mut() = *status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_API_CONTENT_TYPE),
            );
            if let Some(v) = headers.get(header::RETRY_AFTER) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, v.clone());
            }
            return response;
        }
        match self {
            ClientError::Resilience(e) => e.to_response(request_id),
            other => match other.to_core() {
                Some(e) => e.to_response(request_id),
                None => forten_core::Error::render(other, request_id),
            },
        }
    }

    /// How long to wait before calling again, when the failure says.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Resilience(e) => e.retry_after(),
            ClientError::Status { headers, .. } => forten_core::retry::retry_after(headers),
            _ => None,
        }
    }
}

fn pointer(document: Option<&ErrorDocument>) -> Option<String> {
    document
        .and_then(|d| d.errors.first())
        .and_then(|e| e.source.as_ref())
        .map(|s| s.pointer.clone())
}

/// The mapping used by gateways that answer with forten-core's error model:
///
/// | ClientError | forten_core::Error |
/// |---|---|
/// | `Resilience(e)` | `e` itself |
/// | `Status` 400 / 401 / 403 / 404 / 409 / 422 / 429 / 504 | `BadRequest` / `Unauthenticated` / `Forbidden` / `NotFound` / `Conflict` / `Validation` / `RateLimited` / `Timeout`, detail from the upstream's document |
/// | `Status` (any other) | `UpstreamUnavailable` |
/// | `Transport`, `ResponseTooLarge`, `Decode`, `Other` | `UpstreamUnavailable` |
/// | `RequestTooLarge` | `PayloadTooLarge` |
/// | `InvalidRequest` | `BadRequest` |
///
/// To pass an upstream's document through unchanged, use
/// [`ClientError::to_response`] instead.
impl From<ClientError> for forten_core::Error {
    fn from(err: ClientError) -> Self {
        if let Some(mapped) = err.to_core() {
            return mapped;
        }
        match err {
            ClientError::Resilience(e) => e,
            ClientError::Other { service, .. } => forten_core::Error::UpstreamUnavailable {
                detail: format!("the call to {service} failed"),
            },
            _ => forten_core::Error::UpstreamUnavailable {
                detail: "the upstream call failed".to_owned(),
            },
        }
    }
}

/// A [`ServiceClientBuilder`](crate::ServiceClientBuilder) setting that
/// cannot work; the message says which and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    /// The service name is empty.
    #[error("the service name is empty: pass the name the upstream registers under")]
    EmptyServiceName,
    /// Neither `.base_url(..)` nor `.discovery(..)` was called.
    #[error("no upstream for {0}: call .base_url(\"http://host:port\") or .discovery(client)")]
    NoUpstream(String),
    /// Both `.base_url(..)` and `.discovery(..)` were called.
    #[error("both a base URL and discovery were given for {0}: choose one")]
    BothUpstreams(String),
    /// A base URL is not an absolute `http://` URL.
    #[error(
        "invalid base URL {url:?}: {reason}; expected e.g. \"http://127.0.0.1:3002\" (https is not supported: put TLS in a sidecar)"
    )]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A timeout is zero.
    #[error("{0} is zero: every call would fail at once")]
    ZeroTimeout(&'static str),
    /// The per-attempt timeout is longer than the total timeout.
    #[error(
        "the per-attempt timeout ({attempt:?}) exceeds the total timeout ({total:?}): no retry could ever run"
    )]
    AttemptLongerThanTotal {
        /// The per-attempt timeout.
        attempt: Duration,
        /// The total timeout.
        total: Duration,
    },
    /// A size or concurrency limit is zero.
    #[error("{0} is zero: nothing could ever be sent")]
    ZeroLimit(&'static str),
    /// A default header is invalid.
    #[error("invalid default header: {0}")]
    InvalidHeader(String),
    /// The stale-cache fallback was given a zero ttl or capacity.
    #[error("the stale-cache fallback needs a ttl and a capacity above zero")]
    InvalidFallback,
}

//! The error model: one error type for every condition forten's middlewares
//! produce, and its mapping to JSON:API error documents over HTTP (DESIGN 4.3).
//!
//! Middlewares return [`Error`] boxed as a [`BoxError`]; the
//! [`ErrorResponseLayer`] at the edge of a server turns any `Err` of the stack
//! into the right response, and client code can find the typed error again with
//! [`Error::find`].
//!
//! ```
//! use std::time::Duration;
//! use forten_core::Error;
//!
//! let err = Error::CircuitOpen { name: "events-service".into(), retry_after: Duration::from_secs(12) };
//! assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(err.code(), "CIRCUIT_OPEN");
//!
//! let response = err.to_response(Some("req-1"));
//! assert_eq!(response.headers()["retry-after"], "12");
//! assert_eq!(response.headers()["content-type"], "application/vnd.api+json");
//! ```

mod document;
mod layer;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

pub use document::{ErrorDocument, ErrorMeta, ErrorObject, ErrorSource, JSON_API_CONTENT_TYPE};
pub use layer::{ErrorResponseFuture, ErrorResponseLayer, ErrorResponseService};

use crate::BoxError;

/// Every failure forten's middlewares report, each mapped to an HTTP status,
/// a stable machine-readable `code` and the headers of DESIGN 4.3.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request's deadline or timeout passed before an answer came.
    #[error("deadline exceeded{}: the caller's budget ran out; raise the timeout or make the call cheaper", fmt_after(*.after))]
    Timeout {
        /// The budget that ran out, when known.
        after: Option<Duration>,
    },
    /// A circuit breaker rejected the call without sending it.
    #[error("circuit for {name} is open; retry after {}s", ceil_secs(*.retry_after))]
    CircuitOpen {
        /// The breaker's name (usually the upstream service or instance).
        name: Arc<str>,
        /// How long the circuit stays open.
        retry_after: Duration,
    },
    /// The upstream could not be reached or answered with a failure.
    #[error("upstream unavailable: {detail}")]
    UpstreamUnavailable {
        /// What failed, safe to show to a caller.
        detail: String,
    },
    /// Every allowed attempt failed; `source` is the last attempt's error.
    #[error("gave up after {attempts} attempts; last error: {source}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        source: BoxError,
    },
    /// A rate limit refused the request.
    #[error("rate limited{}", fmt_retry(*.retry_after))]
    RateLimited {
        /// When the caller may try again.
        retry_after: Option<Duration>,
    },
    /// A bulkhead or load shedder refused the request.
    #[error("overloaded: {detail}")]
    Overloaded {
        /// What is overloaded.
        detail: String,
    },
    /// Credentials are missing or invalid.
    #[error("unauthenticated: {detail}")]
    Unauthenticated {
        /// Why the credentials were refused (never echo the token itself).
        detail: String,
    },
    /// Valid credentials that lack the permission the request needs.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Which permission or scope is missing.
        detail: String,
    },
    /// Malformed input (400).
    #[error("bad request: {detail}")]
    BadRequest {
        /// What is wrong with the input.
        detail: String,
        /// JSON pointer to the offending field, when there is one.
        pointer: Option<String>,
    },
    /// Well-formed input that fails validation (422).
    #[error("invalid input: {detail}")]
    Validation {
        /// What is wrong with the input.
        detail: String,
        /// JSON pointer to the offending field, when there is one.
        pointer: Option<String>,
    },
    /// The request body is larger than the configured limit.
    #[error("payload too large: the limit is {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The requested resource does not exist.
    #[error("not found: {detail}")]
    NotFound {
        /// What was not found.
        detail: String,
    },
    /// The request conflicts with the resource's current state.
    #[error("conflict: {detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
    },
    /// The route requires an `Idempotency-Key` header and the request has none.
    #[error(
        "this endpoint requires an Idempotency-Key header; send a unique key per logical operation"
    )]
    IdempotencyKeyMissing,
    /// A request with the same idempotency key is still being processed.
    #[error("a request with this Idempotency-Key is still in flight; retry after it completes")]
    IdempotencyConflict,
    /// The idempotency key was used before with a different request payload.
    #[error(
        "this Idempotency-Key was already used with a different payload; use a new key for a new operation"
    )]
    IdempotencyKeyReused,
}

fn fmt_after(after: Option<Duration>) -> String {
    after.map_or_else(String::new, |d| format!(" after {}ms", d.as_millis()))
}

fn fmt_retry(retry: Option<Duration>) -> String {
    retry.map_or_else(String::new, |d| format!("; retry after {}s", ceil_secs(d)))
}

/// Whole seconds, rounded up, as `Retry-After` wants them.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Error {
    /// The HTTP status this error maps to (DESIGN 4.3).
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::CircuitOpen { .. } | Error::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpstreamUnavailable { .. } => StatusCode::BAD_GATEWAY,
            Error::RetriesExhausted { source, .. } => {
                if last_was_timeout(source.as_ref()) {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                }
            }
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::BadRequest { .. } | Error::IdempotencyKeyMissing => StatusCode::BAD_REQUEST,
            Error::Validation { .. } | Error::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict { .. } | Error::IdempotencyConflict => StatusCode::CONFLICT,
        }
    }

    /// The stable, machine-readable code of the JSON:API error object.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Timeout { .. } => "TIMEOUT",
            Error::CircuitOpen { .. } => "CIRCUIT_OPEN",
            Error::RetriesExhausted { source, .. } if last_was_timeout(source.as_ref()) => {
                "TIMEOUT"
            }
            Error::UpstreamUnavailable { .. } | Error::RetriesExhausted { .. } => {
                "UPSTREAM_UNAVAILABLE"
            }
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::Overloaded { .. } => "OVERLOADED",
            Error::Unauthenticated { .. } => "UNAUTHENTICATED",
            Error::Forbidden { .. } => "FORBIDDEN",
            Error::BadRequest { .. } | Error::Validation { .. } => "VALIDATION_ERROR",
            Error::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::Conflict { .. } => "CONFLICT",
            Error::IdempotencyKeyMissing => "IDEMPOTENCY_KEY_MISSING",
            Error::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Error::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
        }
    }

    /// A short human-readable summary of the status, the same for every
    /// occurrence of the code (JSON:API `title`).
    pub fn title(&self) -> &'static str {
        title_for(self.status())
    }

    /// How long the caller should wait before trying again, when the error says.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen { retry_after, .. } => Some(*retry_after),
            Error::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The JSON pointer to the offending input field, for validation errors.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            Error::BadRequest { pointer, .. } | Error::Validation { pointer, .. } => {
                pointer.as_deref()
            }
            _ => None,
        }
    }

    /// The JSON:API document describing this error, with `request_id` (the
    /// correlation id) as `meta.requestId`.
    pub fn to_document(&self, request_id: Option<&str>) -> ErrorDocument {
        let mut object = ErrorObject::new(self.status(), self.code(), self.to_string());
        object.source = self.pointer().map(|p| ErrorSource {
            pointer: p.to_owned(),
        });
        object.meta.request_id = request_id.map(str::to_owned);
        ErrorDocument {
            errors: vec![object],
        }
    }

    /// The full HTTP response for this error: status, JSON:API body,
    /// `content-type: application/vnd.api+json`, and `Retry-After` /
    /// `WWW-Authenticate` where DESIGN 4.3 asks for them.
    pub fn to_response(&self, request_id: Option<&str>) -> Response<Full<Bytes>> {
        let mut response = self.to_document(request_id).to_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(ceil_secs(after)));
        }
        if matches!(self, Error::Unauthenticated { .. }) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }

    /// Finds a forten [`Error`] in `err` or anywhere in its `source()` chain.
    ///
    /// ```
    /// use forten_core::{BoxError, Error};
    /// let boxed: BoxError = Box::new(Error::IdempotencyConflict);
    /// assert!(matches!(Error::find(boxed.as_ref()), Some(Error::IdempotencyConflict)));
    /// ```
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<Error>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }

    /// Renders any error from a tower stack the way the [`ErrorResponseLayer`]
    /// does: a forten [`Error`] anywhere in the chain keeps its mapping; tower's
    /// own `timeout::error::Elapsed` and `load_shed::error::Overloaded` map to
    /// 504 TIMEOUT and 503 OVERLOADED; anything else is a 500 whose detail never
    /// carries the internal message (it is logged instead).
    pub fn render(
        err: &(dyn std::error::Error + 'static),
        request_id: Option<&str>,
    ) -> Response<Full<Bytes>> {
        if let Some(found) = Error::find(err) {
            return found.to_response(request_id);
        }
        if let Some(mapped) = from_tower(err) {
            return mapped.to_response(request_id);
        }
        tracing::error!(error = %err, request_id, "unhandled error answered 500");
        let mut object = ErrorObject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "the service failed to handle the request; the error is logged under meta.requestId"
                .to_owned(),
        );
        object.meta.request_id = request_id.map(str::to_owned);
        ErrorDocument {
            errors: vec![object],
        }
        .to_response()
    }
}

/// tower's own timeout and load-shed errors, anywhere in the chain.
fn from_tower(err: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<tower::timeout::error::Elapsed>() {
            return Some(Error::Timeout { after: None });
        }
        if e.is::<tower::load_shed::error::Overloaded>() {
            return Some(Error::Overloaded {
                detail: "the service is at its concurrency limit".to_owned(),
            });
        }
        current = e.source();
    }
    None
}

fn last_was_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    matches!(Error::find(err), Some(Error::Timeout { .. }))
        || matches!(from_tower(err), Some(Error::Timeout { .. }))
}

/// The JSON:API `title` for a status: the same for every occurrence.
pub(crate) fn title_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        401 => "Unauthenticated",
        403 => "Forbidden",
        404 => "Not found",
        409 => "Conflict",
        413 => "Payload too large",
        422 => "Unprocessable entity",
        429 => "Too many requests",
        502 => "Bad gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => "Internal server error",
    }
}

#[cfg(test)]
mod tests;

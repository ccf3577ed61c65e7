//! Input handling shared by every service: JSON:API error responses for
//! handlers ([`ApiError`]), a JSON body extractor that never answers axum's
//! plain-text rejections ([`JsonObject`]), and field accessors that point at
//! the offending field (`source.pointer`).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use forten_core::Error;
use forten_core::correlation::CorrelationContext;
use http::StatusCode;
use http::request::Parts;
use serde_json::{Map, Value};

/// The largest request body a service reads (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A handler's failure: forten-core's [`Error`], answered as its JSON:API
/// document with the request's correlation id as `meta.requestId`.
#[derive(Debug)]
pub struct ApiError(pub Error);

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = CorrelationContext::current().map(|c| c.correlation_id().to_string());
        self.0.to_response(request_id.as_deref()).into_response()
    }
}

impl ApiError {
    /// 422 VALIDATION_ERROR at `pointer` (e.g. `/email`).
    pub fn invalid(pointer: &str, detail: impl Into<String>) -> Self {
        ApiError(Error::Validation {
            detail: detail.into(),
            pointer: Some(pointer.to_owned()),
        })
    }

    /// 400 VALIDATION_ERROR (malformed input, no field to point at).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError(Error::BadRequest {
            detail: detail.into(),
            pointer: None,
        })
    }

    /// 404 NOT_FOUND.
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError(Error::NotFound {
            detail: detail.into(),
        })
    }

    /// 409 CONFLICT.
    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError(Error::Conflict {
            detail: detail.into(),
        })
    }

    /// 403 FORBIDDEN.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError(Error::Forbidden {
            detail: detail.into(),
        })
    }

    /// 401 UNAUTHENTICATED (with `WWW-Authenticate`).
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        ApiError(Error::Unauthenticated {
            detail: detail.into(),
        })
    }

    /// 503 UPSTREAM_UNAVAILABLE-style failure of a dependency this service owns.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError(Error::UpstreamUnavailable {
            detail: detail.into(),
        })
    }
}

/// The JSON:API answer for a route that does not exist (axum's default is an empty 404).
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route; see the API in the crate docs")
}

/// The JSON:API answer for a known path with the wrong method (axum's default is an empty 405).
pub async fn wrong_method() -> Response {
    let mut object = forten_core::error::ErrorObject::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not accept the method".to_owned(),
    );
    object.meta.request_id = CorrelationContext::current().map(|c| c.correlation_id().to_string());
    forten_core::error::ErrorDocument {
        errors: vec![object],
    }
    .to_response()
    .into_response()
}

/// A request body that must be a JSON object. Malformed JSON answers 400,
/// valid JSON that is not an object 422 (pointer `""`), an empty body 400, a
/// body over [`MAX_BODY_BYTES`] 413; all JSON:API documents, never axum's
/// plain-text rejections.
#[derive(Debug, Clone, Default)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                })
            } else {
                ApiError::bad_request(format!("the request body could not be read: {rejection}"))
            }
        })?;
        JsonObject::parse(&bytes)
    }
}

impl JsonObject {
    /// Parses a body: the rules of the extractor.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "the request body is empty: send a JSON object",
            ));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::invalid(
                "",
                "the request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "the request body is not valid JSON ({e})"
            ))),
        }
    }

    /// A required string field (`missing`, `null` or another type: 422 at `/field`).
    pub fn required_str(&self, field: &str) -> Result<&str, ApiError> {
        match self.0.get(field) {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err(ApiError::invalid(
                &format!("/{field}"),
                format!("`{field}` is required"),
            )),
            Some(_) => Err(ApiError::invalid(
                &format!("/{field}"),
                format!("`{field}` must be a string"),
            )),
        }
    }

    /// An optional string field (absent or `null`: `None`; another type: 422).
    pub fn optional_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(
                &format!("/{field}"),
                format!("`{field}` must be a string"),
            )),
        }
    }

    /// Whether the object has `field` (even `null`).
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
}

/// Checks a string's length in characters (after trimming): 422 at `/field` outside `min..=max`.
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.trim().chars().count();
    if n < min {
        return Err(ApiError::invalid(
            &format!("/{field}"),
            if min == 1 {
                format!("`{field}` must not be empty")
            } else {
                format!("`{field}` must have at least {min} characters")
            },
        ));
    }
    if n > max {
        return Err(ApiError::invalid(
            &format!("/{field}"),
            format!("`{field}` must have at most {max} characters"),
        ));
    }
    Ok(())
}

/// The single path parameter of a route (`/events/{id}`). Unlike axum's
/// `Path`, it never answers a plain-text rejection: an undecodable segment is
/// a JSON:API 404 (no resource has such an id).
#[derive(Debug, Clone)]
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(PathId(id)),
            Err(_) => Err(ApiError::not_found("no resource has this id")),
        }
    }
}

/// Query parameters as a flat map; a malformed query string is a JSON:API 400
/// (unknown keys are ignored, bad values answered by the handlers).
#[derive(Debug, Clone, Default)]
pub struct QueryMap(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(format!("the query string is malformed: {e}")))?;
        Ok(QueryMap(pairs.0.into_iter().collect()))
    }
}

impl QueryMap {
    /// A boolean parameter (`true` / `false`; absent: `None`; anything else: 400
    /// pointing at the parameter).
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ApiError(Error::BadRequest {
                detail: format!("query parameter `{name}` must be true or false"),
                pointer: None,
            })),
        }
    }
}

//! JSON:API error documents (<https://jsonapi.org/format/#error-objects>).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

/// The media type of JSON:API documents.
pub const JSON_API_CONTENT_TYPE: &str = "application/vnd.api+json";

/// A JSON:API error document: `{"errors":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDocument {
    /// The error objects; forten always sends exactly one.
    pub errors: Vec<ErrorObject>,
}

/// One JSON:API error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// A unique id for this occurrence (UUID v4).
    pub id: String,
    /// The HTTP status as a string, e.g. `"503"`.
    pub status: String,
    /// The stable machine-readable code, e.g. `"CIRCUIT_OPEN"`.
    pub code: String,
    /// A short summary that is the same for every occurrence of the code.
    pub title: String,
    /// What happened this time and what to do about it.
    pub detail: String,
    /// Where in the request the problem is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ErrorSource>,
    /// When it happened and which request it belongs to.
    pub meta: ErrorMeta,
}

/// The `source` member: a JSON pointer into the request document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSource {
    /// An RFC 6901 JSON pointer, e.g. `/data/attributes/title`.
    pub pointer: String,
}

/// The `meta` member forten adds to every error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMeta {
    /// RFC 3339 time of the error.
    pub timestamp: String,
    /// The correlation id of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorObject {
    /// A new error object with a fresh id and the current time; `title` is the
    /// standard one for `status`.
    pub fn new(status: StatusCode, code: &str, detail: String) -> Self {
        ErrorObject {
            id: uuid::Uuid::new_v4().to_string(),
            status: status.as_u16().to_string(),
            code: code.to_owned(),
            title: super::title_for(status).to_owned(),
            detail,
            source: None,
            meta: ErrorMeta {
                timestamp: crate::time::now_rfc3339(),
                request_id: None,
            },
        }
    }
}

impl ErrorDocument {
    /// The HTTP status of the first error object (500 when it is missing or not a status).
    pub fn status(&self) -> StatusCode {
        self.errors
            .first()
            .and_then(|e| e.status.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The document as JSON bytes.
    pub fn to_bytes(&self) -> Bytes {
        // Serializing plain strings into a Vec cannot fail; fall back to an
        // empty document rather than panic if serde ever says otherwise.
        serde_json::to_vec(self)
            .map_or_else(|_| Bytes::from_static(b"{\"errors\":[]}"), Bytes::from)
    }

    /// Parses a document from a response body, e.g. in a client.
    pub fn from_slice(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The response carrying this document, with its status and content type.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.to_bytes()));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_API_CONTENT_TYPE),
        );
        response
    }
}

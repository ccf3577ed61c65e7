//! A plain HTTP client for the gateway's public API, and bounded polling.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::WalkthroughError;

/// A plain HTTP client for the gateway's public API: no retries, no
/// breakers, so what the system answers is what you see.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    /// A client for the gateway at `base_url` (`http://127.0.0.1:3000`); each
    /// request gets at most `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, WalkthroughError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let valid = base
            .parse::<Uri>()
            .is_ok_and(|u| u.scheme_str() == Some("http") && u.authority().is_some());
        if !valid {
            return Err(WalkthroughError::Url {
                url: base_url.to_owned(),
            });
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            timeout,
            client,
        })
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` (`/api/v1/events`), sent with [`ApiRequest::send`].
    pub fn request(&self, method: Method, path: &str) -> ApiRequest<'_> {
        ApiRequest {
            client: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> ApiRequest<'_> {
        self.request(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> ApiRequest<'_> {
        self.request(Method::POST, path)
    }
}

/// A request being built; see [`ApiClient::request`].
#[derive(Debug)]
pub struct ApiRequest<'a> {
    client: &'a ApiClient,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<(Bytes, &'static str)>,
}

impl ApiRequest<'_> {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A JSON body.
    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some((Bytes::from(body.to_string()), "application/json"));
        self
    }

    /// A raw body with its content type (for malformed-input checks).
    pub fn raw(mut self, body: impl Into<Bytes>, content_type: &'static str) -> Self {
        self.body = Some((body.into(), content_type));
        self
    }

    /// What this request is, for messages: `POST /api/v1/events`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Sends it and reads the whole response.
    pub async fn send(self) -> Result<ApiResponse, WalkthroughError> {
        let what = self.describe();
        let transport = |e: Box<dyn std::error::Error + Send + Sync>| WalkthroughError::Transport {
            request: what.clone(),
            source: e,
        };
        let mut builder = http::Request::builder()
            .method(self.method)
            .uri(format!("{}{}", self.client.base, self.path));
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = match self.body {
            Some((bytes, content_type)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(body))
            .map_err(|e| transport(e.into()))?;
        let exchange = async {
            let response = self
                .client
                .client
                .request(request)
                .await
                .map_err(|e| transport(e.into()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| transport(e.into()))?
                .to_bytes();
            Ok(ApiResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.client.timeout, exchange)
            .await
            .map_err(|_| WalkthroughError::Timeout {
                request: what.clone(),
                after: self.client.timeout,
            })?
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl ApiResponse {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `data` of a success document.
    pub fn data(&self) -> Value {
        self.json()["data"].take()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `errors[0].code` of a JSON:API error document.
    pub fn error_code(&self) -> Option<String> {
        self.json()["errors"][0]["code"].as_str().map(str::to_owned)
    }

    /// `"503 CIRCUIT_OPEN"`, or `"201"` for a success: the status and error code, for lines.
    pub fn summary(&self) -> String {
        match self.error_code() {
            Some(code) => format!("{} {code}", self.status.as_u16()),
            None => self.status.as_u16().to_string(),
        }
    }
}

/// Polls `probe` until it yields `Some`, at most for `wait` (every 50 ms, a
/// request per poll). Transport errors count as "not yet" (a service being
/// restarted may refuse connections), so only the bound ends a wait.
pub async fn poll_until<T, F, Fut>(wait: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, WalkthroughError>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Ok(Some(found)) = probe().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! The HTTP plumbing shared by the HTTP and etcd backends (hyper-util's legacy client).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use forten_core::backoff::Backoff;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::DiscoveryError;

/// The largest response body read at once (a big registry listing fits easily).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone, Debug)]
pub(crate) struct Transport {
    pub(crate) client: HttpClient,
    pub(crate) backend: &'static str,
    pub(crate) timeout: Duration,
    /// Sent on every request (e.g. Consul's `X-Consul-Token`).
    pub(crate) headers: http::HeaderMap,
}

pub(crate) fn parse_base(backend: &'static str, url: &str) -> Result<String, DiscoveryError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| DiscoveryError::Config(format!("{backend} URL {url:?} is invalid: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(DiscoveryError::Config(format!(
            "{backend} URL {url:?} must be an absolute http:// URL (TLS is not supported here)"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Transport {
    pub(crate) fn new(backend: &'static str, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Transport {
            client,
            backend,
            timeout,
            headers: http::HeaderMap::new(),
        }
    }

    /// Sends one request and reads the whole answer, bounded by `timeout`.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), DiscoveryError> {
        self.send_full(method, url, body, timeout)
            .await
            .map(|(status, _, body)| (status, body))
    }

    /// Like `send`, with the answer's headers.
    pub(crate) async fn send_full(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), DiscoveryError> {
        let backend = self.backend;
        let request = self.build(method, url, body)?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| DiscoveryError::backend(backend, error_chain(&e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| DiscoveryError::backend(backend, format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, headers, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| DiscoveryError::Timeout {
                backend,
                after: timeout,
            })?
    }

    /// Sends one request and returns the response with its body still streaming.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) async fn open(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<hyper::body::Incoming>, DiscoveryError> {
        let backend = self.backend;
        let request = self.build(method, url, body)?;
        tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| DiscoveryError::Timeout {
                backend,
                after: self.timeout,
            })?
            .map_err(|e| DiscoveryError::backend(backend, error_chain(&e)))
    }

    fn build(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, DiscoveryError> {
        let mut builder = Request::builder().method(method).uri(url);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .map_err(|e| DiscoveryError::backend(self.backend, format!("bad request {url}: {e}")))
    }
}

/// Whether an error may go away by itself (worth a retry).
pub(crate) fn transient(e: &DiscoveryError) -> bool {
    matches!(
        e,
        DiscoveryError::Backend { .. } | DiscoveryError::Timeout { .. }
    )
}

/// Runs `attempt` until it succeeds, fails for good, or `backoff` runs out of retries.
pub(crate) async fn with_retries<T, F, Fut>(
    backoff: &Backoff,
    mut attempt: F,
) -> Result<T, DiscoveryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DiscoveryError>>,
{
    let mut delays = backoff.delays();
    loop {
        match attempt().await {
            Err(e) if transient(&e) => match delays.next() {
                Some(delay) => {
                    tracing::debug!(error = %e, ?delay, "registry call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// Formats an error and its sources: `outer: inner: innermost`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The status and a short excerpt of an unexpected answer.
pub(crate) fn unexpected(backend: &'static str, status: StatusCode, body: &[u8]) -> DiscoveryError {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    DiscoveryError::backend(backend, format!("answered {status}: {text}"))
}

//! [`RequestBuilder`]: headers, query, body, then `send` or `send_json`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use pin_project_lite::pin_project;
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::client::check_status;
use crate::{ClientError, ServiceClient};

/// A request being built; from [`ServiceClient::get`] and its siblings.
///
/// Setting an invalid header, query or path does not fail at once: the first
/// such error is returned by [`send`](Self::send) (or [`build`](Self::build)).
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: ServiceClient,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    extensions: http::Extensions,
    error: Option<ClientError>,
}

impl RequestBuilder {
    pub(crate) fn new(client: ServiceClient, method: Method, path: &str) -> Self {
        let mut builder = RequestBuilder {
            client,
            method,
            path: String::new(),
            query: None,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            extensions: http::Extensions::new(),
            error: None,
        };
        if path.starts_with('/') {
            path.clone_into(&mut builder.path);
        } else {
            builder.fail(format!("the path {path:?} must start with '/'"));
        }
        builder
    }

    fn fail(&mut self, detail: String) {
        if self.error.is_none() {
            self.error = Some(ClientError::InvalidRequest { detail });
        }
    }

    /// Sets a header (replacing one of the same name).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: std::fmt::Display,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: std::fmt::Display,
    {
        match HeaderName::try_from(name) {
            Ok(name) => match HeaderValue::try_from(value) {
                Ok(value) => {
                    self.headers.insert(name, value);
                }
                Err(e) => self.fail(format!("invalid value for header {name}: {e}")),
            },
            Err(e) => self.fail(format!("invalid header name: {e}")),
        }
        self
    }

    /// Adds every header of `headers` (replacing those of the same names).
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        let mut last = None;
        for (name, value) in headers {
            if let Some(name) = name {
                self.headers.insert(name.clone(), value);
                last = Some(name);
            } else if let Some(name) = &last {
                self.headers.append(name.clone(), value);
            }
        }
        self
    }

    /// Appends query parameters, serialized as `application/x-www-form-urlencoded`
    /// (e.g. `&[("page", "2")]` or a struct).
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(encoded) if encoded.is_empty() => {}
            Ok(encoded) => {
                self.query = Some(match self.query.take() {
                    Some(existing) => format!("{existing}&{encoded}"),
                    None => encoded,
                });
            }
            Err(e) => self.fail(format!("cannot encode the query: {e}")),
        }
        self
    }

    /// Serializes `body` as the JSON body (`content-type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::InvalidRequest {
            detail: format!("cannot serialize the JSON body: {e}"),
        })?;
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.body = Bytes::from(bytes);
        Ok(self)
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a request extension, e.g. a
    /// [`CorrelationContext`](forten_core::correlation::CorrelationContext) to
    /// propagate instead of the task's, or a
    /// [`Deadline`](forten_core::deadline::Deadline).
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// A deadline for this call, counted from now: the earlier of it and the
    /// client's total timeout (and the calling task's deadline) applies.
    pub fn timeout(self, timeout: std::time::Duration) -> Self {
        self.extension(forten_core::deadline::Deadline::after(timeout))
    }

    /// The request as it will enter the stack.
    pub fn build(self) -> Result<(ServiceClient, Request<Full<Bytes>>), ClientError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let limit = self.client.max_request_body();
        if self.body.len() > limit {
            return Err(ClientError::RequestTooLarge { limit });
        }
        let pq = match &self.query {
            Some(query) if self.path.contains('?') => format!("{}&{query}", self.path),
            Some(query) => format!("{}?{query}", self.path),
            None => self.path,
        };
        // from the String: its buffer becomes the URI's, no copy
        let pq = PathAndQuery::try_from(pq).map_err(|e| ClientError::InvalidRequest {
            detail: format!("invalid path or query: {e}"),
        })?;
        let mut req = Request::new(Full::new(self.body));
        *req.method_mut() = self.method;
        *req.uri_mut() = http::Uri::from(pq);
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        Ok((self.client, req))
    }

    /// Sends the request; any status is a response (use
    /// [`send_json`](Self::send_json) or [`ServiceClient::check_status`] to
    /// treat non-2xx as errors).
    ///
    /// The request is built here; the call starts (its span, in the span
    /// that polls it) when the future is first polled. The future is a named
    /// type, [`ResponseFuture`](crate::ResponseFuture), holding the call
    /// alone (not this builder besides), which keeps it small inside the
    /// futures that await it. A request that does not build (an invalid
    /// header, say) fails with its error when awaited.
    pub fn send(self) -> crate::ResponseFuture {
        match self.build() {
            Ok((client, req)) => client.deferred(req),
            Err(error) => crate::ResponseFuture::failed(error),
        }
    }

    /// Sends the request and decodes a 2xx JSON body; a non-2xx answer is
    /// [`ClientError::Status`] with the upstream's JSON:API error document.
    /// Like [`send`](Self::send), the request is built here and the call
    /// starts when the future is first polled.
    pub fn send_json<T: DeserializeOwned>(
        self,
    ) -> impl Future<Output = Result<T, ClientError>> + Send + use<T> {
        JsonFuture {
            service: Arc::clone(&self.client.shared.service),
            call: self.send(),
            _decodes: PhantomData,
        }
    }
}

pin_project! {
    /// The future of [`RequestBuilder::send_json`]: the call, then the check
    /// of its status and the decoding of its body.
    struct JsonFuture<T> {
        #[pin]
        call: crate::ResponseFuture,
        service: Arc<str>,
        _decodes: PhantomData<fn() -> T>,
    }
}

impl<T: DeserializeOwned> Future for JsonFuture<T> {
    type Output = Result<T, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = check_status(this.service, ready!(this.call.poll(cx))?)?;
        Poll::Ready(
            serde_json::from_slice(response.body()).map_err(|source| ClientError::Decode {
                service: this.service.to_string(),
                status: response.status(),
                source,
            }),
        )
    }
}

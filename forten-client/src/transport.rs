//! The innermost service: hyper-util's pooled client, plus reading the
//! response body (bounded) inside the attempt.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, response::Parts};
use http_body::Body;
use http_body_util::{Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;
use tower_service::Service;

/// How the pooled client connects.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub(crate) http2_only: bool,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_host: usize,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) max_response_body: usize,
}

/// The error of one attempt on the wire. Concrete (not `BoxError`), so the
/// stack above it stays `Send` in spawned tasks (rust#64552).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The request could not be sent or the response head not read. A
    /// connect error keeps its `io::Error` in the source chain, which the
    /// retry policy reads (a refused connection is always safe to retry).
    #[error("request failed: {0}")]
    Client(#[source] hyper_util::client::legacy::Error),
    /// The connection broke after the request may have been processed
    /// (closed mid-message, reset, body read failed): an `io::Error` the retry
    /// policy treats as transient (retried only when idempotent).
    #[error("connection broke: {0}")]
    Broken(#[source] io::Error),
    /// The response body exceeded the limit.
    #[error("the response body is larger than the {limit}-byte limit")]
    ResponseTooLarge { limit: usize },
}

/// Sorts hyper-util's error: the broken-connection kinds become an
/// `io::Error` the retry policy understands.
fn classify(err: hyper_util::client::legacy::Error) -> TransportError {
    if err.is_connect() {
        return TransportError::Client(err);
    }
    let hyper_err = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<hyper::Error>());
    match hyper_err {
        Some(h) if h.is_incomplete_message() || h.is_closed() || h.is_canceled() => {
            TransportError::Broken(io::Error::new(io::ErrorKind::ConnectionReset, err))
        }
        _ if has_io_error(&err) => TransportError::Client(err),
        _ => TransportError::Broken(io::Error::new(io::ErrorKind::ConnectionAborted, err)),
    }
}

fn has_io_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<io::Error>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// hyper-util's legacy pooled client (HTTP/1.1 keep-alive, or h2c with
/// prior knowledge) that hands back a buffered `Response<Bytes>`, behind an
/// optional in-flight limit.
///
/// The client sits behind an `Arc`: the stack is cloned per call, and
/// hyper-util's client clones its whole configuration.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: Arc<Client<HttpConnector, Full<Bytes>>>,
    max_response_body: usize,
    /// `max_in_flight`: each attempt holds a permit while on the wire. It
    /// is taken inside the attempt (not in `poll_ready`), so waiting for one
    /// counts against the attempt's timeout.
    limit: Option<Arc<Semaphore>>,
}

impl Transport {
    pub(crate) fn new(config: &TransportConfig, max_in_flight: Option<usize>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(config.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .http2_only(config.http2_only)
            .build(connector);
        Transport {
            client: Arc::new(client),
            max_response_body: config.max_response_body,
            limit: max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
        }
    }
}

impl Service<Request<Full<Bytes>>> for Transport {
    type Response = Response<Bytes>;
    type Error = TransportError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let (state, permit) = match &self.limit {
            None => (
                State::Sending {
                    future: self.client.request(req),
                },
                None,
            ),
            Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                Ok(permit) => (
                    State::Sending {
                        future: self.client.request(req),
                    },
                    Some(permit),
                ),
                Err(_) => (
                    State::Waiting {
                        limit: PollSemaphore::new(Arc::clone(limit)),
                        client: Arc::clone(&self.client),
                        // boxed: only a call waiting for a slot holds it, and
                        // inline it would make every call's future larger
                        request: Some(Box::new(req)),
                    },
                    None,
                ),
            },
        };
        TransportFuture {
            state,
            limit: self.max_response_body,
            permit,
        }
    }
}

pin_project! {
    /// Sends the request, then collects the body up to the limit.
    pub(crate) struct TransportFuture {
        #[pin]
        state: State,
        limit: usize,
        // held until the response is read
        permit: Option<OwnedSemaphorePermit>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Waiting {
            limit: PollSemaphore,
            client: Arc<Client<HttpConnector, Full<Bytes>>>,
            request: Option<Box<Request<Full<Bytes>>>>,
        },
        Sending { #[pin] future: ResponseFuture },
        Reading { parts: Option<Parts>, #[pin] body: ReadBody },
    }
}

pin_project! {
    /// Reads a body to its end: what `BodyExt::collect` does for the
    /// response, without its chunk list (an allocation per call, for the one
    /// chunk most answers come in) and its room for trailers (96 bytes in a
    /// future every layer above moves), which a `Response<Bytes>` drops.
    struct ReadBody {
        #[pin]
        body: Limited<Incoming>,
        data: Chunks,
    }
}

/// The data read so far: one chunk is kept as it came, several are copied
/// into one buffer.
enum Chunks {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Chunks {
    fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        *self = match std::mem::replace(self, Chunks::Empty) {
            Chunks::Empty => Chunks::One(chunk),
            Chunks::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + chunk.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&chunk);
                Chunks::Many(all)
            }
            Chunks::Many(mut all) => {
                all.extend_from_slice(&chunk);
                Chunks::Many(all)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Chunks::Empty => Bytes::new(),
            Chunks::One(bytes) => bytes,
            Chunks::Many(all) => all.freeze(),
        }
    }
}

impl Future for ReadBody {
    type Output = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match ready!(this.body.as_mut().poll_frame(cx)) {
                None => {
                    let data = std::mem::replace(this.data, Chunks::Empty);
                    return Poll::Ready(Ok(data.into_bytes()));
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                // trailers are not part of a `Response<Bytes>`
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        this.data.push(chunk);
                    }
                }
            }
        }
    }
}

impl Future for TransportFuture {
    type Output = Result<Response<Bytes>, TransportError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    limit,
                    client,
                    request,
                } => {
                    // the semaphore is never closed: `None` does not happen
                    *this.permit = ready!(limit.poll_acquire(cx));
                    let Some(request) = request.take() else {
                        unreachable!("a request is sent once")
                    };
                    let future = client.request(*request);
                    this.state.set(State::Sending { future });
                }
                StateProj::Sending { future } => {
                    let response = ready!(future.poll(cx)).map_err(classify)?;
                    let (parts, body) = response.into_parts();
                    let declared = parts
                        .headers
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if declared.is_some_and(|n| n > *this.limit as u64) {
                        return Poll::Ready(Err(TransportError::ResponseTooLarge {
                            limit: *this.limit,
                        }));
                    }
                    let body = ReadBody {
                        body: Limited::new(body, *this.limit),
                        data: Chunks::Empty,
                    };
                    this.state.set(State::Reading {
                        parts: Some(parts),
                        body,
                    });
                }
                StateProj::Reading { parts, body } => {
                    let collected = ready!(body.poll(cx)).map_err(|e| {
                        if e.is::<LengthLimitError>() {
                            TransportError::ResponseTooLarge { limit: *this.limit }
                        } else {
                            TransportError::Broken(io::Error::new(
                                io::ErrorKind::ConnectionReset,
                                e,
                            ))
                        }
                    })?;
                    let Some(parts) = parts.take() else {
                        unreachable!("a response is read once")
                    };
                    return Poll::Ready(Ok(Response::from_parts(parts, collected)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_is_kept_as_it_came_and_several_are_joined() {
        let mut data = Chunks::Empty;
        data.push(Bytes::new());
        assert!(data.into_bytes().is_empty());

        let chunk = Bytes::from_static(b"whole");
        let mut data = Chunks::Empty;
        data.push(chunk.clone());
        data.push(Bytes::new());
        let one = data.into_bytes();
        assert_eq!(one.as_ptr(), chunk.as_ptr(), "one chunk is not copied");

        let mut data = Chunks::Empty;
        for part in ["a", "", "bc", "def"] {
            data.push(Bytes::from_static(part.as_bytes()));
        }
        assert_eq!(data.into_bytes().as_ref(), b"abcdef");
    }
}

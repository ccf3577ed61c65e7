//! What to retry: the [`Policy`] trait and the default [`HttpPolicy`].

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};

use super::retry_after::retry_after;
use crate::BoxError;
use crate::deadline::Deadline;
use crate::headers::IDEMPOTENCY_KEY;

/// What to do with an attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Hand the outcome to the caller.
    Return,
    /// Retry after the backoff's next delay.
    Retry,
    /// Retry after this delay (the peer said so, e.g. `Retry-After`), capped
    /// by [`RetryConfig::max_retry_after`](super::RetryConfig::max_retry_after).
    RetryAfter(Duration),
}

/// Decides which outcomes [`Retry`](super::Retry) retries. The layer itself
/// owns the rest: backoff, attempt bound, budget and deadline.
///
/// ```
/// use forten_core::BoxError;
/// use forten_core::retry::{Action, Policy};
///
/// /// Retries every error of an idempotent RPC, never a successful reply.
/// #[derive(Clone)]
/// struct RetryErrors;
///
/// impl Policy<String, u32> for RetryErrors {
///     fn clone_request(&self, req: &String) -> Option<String> {
///         Some(req.clone())
///     }
///     fn classify(&self, _req: &String, result: &Result<u32, BoxError>) -> Action {
///         if result.is_err() { Action::Retry } else { Action::Return }
///     }
/// }
/// ```
pub trait Policy<Req, Res> {
    /// A copy of `req` to send again later, or `None` when it cannot be
    /// replayed: such a request is sent once and never retried.
    fn clone_request(&self, req: &Req) -> Option<Req>;

    /// Takes `req` apart into the request to send now and a copy to keep for
    /// a retry (`None` when it cannot be replayed). [`Retry`](super::Retry)
    /// calls this, not [`clone_request`](Self::clone_request), before each
    /// attempt that may be followed by another.
    ///
    /// The default sends `req` itself and keeps `clone_request(&req)`.
    /// Override it when owning the request makes the copy cheaper:
    /// [`HttpPolicy`] clones the request head in one piece instead of filling
    /// a new request field by field.
    fn split(&self, req: Req) -> (Req, Option<Req>) {
        let copy = self.clone_request(&req);
        (req, copy)
    }

    /// Whether to retry after this outcome of sending `req`. Errors arrive
    /// already converted to [`BoxError`].
    fn classify(&self, req: &Req, result: &Result<Res, BoxError>) -> Action;

    /// A deadline carried by the request itself (the layer also honours
    /// [`Deadline::current`]). Default: none.
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        let _ = req;
        None
    }
}

/// A request body that may be sent more than once.
///
/// Implemented for the in-memory bodies (`()`, `String`, `Vec<u8>`, `Bytes`,
/// `&'static str`, `Full`, `Empty`, `Either` of replayable bodies), which
/// replay, and for the boxed bodies of `http-body-util`, which do not (a
/// request carrying one is sent once, with a debug log). Implement it for your
/// own body type; a streaming body returns `None`.
pub trait ReplayBody: Sized {
    /// A copy of the body to send again, or `None` if it cannot be replayed.
    fn replay(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($t:ty),*) => {$(
        impl ReplayBody for $t {
            fn replay(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

replay_by_clone!((), String, Vec<u8>, Bytes, &'static str, &'static [u8]);

impl<D: Clone> ReplayBody for http_body_util::Full<D> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for http_body_util::Empty<D> {
    fn replay(&self) -> Option<Self> {
        Some(http_body_util::Empty::new())
    }
}

impl<L: ReplayBody, R: ReplayBody> ReplayBody for http_body_util::Either<L, R> {
    fn replay(&self) -> Option<Self> {
        match self {
            http_body_util::Either::Left(l) => l.replay().map(http_body_util::Either::Left),
            http_body_util::Either::Right(r) => r.replay().map(http_body_util::Either::Right),
        }
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

/// The default policy for HTTP requests (DESIGN 4.5).
///
/// A request is *idempotent* when its method is GET, HEAD, OPTIONS, PUT or
/// DELETE, or when it carries an `Idempotency-Key` header. Then:
///
/// - responses 408, 429, 502, 503 and 504 are retried; on 429 and 503 a
///   `Retry-After` header (either form) sets the next delay;
/// - errors that are timeouts (forten's [`Error::Timeout`](crate::Error::Timeout),
///   tower's `Elapsed`, an `io::ErrorKind::TimedOut`) or transport failures
///   (forten's `UpstreamUnavailable`, an `io::Error` of a broken or refused
///   connection anywhere in the source chain) are retried.
///
/// Any request, idempotent or not, is retried after a *refused connection*
/// (`io::ErrorKind::ConnectionRefused`): it never reached the peer. Nothing else
/// is retried: other 4xx never, and a non-idempotent request (a POST without
/// `Idempotency-Key`) never after it may have been processed.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpPolicy;

/// Whether `req` may be sent twice without changing the outcome.
pub fn is_idempotent<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || req.headers().contains_key(IDEMPOTENCY_KEY)
}

/// What kind of failure an error is, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The connection was refused: the request never left.
    NotSent,
    /// A timeout or a broken connection: the peer may have processed it.
    Transient,
    /// Anything else.
    Other,
}

fn failure_of(err: &(dyn std::error::Error + 'static)) -> Failure {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionRefused => Failure::NotSent,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::NotConnected
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::TimedOut
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => Failure::Transient,
                _ => Failure::Other,
            };
        }
        if let Some(forten) = e.downcast_ref::<crate::Error>() {
            return match forten {
                crate::Error::Timeout { .. } | crate::Error::UpstreamUnavailable { .. } => {
                    Failure::Transient
                }
                crate::Error::RetriesExhausted { source, .. } => failure_of(source.as_ref()),
                _ => Failure::Other,
            };
        }
        if e.is::<tower::timeout::error::Elapsed>() {
            return Failure::Transient;
        }
        current = e.source();
    }
    Failure::Other
}

impl<B: ReplayBody, ResB> Policy<Request<B>, Response<ResB>> for HttpPolicy {
    fn clone_request(&self, req: &Request<B>) -> Option<Request<B>> {
        let body = req.body().replay()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }

    #[inline]
    fn split(&self, req: Request<B>) -> (Request<B>, Option<Request<B>>) {
        let Some(body) = req.body().replay() else {
            return (req, None);
        };
        // `Parts::clone` copies each field once; filling a `Request::new`
        // would first build and then drop a default head.
        let (head, original) = req.into_parts();
        let copy = Request::from_parts(head.clone(), body);
        (Request::from_parts(head, original), Some(copy))
    }

    #[inline]
    fn classify(&self, req: &Request<B>, result: &Result<Response<ResB>, BoxError>) -> Action {
        match result {
            Ok(response) => {
                // the status first: a success is decided without looking at the request
                let action = match response.status() {
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        retry_after(response.headers()).map_or(Action::Retry, Action::RetryAfter)
                    }
                    StatusCode::REQUEST_TIMEOUT
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::GATEWAY_TIMEOUT => Action::Retry,
                    _ => return Action::Return,
                };
                if is_idempotent(req) {
                    action
                } else {
                    Action::Return
                }
            }
            Err(err) => match failure_of(err.as_ref()) {
                Failure::NotSent => Action::Retry,
                Failure::Transient if is_idempotent(req) => Action::Retry,
                Failure::Transient | Failure::Other => Action::Return,
            },
        }
    }

    fn deadline(&self, req: &Request<B>) -> Option<Deadline> {
        req.extensions().get::<Deadline>().copied()
    }
}

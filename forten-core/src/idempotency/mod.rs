//! Idempotency keys (DESIGN 4.4, the IETF httpapi "Idempotency-Key" draft).
//!
//! Server side, [`IdempotencyLayer`] makes a keyed POST/PATCH run at most once:
//!
//! - The key is an RFC 8941 sf-string or a bare token of 1 to 255 characters
//!   ([`IdempotencyKey`]); anything else is answered 400 and stores nothing.
//! - The entry is scoped by client ([`ClientIdentity`] from the request
//!   extensions, else a configured function, else one anonymous scope),
//!   method, path and key.
//! - The request body is buffered (up to a limit, 413 beyond) and fingerprinted
//!   with method and path. The same key with another fingerprint is answered
//!   422 IDEMPOTENCY_KEY_REUSED; while the first request still runs, 409
//!   IDEMPOTENCY_CONFLICT (the handler is not run); after it completed, its
//!   status, headers and body are replayed with `idempotent-replayed: true`,
//!   errors included.
//! - When the inner service returns `Err` (the stack failed before a handler
//!   answered) or the request is dropped or panics, the lock is released and
//!   nothing is stored, so a retry with the same key runs.
//! - Entries expire (default 24 h); locks expire too (default 60 s), so a
//!   crashed replica leaves no permanent 409.
//!
//! Stores: [`MemoryStore`] (one process) and, with the `redis` feature,
//! `RedisStore` (shared by replicas). Client side, [`IdempotencyKeyLayer`]
//! adds a fresh key to unkeyed POST/PATCH requests.
//!
//! The inner service sees `Request<Either<ReqBody, Full<Bytes>>>`: the
//! original body for requests the layer does not touch, the buffered one for
//! keyed requests. Place the layer inside the `CorrelationLayer` (so error
//! documents carry the request's id and a replay gets the retry's
//! `x-correlation-id`, not the first request's) and inside authentication
//! (so the [`ClientIdentity`] is known).
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Either, Full};
//! use forten_core::idempotency::{IdempotencyLayer, MemoryStore};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let runs = Arc::new(AtomicUsize::new(0));
//! let counter = runs.clone();
//! let handler = service_fn(move |_req: http::Request<Either<Full<Bytes>, Full<Bytes>>>| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
//!     async move { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(format!("order {n}"))))) }
//! });
//! let svc = IdempotencyLayer::new(MemoryStore::new()).layer(handler);
//!
//! let order = || http::Request::post("/orders")
//!     .header("idempotency-key", "\"order-7\"")
//!     .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))
//!     .unwrap();
//! let first = svc.clone().oneshot(order()).await.unwrap();
//! let again = svc.clone().oneshot(order()).await.unwrap();
//! assert_eq!(again.headers()["idempotent-replayed"], "true");
//! assert_eq!(again.into_body().collect().await.unwrap().to_bytes(), "order 1");
//! assert_eq!(runs.load(Ordering::SeqCst), 1);
//! # drop(first);
//! # });
//! ```

mod client;
mod config;
mod error;
mod future;
mod identity;
mod key;
mod layer;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod store;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use sha2::{Digest, Sha256};
use tower_service::Service;

pub use client::{AddIdempotencyKey, IdempotencyKeyLayer};
pub use config::{IdempotencyConfig, IdempotencyLayerBuilder};
pub use error::{ConfigError, StoreError};
pub use future::IdempotencyFuture;
pub use identity::{ClientIdentity, IdentityFn};
pub use key::{IdempotencyKey, InvalidIdempotencyKey, MAX_KEY_LEN};
pub use layer::IdempotencyLayer;
pub use memory::{MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use store::{Begin, Fingerprint, IdempotencyStore, Lock, LockToken, ScopeKey, StoredResponse};

use crate::correlation::CorrelationContext;
use crate::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use crate::{BoxError, Error};

/// The service produced by [`IdempotencyLayer`].
#[derive(Debug)]
pub struct Idempotency<S, St> {
    inner: S,
    store: Arc<St>,
    config: Arc<IdempotencyConfig>,
}

impl<S: Clone, St> Clone for Idempotency<S, St> {
    fn clone(&self) -> Self {
        Idempotency {
            inner: self.inner.clone(),
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S, St>
where
    S: Service<Request<Either<ReqBody, Full<Bytes>>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    St: IdempotencyStore,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = BoxError;
    type Future = IdempotencyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if !self.config.methods.contains(req.method()) {
            return IdempotencyFuture::passthrough(self.inner.call(req.map(Either::Left)));
        }
        let mut values = req.headers().get_all(IDEMPOTENCY_KEY).iter();
        let key = match (values.next(), values.next()) {
            (None, _) if self.config.required => {
                return IdempotencyFuture::done(error_response(
                    &Error::IdempotencyKeyMissing,
                    &req,
                ));
            }
            (None, _) => {
                return IdempotencyFuture::passthrough(self.inner.call(req.map(Either::Left)));
            }
            (Some(_), Some(_)) => Err(InvalidIdempotencyKey::Syntax(
                "the request carries several Idempotency-Key fields; send one",
            )),
            (Some(value), None) => IdempotencyKey::parse(value.as_bytes()),
        };
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                let err = Error::BadRequest {
                    detail: e.to_string(),
                    pointer: None,
                };
                return IdempotencyFuture::done(error_response(&err, &req));
            }
        };
        // The ready service goes into the future; a fresh clone stays here.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        IdempotencyFuture::keyed(Box::pin(keyed(
            inner,
            Arc::clone(&self.store),
            Arc::clone(&self.config),
            key,
            req,
        )))
    }
}

/// The keyed path: buffer, fingerprint, begin, then replay or run and store.
async fn keyed<S, St, ReqBody, ResBody>(
    mut inner: S,
    store: Arc<St>,
    config: Arc<IdempotencyConfig>,
    key: IdempotencyKey,
    req: Request<ReqBody>,
) -> Result<Response<Full<Bytes>>, BoxError>
where
    S: Service<Request<Either<ReqBody, Full<Bytes>>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    St: IdempotencyStore,
    ReqBody: Body<Data = Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let limit = config.max_body_bytes;
    let too_large = Error::PayloadTooLarge { limit };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(error_response_parts(&too_large, &parts));
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Ok(error_response_parts(&too_large, &parts));
        }
        Err(e) => return Err(e),
    };

    let identity = identity_of(&parts, &config);
    let path = parts.uri.path();
    let scope = scope_key(&identity, &parts.method, path, &key);
    let fingerprint = fingerprint(&parts.method, path, &body);

    let lock = match store.begin(&scope, &fingerprint, config.lock_ttl).await {
        Ok(Begin::Acquired(lock)) => lock,
        Ok(Begin::InFlight) => {
            return Ok(error_response_parts(&Error::IdempotencyConflict, &parts));
        }
        Ok(Begin::Mismatch) => {
            return Ok(error_response_parts(&Error::IdempotencyKeyReused, &parts));
        }
        Ok(Begin::Completed(stored)) => return Ok(replay(stored)),
        Err(e) => {
            tracing::warn!(error = %e, "idempotency store failed; request refused");
            let err = Error::UpstreamUnavailable {
                detail: "the idempotency store is unavailable; retry with the same key".into(),
            };
            return Ok(error_response_parts(&err, &parts));
        }
    };

    let mut guard = ReleaseGuard {
        store: &*store,
        lock: Some(lock),
    };
    let req = Request::from_parts(parts, Either::Right(Full::new(body)));
    let response = inner.call(req).await.map_err(Into::into)?;
    let (head, body) = response.into_parts();
    let body = body.collect().await.map_err(Into::into)?.to_bytes();
    let mut headers = head.headers.clone();
    for hop in HOP_BY_HOP {
        headers.remove(hop);
    }
    let stored = StoredResponse {
        status: head.status,
        headers,
        body: body.clone(),
    };
    if let Some(lock) = guard.lock.take() {
        match store.complete(&lock, &stored, config.ttl).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "idempotency lock expired before the request completed; response not stored \
                 (raise lock_ttl above the handler's duration)"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "idempotency store failed to keep a response");
                store.release(&lock);
            }
        }
    }
    Ok(Response::from_parts(head, Full::new(body)))
}

/// Connection-level fields that describe one transfer, not the response: not
/// stored (the replayed body is sent whole, with its own framing).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Releases an acquired lock unless the request completed: on `Err`, on a
/// dropped future and on a panic alike.
struct ReleaseGuard<'a, St: IdempotencyStore> {
    store: &'a St,
    lock: Option<Lock>,
}

impl<St: IdempotencyStore> Drop for ReleaseGuard<'_, St> {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            self.store.release(&lock);
        }
    }
}

fn replay(stored: StoredResponse) -> Response<Full<Bytes>> {
    crate::metrics::emit::idempotency_replayed();
    let mut response = Response::new(Full::new(stored.body));
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers;
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

fn identity_of(parts: &Parts, config: &IdempotencyConfig) -> String {
    if let Some(id) = parts.extensions.get::<ClientIdentity>() {
        return id.as_str().to_owned();
    }
    config
        .identity
        .as_ref()
        .and_then(|f| f(parts))
        .unwrap_or_default()
}

fn update_field(h: &mut Sha256, field: &[u8]) {
    h.update((field.len() as u64).to_be_bytes());
    h.update(field);
}

/// The scope of an entry: client identity, method, path and key.
pub fn scope_key(identity: &str, method: &Method, path: &str, key: &IdempotencyKey) -> ScopeKey {
    let mut h = Sha256::new();
    update_field(&mut h, identity.as_bytes());
    update_field(&mut h, method.as_str().as_bytes());
    update_field(&mut h, path.as_bytes());
    update_field(&mut h, key.as_str().as_bytes());
    ScopeKey(h.finalize().into())
}

/// The fingerprint of a request: method, path and body.
pub fn fingerprint(method: &Method, path: &str, body: &[u8]) -> Fingerprint {
    let mut h = Sha256::new();
    update_field(&mut h, method.as_str().as_bytes());
    update_field(&mut h, path.as_bytes());
    update_field(&mut h, body);
    Fingerprint(h.finalize().into())
}

/// Every error response of this layer is built here (DESIGN 4.3 documents).
fn error_response_parts(err: &Error, parts: &Parts) -> Response<Full<Bytes>> {
    let ctx = parts
        .extensions
        .get::<CorrelationContext>()
        .cloned()
        .or_else(CorrelationContext::current);
    err.to_response(ctx.as_ref().map(|c| c.correlation_id().as_str()))
}

fn error_response<B>(err: &Error, req: &Request<B>) -> Response<Full<Bytes>> {
    let ctx = req
        .extensions()
        .get::<CorrelationContext>()
        .cloned()
        .or_else(CorrelationContext::current);
    err.to_response(ctx.as_ref().map(|c| c.correlation_id().as_str()))
}

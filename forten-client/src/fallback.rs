//! [`Fallback`]: what a call answers when the upstream cannot.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use tokio::time::Instant;

use crate::ClientError;

/// The `warning` header a stale answer carries (RFC 7234 warn-code 110).
pub const STALE_WARNING: &str = "110 - \"Response is Stale\"";

/// How many responses a stale cache keeps by default.
pub const DEFAULT_STALE_CAPACITY: usize = 1024;

/// What a call answers when the upstream failed: its circuit is open, the
/// deadline passed, retries ran out, or it answered 5xx. Off by default; set
/// it with [`ServiceClientBuilder::fallback`](crate::ServiceClientBuilder::fallback).
///
/// - [`Fallback::stale_cache`]: the last 2xx response to the same GET (same
///   path, query and `authorization` header, so one caller's answer is never
///   served to another), if younger than `ttl`, marked with
///   `warning: 110 - "Response is Stale"` and an `age` header.
/// - [`Fallback::from_fn`]: your closure decides, per failure.
///
/// ```
/// use std::time::Duration;
/// use forten_client::Fallback;
///
/// let stale = Fallback::stale_cache(Duration::from_secs(60));
/// let empty_list = Fallback::from_fn(|ctx| {
///     (ctx.method() == http::Method::GET && ctx.path() == "/events")
///         .then(|| http::Response::new(bytes::Bytes::from_static(b"[]")))
/// });
/// # let _ = (stale, empty_list);
/// ```
#[derive(Clone)]
pub struct Fallback {
    kind: Kind,
}

type FallbackFn = dyn Fn(&FallbackContext<'_>) -> Option<Response<Bytes>> + Send + Sync;

#[derive(Clone)]
enum Kind {
    StaleCache(Arc<StaleCache>),
    Custom(Arc<FallbackFn>),
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::StaleCache(cache) => f
                .debug_struct("Fallback::StaleCache")
                .field("ttl", &cache.ttl)
                .field("capacity", &cache.capacity)
                .finish(),
            Kind::Custom(_) => f.write_str("Fallback::Custom"),
        }
    }
}

impl Fallback {
    /// Serves the last good response to the same GET while it is younger
    /// than `ttl` (keeping at most [`DEFAULT_STALE_CAPACITY`] responses).
    pub fn stale_cache(ttl: Duration) -> Self {
        Self::stale_cache_with_capacity(ttl, DEFAULT_STALE_CAPACITY)
    }

    /// [`stale_cache`](Self::stale_cache) keeping at most `capacity` responses.
    pub fn stale_cache_with_capacity(ttl: Duration, capacity: usize) -> Self {
        Fallback {
            kind: Kind::StaleCache(Arc::new(StaleCache {
                ttl,
                capacity,
                entries: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// Calls `f` on every failure; its `Some(response)` is answered instead.
    pub fn from_fn(
        f: impl Fn(&FallbackContext<'_>) -> Option<Response<Bytes>> + Send + Sync + 'static,
    ) -> Self {
        Fallback {
            kind: Kind::Custom(Arc::new(f)),
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        match &self.kind {
            Kind::StaleCache(cache) => !cache.ttl.is_zero() && cache.capacity > 0,
            Kind::Custom(_) => true,
        }
    }

    /// Remembers a good response (stale cache only, GET only).
    pub(crate) fn record(
        &self,
        method: &Method,
        path_and_query: &str,
        credential: Option<&HeaderValue>,
        response: &Response<Bytes>,
    ) {
        if let Kind::StaleCache(cache) = &self.kind {
            if *method == Method::GET && response.status().is_success() {
                cache.store(cache_key(path_and_query, credential), response);
            }
        }
    }

    /// The answer for a failed call, if any.
    pub(crate) fn answer(&self, ctx: &FallbackContext<'_>) -> Option<Response<Bytes>> {
        match &self.kind {
            Kind::StaleCache(cache) => {
                if *ctx.method == Method::GET {
                    cache.lookup(&cache_key(ctx.path_and_query, ctx.credential))
                } else {
                    None
                }
            }
            Kind::Custom(f) => f(ctx),
        }
    }
}

/// A failed call, as the fallback sees it.
#[derive(Debug)]
pub struct FallbackContext<'a> {
    pub(crate) service: &'a str,
    pub(crate) method: &'a Method,
    pub(crate) path_and_query: &'a str,
    pub(crate) credential: Option<&'a HeaderValue>,
    pub(crate) error: Option<&'a ClientError>,
    pub(crate) response: Option<&'a Response<Bytes>>,
}

impl FallbackContext<'_> {
    /// The target service.
    pub fn service(&self) -> &str {
        self.service
    }

    /// The request's method.
    pub fn method(&self) -> Method {
        self.method.clone()
    }

    /// The request's path, without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query, |(p, _)| p)
    }

    /// The request's path and query.
    pub fn path_and_query(&self) -> &str {
        self.path_and_query
    }

    /// The error, when the call failed without a response.
    pub fn error(&self) -> Option<&ClientError> {
        self.error
    }

    /// The 5xx response, when the upstream answered one.
    pub fn response(&self) -> Option<&Response<Bytes>> {
        self.response
    }
}

/// Path and query, a NUL (never in a URI), then the credential's bytes.
fn cache_key(path_and_query: &str, credential: Option<&HeaderValue>) -> Vec<u8> {
    let credential = credential.map_or(&[][..], HeaderValue::as_bytes);
    let mut key = Vec::with_capacity(path_and_query.len() + 1 + credential.len());
    key.extend_from_slice(path_and_query.as_bytes());
    key.push(0);
    key.extend_from_slice(credential);
    key
}

struct StaleCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
}

struct Entry {
    stored: Instant,
    response: Response<Bytes>,
}

fn copy(response: &Response<Bytes>) -> Response<Bytes> {
    let mut copy = Response::new(response.body().clone());
    *copy.status_mut() = response.status();
    *copy.version_mut() = response.version();
    *copy.headers_mut() = response.headers().clone();
    copy
}

impl StaleCache {
    fn store(&self, key: Vec<u8>, response: &Response<Bytes>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            entries.retain(|_, e| now.saturating_duration_since(e.stored) <= self.ttl);
            if entries.len() >= self.capacity {
                // still full of live entries: drop the oldest
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.stored)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                stored: now,
                response: copy(response),
            },
        );
    }

    fn lookup(&self, key: &[u8]) -> Option<Response<Bytes>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?;
        let age = Instant::now().saturating_duration_since(entry.stored);
        if age > self.ttl {
            entries.remove(key);
            return None;
        }
        let mut response = copy(&entry.response);
        drop(entries);
        let headers = response.headers_mut();
        headers.insert(
            http::header::WARNING,
            HeaderValue::from_static(STALE_WARNING),
        );
        headers.insert(http::header::AGE, HeaderValue::from(age.as_secs()));
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(path: &'a str, method: &'a Method) -> FallbackContext<'a> {
        FallbackContext {
            service: "events",
            method,
            path_and_query: path,
            credential: None,
            error: None,
            response: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stale_entries_expire_after_the_ttl() {
        let fallback = Fallback::stale_cache(Duration::from_secs(10));
        let get = Method::GET;
        fallback.record(&get, "/a", None, &Response::new(Bytes::from_static(b"one")));
        tokio::time::advance(Duration::from_secs(4)).await;
        let served = fallback.answer(&ctx("/a", &get)).expect("fresh enough");
        assert_eq!(served.body(), "one");
        assert_eq!(served.headers()["warning"], STALE_WARNING);
        assert_eq!(served.headers()["age"], "4");
        assert!(fallback.answer(&ctx("/b", &get)).is_none());
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(fallback.answer(&ctx("/a", &get)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn only_successful_gets_are_kept() {
        let fallback = Fallback::stale_cache(Duration::from_secs(10));
        let mut failed = Response::new(Bytes::new());
        *failed.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        fallback.record(&Method::GET, "/a", None, &failed);
        fallback.record(&Method::POST, "/b", None, &Response::new(Bytes::new()));
        assert!(fallback.answer(&ctx("/a", &Method::GET)).is_none());
        assert!(fallback.answer(&ctx("/b", &Method::GET)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_drops_its_oldest_entry() {
        let fallback = Fallback::stale_cache_with_capacity(Duration::from_secs(60), 2);
        for key in ["/1", "/2", "/3"] {
            fallback.record(&Method::GET, key, None, &Response::new(Bytes::new()));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(fallback.answer(&ctx("/1", &Method::GET)).is_none());
        assert!(fallback.answer(&ctx("/2", &Method::GET)).is_some());
        assert!(fallback.answer(&ctx("/3", &Method::GET)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn one_callers_answer_is_never_served_to_another() {
        let fallback = Fallback::stale_cache(Duration::from_secs(10));
        let ann = HeaderValue::from_static("Bearer ann");
        let bob = HeaderValue::from_static("Bearer bob");
        fallback.record(
            &Method::GET,
            "/me",
            Some(&ann),
            &Response::new(Bytes::from_static(b"ann")),
        );
        let mut ctx = ctx("/me", &Method::GET);
        assert!(fallback.answer(&ctx).is_none(), "no credential, no answer");
        ctx.credential = Some(&bob);
        assert!(fallback.answer(&ctx).is_none());
        ctx.credential = Some(&ann);
        assert_eq!(fallback.answer(&ctx).unwrap().body(), "ann");
    }
}

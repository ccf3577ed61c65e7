//! A JWKS cache: keys fetched from a URL in the background, refreshed on an
//! interval and (rate-limited) when a token names an unknown `kid`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use forten_core::BoxError;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use tokio::time::Instant;

use crate::error::AuthError;
use crate::keys::{KeySet, VerifyingKey};

/// The future a custom JWKS fetcher returns: the document's bytes.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send>>;
type Fetcher = Arc<dyn Fn(Uri) -> FetchFuture + Send + Sync>;

struct Inner {
    uri: Uri,
    keys: KeySet,
    fetcher: Fetcher,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
    /// When the last on-demand (unknown kid) refetch started.
    last_on_demand: Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

/// JSON Web Key Set fetched from a URL, kept in a [`KeySet`] that verifiers
/// read without waiting.
///
/// - [`spawn_refresher`](JwksCache::spawn_refresher) fetches at once and then
///   every `refresh_interval` (default 5 min) in a background task, which ends
///   when every handle to the cache is dropped;
/// - a token naming an unknown `kid` triggers a background refetch, at most
///   one per `min_refetch_interval` (default 30 s), so a flood of made-up
///   kids cannot cause a fetch storm; that token itself is rejected;
/// - a failed refresh keeps the keys fetched before.
///
/// Only public keys are taken from the document (`oct` keys and keys with
/// an unsupported type are skipped). The default fetcher is a hyper-util
/// HTTP/1 client for `http://` URLs; for `https://`, pass your TLS client
/// with [`JwksCacheBuilder::fetch_with`].
///
/// ```no_run
/// use forten_auth::{JwksCache, JwtAuthLayer, jsonwebtoken::Algorithm};
/// # async fn run() -> Result<(), forten_auth::AuthError> {
/// let jwks = JwksCache::builder("http://auth-service:3001/.well-known/jwks.json".parse().unwrap())
///     .build()?;
/// jwks.spawn_refresher();
/// let layer = JwtAuthLayer::builder()
///     .issuer("auth-service")
///     .audience("api-gateway")
///     .algorithms([Algorithm::EdDSA])
///     .jwks(&jwks)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("uri", &self.inner.uri)
            .field("keys", &self.inner.keys)
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

/// Builder of [`JwksCache`].
pub struct JwksCacheBuilder {
    uri: Uri,
    fetcher: Option<Fetcher>,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
    max_document_bytes: usize,
}

impl fmt::Debug for JwksCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCacheBuilder")
            .field("uri", &self.uri)
            .field("refresh_interval", &self.refresh_interval)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

impl JwksCacheBuilder {
    /// How often the background task refetches (default 5 min, at least 1 s).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = every;
        self
    }

    /// The least time between two refetches caused by unknown `kid`s (default 30 s, at least 1 s).
    pub fn min_refetch_interval(mut self, gap: Duration) -> Self {
        self.min_refetch_interval = gap;
        self
    }

    /// How long one fetch may take (default 5 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The largest JWKS document read with the default fetcher (default 256 KiB).
    pub fn max_document_bytes(mut self, limit: usize) -> Self {
        self.max_document_bytes = limit;
        self
    }

    /// Fetches the document with `fetch` instead of the built-in HTTP client
    /// (for TLS, proxies, or tests).
    pub fn fetch_with<F>(mut self, fetch: F) -> Self
    where
        F: Fn(Uri) -> FetchFuture + Send + Sync + 'static,
    {
        self.fetcher = Some(Arc::new(fetch));
        self
    }

    /// Validates the settings. Fetching starts with
    /// [`spawn_refresher`](JwksCache::spawn_refresher) or [`refresh`](JwksCache::refresh).
    pub fn build(self) -> Result<JwksCache, AuthError> {
        if self.refresh_interval < Duration::from_secs(1)
            || self.min_refetch_interval < Duration::from_secs(1)
        {
            return Err(AuthError::Config(
                "JWKS refresh and refetch intervals must be at least 1 s".to_owned(),
            ));
        }
        if self.fetch_timeout.is_zero() {
            return Err(AuthError::Config("JWKS fetch timeout is zero".to_owned()));
        }
        let fetcher = if let Some(f) = self.fetcher {
            f
        } else {
            if self.uri.scheme_str() != Some("http") || self.uri.host().is_none() {
                return Err(AuthError::Config(format!(
                    "the built-in JWKS fetcher speaks http:// only (got {}); \
                     pass an HTTPS client with .fetch_with(...)",
                    self.uri
                )));
            }
            http_fetcher(self.max_document_bytes)
        };
        Ok(JwksCache {
            inner: Arc::new(Inner {
                uri: self.uri,
                keys: KeySet::default(),
                fetcher,
                refresh_interval: self.refresh_interval,
                min_refetch_interval: self.min_refetch_interval,
                fetch_timeout: self.fetch_timeout,
                last_on_demand: Mutex::new(None),
                fetches: AtomicU64::new(0),
            }),
        })
    }
}

fn http_fetcher(limit: usize) -> Fetcher {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    Arc::new(move |uri: Uri| {
        let client = client.clone();
        Box::pin(async move {
            let req = http::Request::get(uri)
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::new())?;
            let res = client.request(req).await?;
            if !res.status().is_success() {
                return Err(format!("status {}", res.status()).into());
            }
            let body = Limited::new(res.into_body(), limit).collect().await?;
            Ok(body.to_bytes())
        })
    })
}

impl JwksCache {
    /// A builder for the JWKS at `uri`.
    pub fn builder(uri: Uri) -> JwksCacheBuilder {
        JwksCacheBuilder {
            uri,
            fetcher: None,
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            max_document_bytes: 256 * 1024,
        }
    }

    /// The key set the fetched keys land in (give it to a verifier).
    pub fn keys(&self) -> KeySet {
        self.inner.keys.clone()
    }

    /// How many fetches have been started so far.
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the document now and replaces the keys; on failure the keys
    /// stay as they were. Returns how many keys were loaded.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        refresh(&self.inner).await
    }

    /// Starts the background task: a fetch now, then one every `refresh_interval`.
    /// The task ends when every handle to this cache is dropped.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn_refresher(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.refresh_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = refresh(&inner).await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
                }
            }
        })
    }

    /// A verifier saw `kid`, which the set does not hold: refetch in the
    /// background unless a refetch started less than `min_refetch_interval` ago.
    pub(crate) fn unknown_kid(&self, kid: &str) {
        let now = Instant::now();
        {
            let mut last = self
                .inner
                .last_on_demand
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < self.inner.min_refetch_interval) {
                return;
            }
            *last = Some(now);
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!(kid, "unknown kid: refetching the JWKS");
        let inner = self.inner.clone();
        rt.spawn(async move {
            if let Err(e) = refresh(&inner).await {
                tracing::warn!(error = %e, "JWKS refetch failed; keeping the previous keys");
            }
        });
    }
}

async fn refresh(inner: &Inner) -> Result<usize, AuthError> {
    inner.fetches.fetch_add(1, Ordering::Relaxed);
    let err = |detail: String| AuthError::Jwks {
        uri: inner.uri.to_string(),
        detail,
    };
    let body = tokio::time::timeout(inner.fetch_timeout, (inner.fetcher)(inner.uri.clone()))
        .await
        .map_err(|_| err(format!("no answer within {:?}", inner.fetch_timeout)))?
        .map_err(|e| err(e.to_string()))?;
    let set: JwkSet =
        serde_json::from_slice(&body).map_err(|e| err(format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        match VerifyingKey::from_jwk(jwk) {
            Ok(k) if k.kid().is_some() => keys.push(k),
            Ok(_) => tracing::warn!("JWKS key without kid skipped"),
            Err(e) => tracing::warn!(error = %e, kid = ?jwk.common.key_id, "JWKS key skipped"),
        }
    }
    if keys.is_empty() {
        return Err(err("the document holds no usable key".to_owned()));
    }
    let n = keys.len();
    inner.keys.replace(keys);
    Ok(n)
}

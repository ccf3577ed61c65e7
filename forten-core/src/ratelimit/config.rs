//! Rate-limit policies and how requests are keyed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use super::error::ConfigError;
use crate::idempotency::ClientIdentity;

/// A GCRA quota: `quota` requests per `window`, refilled smoothly (one
/// request every `window / quota`), with bursts of up to `quota`.
///
/// Its name and numbers are what the `RateLimit-Policy` header advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    name: Arc<str>,
    quota: u32,
    window: Duration,
}

impl RateLimitPolicy {
    /// `quota` requests per `window` under the name `name` (an sf-string in
    /// the headers: printable ASCII).
    pub fn new(
        name: impl Into<Arc<str>>,
        quota: u32,
        window: Duration,
    ) -> Result<Self, ConfigError> {
        let name = name.into();
        if name.is_empty() || !name.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(ConfigError::PolicyName);
        }
        if quota == 0 {
            return Err(ConfigError::ZeroQuota);
        }
        if window < Duration::from_millis(1) {
            return Err(ConfigError::ZeroWindow);
        }
        Ok(RateLimitPolicy {
            name,
            quota,
            window,
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts one request this policy refused, in
    /// `forten_rate_limited_total{policy}` (README "Metrics"). The rate-limit
    /// layer does it for its own refusals; call it where you check a
    /// backend yourself and refuse (forten-client's `.rate_limit` does).
    #[cold]
    pub fn record_refusal(&self) {
        crate::metrics::emit::rate_limited(&self.name);
    }

    /// Requests per window (and the largest burst).
    pub fn quota(&self) -> u32 {
        self.quota
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The time that refills one request: `window / quota`.
    pub fn emission_interval(&self) -> Duration {
        (self.window / self.quota).max(Duration::from_nanos(1))
    }
}

/// What a request is limited by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKey {
    /// An authenticated client ([`ClientIdentity`]).
    Client(Arc<str>),
    /// A peer address.
    Ip(IpAddr),
    /// A key from a user function.
    Custom(Arc<str>),
    /// One budget shared by every request that has no other key.
    Global,
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Client(c) => write!(f, "client:{c}"),
            LimitKey::Ip(ip) => write!(f, "ip:{ip}"),
            LimitKey::Custom(c) => write!(f, "custom:{c}"),
            LimitKey::Global => f.write_str("global"),
        }
    }
}

/// Chooses the [`LimitKey`] of a request.
#[derive(Clone)]
pub struct KeyExtractor(Arc<dyn Fn(&Parts) -> LimitKey + Send + Sync>);

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyExtractor")
    }
}

impl Default for KeyExtractor {
    fn default() -> Self {
        Self::client_or_ip()
    }
}

impl KeyExtractor {
    /// A key chosen by `f`, which answers the [`LimitKey`] itself: no string
    /// is built per request (compare [`from_fn`](Self::from_fn)).
    ///
    /// ```
    /// use forten_core::idempotency::ClientIdentity;
    /// use forten_core::ratelimit::{KeyExtractor, LimitKey};
    ///
    /// // The authenticated client, else one shared budget for the anonymous.
    /// let keys = KeyExtractor::new(|parts| match parts.extensions.get::<ClientIdentity>() {
    ///     Some(id) => LimitKey::Client(id.as_arc()),
    ///     None => LimitKey::Global,
    /// });
    /// let (parts, ()) = http::Request::new(()).into_parts();
    /// assert_eq!(keys.key(&parts), LimitKey::Global);
    /// ```
    pub fn new(f: impl Fn(&Parts) -> LimitKey + Send + Sync + 'static) -> Self {
        KeyExtractor(Arc::new(f))
    }

    /// The [`ClientIdentity`] in the request extensions, else the peer IP,
    /// else the global budget. The default.
    pub fn client_or_ip() -> Self {
        KeyExtractor(Arc::new(|parts: &Parts| {
            if let Some(id) = parts.extensions.get::<ClientIdentity>() {
                return LimitKey::Client(id.as_arc());
            }
            peer_ip(parts).map_or(LimitKey::Global, LimitKey::Ip)
        }))
    }

    /// The peer IP: a `std::net::SocketAddr` or `IpAddr` in the request
    /// extensions (insert one in your accept loop, or use [`from_fn`](Self::from_fn)
    /// for a framework's own type), else the global budget.
    pub fn ip() -> Self {
        KeyExtractor(Arc::new(|parts: &Parts| {
            peer_ip(parts).map_or(LimitKey::Global, LimitKey::Ip)
        }))
    }

    /// One budget for every request.
    pub fn global() -> Self {
        KeyExtractor(Arc::new(|_: &Parts| LimitKey::Global))
    }

    /// A key from `f`; `None` falls back to the global budget.
    pub fn from_fn(f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        KeyExtractor(Arc::new(move |parts: &Parts| {
            f(parts).map_or(LimitKey::Global, |k| LimitKey::Custom(k.into()))
        }))
    }

    /// The key of a request.
    pub fn key(&self, parts: &Parts) -> LimitKey {
        (self.0)(parts)
    }
}

fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| parts.extensions.get::<IpAddr>().copied())
}

//! Service-to-service tokens: [`ServiceAuth`] mints and caches them on the
//! calling side, [`ServiceAuthLayer`] checks them on the called side.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use forten_core::idempotency::ClientIdentity;
use http::{HeaderValue, Request};
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower_layer::Layer;

use crate::cache::VerifiedCache;
use crate::check::{AuthService, RequestCheck};
use crate::error::{AuthError, Rejection};
use crate::identity::{Permissions, ServiceIdentity};
use crate::keys::{KeySet, SigningKey};
use crate::verify::{
    Audience, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, Verifier, VerifierSettings, bearer_token,
    unix_now,
};

/// The default lifetime of a service token.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The claims of a service token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    /// The calling service.
    pub iss: String,
    /// The calling service (same as `iss`).
    pub sub: String,
    /// The called service.
    pub aud: Audience,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// A unique token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes (OAuth 2 style).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

struct Cached {
    token: Arc<str>,
    header: HeaderValue,
    renew_at: Instant,
}

/// The cached token of one target.
#[derive(Default)]
pub(crate) struct Slot {
    cached: RwLock<Option<Cached>>,
}

struct Inner {
    name: String,
    key: SigningKey,
    lifetime: Duration,
    scope: String,
    header: Header,
    // one slot per target, kept for good: a layer for one target holds its
    // slot and reads it without hashing the target's name per request
    slots: RwLock<HashMap<String, Arc<Slot>>>,
}

/// The calling side of service-to-service auth: mints a JWT per target
/// service (iss = sub = this service, aud = target, the configured scopes,
/// iat/nbf/exp and a jti), caches it, and mints a fresh one when 80% of its
/// lifetime has passed. Cloning shares the cache.
///
/// ```
/// use forten_auth::{ServiceAuth, SigningKey};
/// let auth = ServiceAuth::builder("orders")
///     .signing_key(SigningKey::hs256(&[42u8; 32]).unwrap().with_kid("k1"))
///     .scopes(["events:read"])
///     .build()
///     .unwrap();
/// let header = auth.auth_header("events").unwrap();
/// assert!(header.to_str().unwrap().starts_with("Bearer ey"));
/// // cached: the same token until it nears expiry
/// assert_eq!(auth.auth_header("events").unwrap(), header);
/// ```
#[derive(Clone)]
pub struct ServiceAuth {
    inner: Arc<Inner>,
}

impl fmt::Debug for ServiceAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAuth")
            .field("name", &self.inner.name)
            .field("key", &self.inner.key)
            .field("lifetime", &self.inner.lifetime)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

/// Builder of [`ServiceAuth`].
#[derive(Debug)]
pub struct ServiceAuthBuilder {
    name: String,
    key: Option<SigningKey>,
    lifetime: Duration,
    scopes: Vec<String>,
}

impl ServiceAuthBuilder {
    /// The key tokens are signed with (required).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// How long each token is valid (default 5 min; 10 s to 24 h).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The scopes every token carries.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<ServiceAuth, AuthError> {
        if self.name.is_empty() {
            return Err(AuthError::Config(
                "the service name is empty: name the calling service".to_owned(),
            ));
        }
        let key = self.key.ok_or_else(|| {
            AuthError::Config("no signing key: call .signing_key(SigningKey::...)".to_owned())
        })?;
        if self.lifetime < Duration::from_secs(10) || self.lifetime > Duration::from_secs(86_400) {
            return Err(AuthError::Config(format!(
                "token lifetime {:?} is outside 10 s ..= 24 h",
                self.lifetime
            )));
        }
        if let Some(bad) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(AuthError::Config(format!(
                "scope {bad:?} is empty or holds whitespace"
            )));
        }
        let header = key.header();
        Ok(ServiceAuth {
            inner: Arc::new(Inner {
                name: self.name,
                key,
                lifetime: self.lifetime,
                scope: self.scopes.join(" "),
                header,
                slots: RwLock::new(HashMap::new()),
            }),
        })
    }
}

impl ServiceAuth {
    /// A builder for the calling service `name`.
    pub fn builder(name: impl Into<String>) -> ServiceAuthBuilder {
        ServiceAuthBuilder {
            name: name.into(),
            key: None,
            lifetime: DEFAULT_TOKEN_LIFETIME,
            scopes: Vec::new(),
        }
    }

    /// This service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A token for calling `target` (cached; signed only when none is cached
    /// or the cached one is past 80% of its lifetime).
    pub fn token_for(&self, target: &str) -> Result<Arc<str>, AuthError> {
        self.cached(target, |c| c.token.clone())
    }

    /// `Authorization: Bearer <token>` for calling `target` (cached like
    /// [`token_for`](Self::token_for); cloning the value does not allocate).
    pub fn auth_header(&self, target: &str) -> Result<HeaderValue, AuthError> {
        self.cached(target, |c| c.header.clone())
    }

    fn cached<T>(&self, target: &str, pick: impl Fn(&Cached) -> T) -> Result<T, AuthError> {
        self.cached_in(&self.slot(target), target, pick)
    }

    /// The cache slot of `target` (made on first use).
    pub(crate) fn slot(&self, target: &str) -> Arc<Slot> {
        let slots = &self.inner.slots;
        if let Some(slot) = slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target)
        {
            return Arc::clone(slot);
        }
        let mut slots = slots.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(target.to_owned()).or_default())
    }

    /// `Authorization: Bearer <token>` for `target`, whose slot is `slot`.
    pub(crate) fn auth_header_in(
        &self,
        slot: &Slot,
        target: &str,
    ) -> Result<HeaderValue, AuthError> {
        self.cached_in(slot, target, |c| c.header.clone())
    }

    fn cached_in<T>(
        &self,
        slot: &Slot,
        target: &str,
        pick: impl Fn(&Cached) -> T,
    ) -> Result<T, AuthError> {
        let now = Instant::now();
        {
            let cached = slot.cached.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = cached.as_ref().filter(|c| now < c.renew_at) {
                return Ok(pick(c));
            }
        }
        let fresh = self.mint(target, now)?;
        let out = pick(&fresh);
        *slot.cached.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh);
        Ok(out)
    }

    /// Signs a new token for `target`, bypassing the cache.
    pub fn mint_uncached(&self, target: &str) -> Result<Arc<str>, AuthError> {
        self.mint(target, Instant::now()).map(|c| c.token)
    }

    fn mint(&self, target: &str, now: Instant) -> Result<Cached, AuthError> {
        let inner = &*self.inner;
        let iat = unix_now();
        let claims = ServiceClaims {
            iss: inner.name.clone(),
            sub: inner.name.clone(),
            aud: Audience::One(target.to_owned()),
            exp: iat + inner.lifetime.as_secs(),
            nbf: Some(iat),
            iat: Some(iat),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            scope: inner.scope.clone(),
        };
        let token = jsonwebtoken::encode(&inner.header, &claims, inner.key.encoding_key())
            .map_err(AuthError::Sign)?;
        let header = HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {token}")))
            .map_err(|e| AuthError::Config(format!("token is not a header value: {e}")))?;
        Ok(Cached {
            token: token.into(),
            header,
            renew_at: now + inner.lifetime - inner.lifetime / 5,
        })
    }
}

/// The called side of service-to-service auth: requires
/// `Authorization: Bearer <service token>` whose `aud` is this service, whose
/// `iss` is an allowed caller, signed by a key of the [`KeySet`] with an
/// allowed algorithm, and (optionally) holding the required scopes.
///
/// Puts the [`ServiceIdentity`] (as `Arc<ServiceIdentity>`, shared with the
/// verified-token cache; read it with [`ServiceIdentity::from_extensions`]),
/// [`Permissions`] (the scopes) and a [`ClientIdentity`](crate::ClientIdentity)
/// into request extensions. Answers 401 (bad or missing token) or 403 (missing scope)
/// itself; the inner service does not run.
///
/// ```
/// use forten_auth::{KeySet, ServiceAuth, ServiceAuthLayer, ServiceIdentity, SigningKey};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let key = SigningKey::hs256(&[9u8; 32]).unwrap().with_kid("k1");
/// let keys = KeySet::new([key.verifying_key().unwrap()]);
/// let caller = ServiceAuth::builder("orders").signing_key(key).scopes(["events:read"]).build().unwrap();
///
/// let layer = ServiceAuthLayer::builder("events", keys)
///     .allow_callers(["orders"])
///     .require_scopes(["events:read"])
///     .build()
///     .unwrap();
/// let svc = layer.layer(service_fn(|req: http::Request<()>| async move {
///     let who = ServiceIdentity::from_extensions(req.extensions()).unwrap().name.clone();
///     Ok::<_, std::convert::Infallible>(http::Response::new(who))
/// }));
///
/// let req = http::Request::builder()
///     .header("authorization", caller.auth_header("events").unwrap())
///     .body(())
///     .unwrap();
/// let res = svc.clone().oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
///
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 401);
/// # });
/// ```
#[derive(Clone)]
pub struct ServiceAuthLayer {
    check: ServiceTokenCheck,
}

impl fmt::Debug for ServiceAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAuthLayer")
            .field("required_scopes", &self.check.required_scopes)
            .finish_non_exhaustive()
    }
}

/// Builder of [`ServiceAuthLayer`].
#[derive(Debug)]
pub struct ServiceAuthLayerBuilder {
    name: String,
    keys: KeySet,
    callers: Vec<String>,
    algorithms: Option<Vec<Algorithm>>,
    scopes: Vec<String>,
    leeway: Duration,
    max_token_bytes: usize,
    cache_verified: usize,
}

impl ServiceAuthLayerBuilder {
    /// The calling services accepted as `iss` (required).
    pub fn allow_callers<I, S>(mut self, callers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.callers.extend(callers.into_iter().map(Into::into));
        self
    }

    /// The accepted algorithms (default: the algorithms of the keys in the set at build time).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Scopes every request must hold (403 otherwise).
    pub fn require_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Clock-skew leeway for `exp` / `nbf` (default 30 s, at most 5 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Tokens longer than this are rejected before parsing (default 8 KiB).
    pub fn max_token_bytes(mut self, limit: usize) -> Self {
        self.max_token_bytes = limit;
        self
    }

    /// Keeps up to `capacity` verified tokens (default 0: none), so a
    /// caller's token, which it reuses for minutes, is verified once: a hit
    /// needs the very same token string, verified against the current key
    /// set (a rotation empties the cache), within its `exp` plus the leeway.
    /// Only accepted tokens are kept; a full cache drops its expired
    /// entries, then all of them.
    pub fn cache_verified(mut self, capacity: usize) -> Self {
        self.cache_verified = capacity;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<ServiceAuthLayer, AuthError> {
        if self.leeway > Duration::from_secs(300) {
            return Err(AuthError::Config(
                "leeway above 5 min accepts long-expired tokens".to_owned(),
            ));
        }
        let algorithms = match self.algorithms {
            Some(a) => a,
            None if self.keys.is_empty() => {
                return Err(AuthError::Config(
                    "the key set is empty: add keys or list .algorithms(...) explicitly".to_owned(),
                ));
            }
            None => self.keys.algorithms(),
        };
        let verifier = Verifier::new(VerifierSettings {
            keys: self.keys,
            algorithms,
            issuers: self.callers,
            audiences: vec![self.name],
            leeway: self.leeway,
            max_token_bytes: self.max_token_bytes,
            on_unknown_kid: None,
        })?;
        Ok(ServiceAuthLayer {
            check: ServiceTokenCheck {
                verifier: Arc::new(verifier),
                required_scopes: self.scopes.into(),
                cache: VerifiedCache::new(self.cache_verified).map(Arc::new),
            },
        })
    }
}

impl ServiceAuthLayer {
    /// A builder for the service `name` (the audience tokens must carry),
    /// verifying with `keys`.
    pub fn builder(name: impl Into<String>, keys: KeySet) -> ServiceAuthLayerBuilder {
        ServiceAuthLayerBuilder {
            name: name.into(),
            keys,
            callers: Vec::new(),
            algorithms: None,
            scopes: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_verified: 0,
        }
    }

    /// Verifies a token outside a tower stack (an event handler, a test).
    pub fn verify(&self, token: &str) -> Result<ServiceIdentity, AuthError> {
        Ok(self.check.identify(token)?)
    }
}

impl<S> Layer<S> for ServiceAuthLayer {
    type Service = AuthService<S, ServiceTokenCheck>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.check.clone())
    }
}

/// The [`RequestCheck`] of [`ServiceAuthLayer`].
#[derive(Clone)]
pub struct ServiceTokenCheck {
    verifier: Arc<Verifier>,
    required_scopes: Arc<[String]>,
    cache: Option<Arc<VerifiedCache<VerifiedService>>>,
}

impl fmt::Debug for ServiceTokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokenCheck")
            .field("required_scopes", &self.required_scopes)
            .finish_non_exhaustive()
    }
}

impl ServiceTokenCheck {
    fn identify(&self, token: &str) -> Result<ServiceIdentity, Rejection> {
        self.verified(token)
            .map(|v| Arc::unwrap_or_clone(v.identity))
    }

    /// The caller and its scopes: from the cache, or verified (and cached).
    fn verified(&self, token: &str) -> Result<VerifiedService, Rejection> {
        let keys = self.verifier.keys();
        let now = unix_now();
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(token, &keys, now)) {
            return Ok(hit);
        }
        let claims: ServiceClaims = self.verifier.verify_with(token, &keys)?;
        let valid_through = self.verifier.valid_through(claims.exp);
        let scopes: Vec<String> = claims.scope.split_whitespace().map(str::to_owned).collect();
        if let Some(missing) = self
            .required_scopes
            .iter()
            .find(|s| !scopes.iter().any(|have| have == *s))
        {
            return Err(Rejection::MissingScope(missing.clone()));
        }
        let permissions = Permissions::new(scopes.iter().cloned());
        let verified = VerifiedService {
            client: ClientIdentity::new(claims.iss.as_str()),
            identity: Arc::new(ServiceIdentity {
                name: claims.iss,
                scopes,
            }),
            permissions,
        };
        if let Some(cache) = &self.cache {
            cache.insert(token, keys, valid_through, verified.clone(), now);
        }
        Ok(verified)
    }
}

impl RequestCheck for ServiceTokenCheck {
    fn check<B>(&self, req: &mut Request<B>) -> Result<(), Rejection> {
        let verified = self.verified(bearer_token(req.headers())?)?;
        let ext = req.extensions_mut();
        ext.insert(verified.client);
        ext.insert(verified.permissions);
        ext.insert(verified.identity);
        Ok(())
    }
}

/// What an accepted service token gives, shared with the verified-token
/// cache: a request whose token was seen before copies no string.
#[derive(Clone)]
struct VerifiedService {
    identity: Arc<ServiceIdentity>,
    /// The caller's name as the identity other layers scope by.
    client: ClientIdentity,
    permissions: Permissions,
}

//! User tokens at the gateway: [`JwtAuthLayer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use forten_core::idempotency::ClientIdentity;
use http::{HeaderValue, Request};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use tower_layer::Layer;

use crate::cache::VerifiedCache;
use crate::check::{AuthService, RequestCheck};
use crate::error::{AuthError, Rejection};
use crate::identity::{Permissions, UserClaims};
use crate::jwks::JwksCache;
use crate::keys::{KeySet, VerifyingKey};
use crate::rbac::Policy;
use crate::verify::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, UnknownKidHook, Verifier, VerifierSettings,
    bearer_token, unix_now,
};

/// Validates user bearer tokens: an explicit algorithm allow-list, `iss` and
/// `aud` required and checked, `exp` and `nbf` checked with a small leeway
/// (default 30 s), `exp`, `iss`, `aud` and `sub` required; keys from a static
/// [`KeySet`] or a [`JwksCache`]. Tokens over the size limit (default 8 KiB)
/// are rejected before parsing; `jwk` / `jku` / `x5u` headers are ignored.
///
/// Puts the [`UserClaims`] (as `Arc<UserClaims>`: shared, so a request whose
/// token was verified before, with [`cache_verified`](JwtAuthLayerBuilder::cache_verified),
/// costs no copy of them; [`UserClaims::from_extensions`] reads them), an [`ClientIdentity`](crate::ClientIdentity)
/// and, when a [`Policy`] is set, the [`Permissions`](crate::Permissions) its roles grant into
/// request extensions. Answers 401 itself; the inner service does not run.
///
/// ```
/// use forten_auth::{JwtAuthLayer, KeySet, UserClaims, VerifyingKey, jsonwebtoken::Algorithm};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let keys = KeySet::new([VerifyingKey::hs256(&[3u8; 32]).unwrap()]);
/// let layer = JwtAuthLayer::builder()
///     .issuer("auth-service")
///     .audience("api-gateway")
///     .algorithms([Algorithm::HS256])
///     .keys(keys)
///     .build()
///     .unwrap();
/// let svc = layer.layer(service_fn(|req: http::Request<()>| async move {
///     let user = UserClaims::from_extensions(req.extensions()).unwrap().subject.clone();
///     Ok::<_, std::convert::Infallible>(http::Response::new(user))
/// }));
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 401);
/// assert_eq!(res.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
/// # });
/// ```
#[derive(Clone)]
pub struct JwtAuthLayer {
    check: UserTokenCheck,
}

impl fmt::Debug for JwtAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer").finish_non_exhaustive()
    }
}

/// Builder of [`JwtAuthLayer`].
pub struct JwtAuthLayerBuilder {
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    keys: Option<KeySet>,
    jwks: Option<JwksCache>,
    leeway: Duration,
    max_token_bytes: usize,
    roles_claim: String,
    organisation_claim: String,
    policy: Option<Policy>,
    cache_verified: usize,
    keep_token: bool,
}

impl fmt::Debug for JwtAuthLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayerBuilder")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtAuthLayerBuilder {
    /// Adds a trusted issuer (`iss`); at least one is required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Adds an accepted audience (`aud`, this gateway); at least one is required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The algorithm allow-list (required; there is no default on purpose).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Verifies with a static (but rotatable) key set.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Verifies with the keys of a JWKS cache; an unknown `kid` triggers its
    /// rate-limited refetch.
    pub fn jwks(mut self, jwks: &JwksCache) -> Self {
        self.jwks = Some(jwks.clone());
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

    /// The claim holding the roles (default `roles`).
    pub fn roles_claim(mut self, name: impl Into<String>) -> Self {
        self.roles_claim = name.into();
        self
    }

    /// The claim holding the organisation (default `org`).
    pub fn organisation_claim(mut self, name: impl Into<String>) -> Self {
        self.organisation_claim = name.into();
        self
    }

    /// Resolves the user's roles into [`Permissions`](crate::Permissions) with `policy`.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Keeps up to `capacity` verified tokens (default 0: none), so a token
    /// seen again is not verified again: a hit needs the very same token
    /// string, verified against the current key set (a rotation empties the
    /// cache), within its `exp` plus the leeway. Only accepted tokens are
    /// kept; a full cache drops its expired entries, then all of them.
    pub fn cache_verified(mut self, capacity: usize) -> Self {
        self.cache_verified = capacity;
        self
    }

    /// Also puts the accepted token into request extensions, as a
    /// [`UserToken`] (read it with [`UserToken::from_extensions`]), for a
    /// gateway that forwards it to the services it calls: the header value
    /// is made once per verified token (with
    /// [`cache_verified`](Self::cache_verified)) and shared, so forwarding it
    /// neither parses `Authorization` again nor copies the token.
    pub fn keep_token(mut self) -> Self {
        self.keep_token = true;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<JwtAuthLayer, AuthError> {
        if self.leeway > Duration::from_secs(300) {
            return Err(AuthError::Config(
                "leeway above 5 min accepts long-expired tokens".to_owned(),
            ));
        }
        let (keys, on_unknown_kid): (KeySet, Option<UnknownKidHook>) = match (self.keys, self.jwks)
        {
            (Some(_), Some(_)) => {
                return Err(AuthError::Config(
                    "both .keys(...) and .jwks(...) given: choose one key source".to_owned(),
                ));
            }
            (None, None) => {
                return Err(AuthError::Config(
                    "no keys: call .keys(KeySet) or .jwks(&JwksCache)".to_owned(),
                ));
            }
            (Some(keys), None) => (keys, None),
            (None, Some(jwks)) => {
                let keys = jwks.keys();
                let hook: UnknownKidHook = Arc::new(move |kid: &str| jwks.unknown_kid(kid));
                (keys, Some(hook))
            }
        };
        let verifier = Verifier::new(VerifierSettings {
            keys,
            algorithms: self.algorithms,
            issuers: self.issuers,
            audiences: self.audiences,
            leeway: self.leeway,
            max_token_bytes: self.max_token_bytes,
            on_unknown_kid,
        })?;
        Ok(JwtAuthLayer {
            check: UserTokenCheck {
                inner: Arc::new(CheckInner {
                    verifier,
                    roles_claim: self.roles_claim,
                    organisation_claim: self.organisation_claim,
                    policy: self.policy,
                    cache: VerifiedCache::new(self.cache_verified),
                    keep_token: self.keep_token,
                }),
            },
        })
    }
}

impl JwtAuthLayer {
    /// A builder; issuer, audience, algorithms and a key source are required.
    pub fn builder() -> JwtAuthLayerBuilder {
        JwtAuthLayerBuilder {
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: Vec::new(),
            keys: None,
            jwks: None,
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            roles_claim: "roles".to_owned(),
            organisation_claim: "org".to_owned(),
            policy: None,
            cache_verified: 0,
            keep_token: false,
        }
    }

    /// Verifies a token outside a tower stack. The claims are a copy of
    /// what the verified-token cache holds; [`verify_shared`](Self::verify_shared)
    /// hands out the cached ones without copying.
    pub fn verify(&self, token: &str) -> Result<UserClaims, AuthError> {
        Ok(self.check.claims(token)?)
    }

    /// Verifies a token outside a tower stack, as the layer does: the claims
    /// and the permissions the layer's [`policy`](JwtAuthLayerBuilder::policy)
    /// grants, shared with the verified-token cache. For a service that checks
    /// a forwarded user token on every request, a cached token then costs a
    /// lookup and two reference counts, where [`verify`](Self::verify) copies
    /// every claim (the extra claims' map included).
    ///
    /// ```
    /// use forten_auth::{JwtAuthLayer, KeySet, Policy, SigningKey, VerifyingKey};
    /// use jsonwebtoken::Algorithm;
    ///
    /// let secret = b"a-secret-of-at-least-32-bytes-long!!";
    /// let layer = JwtAuthLayer::builder()
    ///     .issuer("auth-service")
    ///     .audience("eventboard")
    ///     .algorithms([Algorithm::HS256])
    ///     .keys(KeySet::new([VerifyingKey::hs256(secret)?]))
    ///     .policy(Policy::builder().role("manager", ["events:approve"]).build()?)
    ///     .cache_verified(1_000)
    ///     .build()?;
    /// let token = SigningKey::hs256(secret)?.sign(&serde_json::json!({
    ///     "iss": "auth-service", "aud": "eventboard", "sub": "u1",
    ///     "exp": 4_102_444_800u64, "roles": ["manager"],
    /// }))?;
    ///
    /// let user = layer.verify_shared(&token)?;
    /// assert_eq!(user.claims().subject, "u1");
    /// assert!(user.permissions().is_some_and(|p| p.contains("events:approve")));
    /// // the second check of the same token shares the first one's claims
    /// let again = layer.verify_shared(&token)?;
    /// assert!(std::sync::Arc::ptr_eq(user.claims(), again.claims()));
    /// # Ok::<(), forten_auth::AuthError>(())
    /// ```
    pub fn verify_shared(&self, token: &str) -> Result<VerifiedUser, AuthError> {
        let verified = self.check.verified(token)?;
        Ok(VerifiedUser {
            claims: Arc::clone(&verified.claims),
            permissions: verified.permissions.clone(),
        })
    }
}

/// A user token [`JwtAuthLayer::verify_shared`] accepted: its claims and the
/// permissions its roles grant, shared with the layer's verified-token cache
/// (cloning one counts references, it copies nothing).
#[derive(Debug, Clone)]
pub struct VerifiedUser {
    claims: Arc<UserClaims>,
    permissions: Option<Permissions>,
}

impl VerifiedUser {
    /// The token's claims.
    pub fn claims(&self) -> &Arc<UserClaims> {
        &self.claims
    }

    /// What the token's roles grant under the layer's policy; `None` when
    /// the layer was built without one.
    pub fn permissions(&self) -> Option<&Permissions> {
        self.permissions.as_ref()
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = AuthService<S, UserTokenCheck>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.check.clone())
    }
}

struct CheckInner {
    verifier: Verifier,
    roles_claim: String,
    organisation_claim: String,
    policy: Option<Policy>,
    cache: Option<VerifiedCache<Arc<Verified>>>,
    keep_token: bool,
}

/// What an accepted user token gives: its claims, and the permissions its
/// roles grant when a policy is set.
struct Verified {
    claims: Arc<UserClaims>,
    /// The subject as the identity other layers scope by (shared, so a
    /// cached token's requests do not copy it).
    identity: ClientIdentity,
    permissions: Option<Permissions>,
    /// The token, when the layer keeps it ([`JwtAuthLayerBuilder::keep_token`]).
    token: Option<UserToken>,
}

impl Verified {
    /// The claims, moved out when this is the last reference (no cache),
    /// cloned when the cache still holds them.
    fn into_claims(this: Arc<Self>) -> UserClaims {
        match Arc::try_unwrap(this) {
            Ok(only) => Arc::unwrap_or_clone(only.claims),
            Err(shared) => UserClaims::clone(&shared.claims),
        }
    }
}

/// The [`RequestCheck`] of [`JwtAuthLayer`].
#[derive(Clone)]
pub struct UserTokenCheck {
    inner: Arc<CheckInner>,
}

impl fmt::Debug for UserTokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokenCheck").finish_non_exhaustive()
    }
}

fn take_string(map: &mut Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match map.remove(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Rejection::BadClaim(name.to_owned())),
        None => Err(Rejection::MissingClaim(name.to_owned())),
    }
}

impl UserTokenCheck {
    fn claims(&self, token: &str) -> Result<UserClaims, Rejection> {
        self.verified(token).map(Verified::into_claims)
    }

    /// The token's claims and permissions: from the cache, or verified (and cached).
    fn verified(&self, token: &str) -> Result<Arc<Verified>, Rejection> {
        let inner = &*self.inner;
        let keys = inner.verifier.keys();
        let now = unix_now();
        if let Some(hit) = inner.cache.as_ref().and_then(|c| c.get(token, &keys, now)) {
            return Ok(hit);
        }
        let claims = self.parse(token, &keys)?;
        let permissions = inner
            .policy
            .as_ref()
            .map(|p| p.permissions_for(&claims.roles));
        let valid_through = inner.verifier.valid_through(claims.expires_at);
        let token_value = if inner.keep_token {
            // the check made sure the token is a header's visible ASCII
            let value = HeaderValue::from_str(token).map_err(|_| Rejection::BadHeader)?;
            Some(UserToken(value))
        } else {
            None
        };
        let verified = Arc::new(Verified {
            identity: ClientIdentity::new(claims.subject.as_str()),
            claims: Arc::new(claims),
            permissions,
            token: token_value,
        });
        if let Some(cache) = &inner.cache {
            cache.insert(token, keys, valid_through, verified.clone(), now);
        }
        Ok(verified)
    }

    fn parse(&self, token: &str, keys: &[VerifyingKey]) -> Result<UserClaims, Rejection> {
        let inner = &*self.inner;
        let mut map: Map<String, Value> = inner.verifier.verify_with(token, keys)?;
        let subject = take_string(&mut map, "sub")?;
        let issuer = take_string(&mut map, "iss")?;
        let expires_at = map
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| Rejection::BadClaim("exp".to_owned()))?;
        let roles = match map.remove(&inner.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(Rejection::BadClaim(inner.roles_claim.clone())),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Rejection::BadClaim(inner.roles_claim.clone())),
        };
        let organisation = match map.remove(&inner.organisation_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(Rejection::BadClaim(inner.organisation_claim.clone())),
        };
        Ok(UserClaims {
            subject,
            issuer,
            roles,
            organisation,
            expires_at,
            custom: map,
        })
    }
}

impl RequestCheck for UserTokenCheck {
    fn check<B>(&self, req: &mut Request<B>) -> Result<(), Rejection> {
        let verified = self.verified(bearer_token(req.headers())?)?;
        let ext = req.extensions_mut();
        ext.insert(verified.identity.clone());
        if let Some(permissions) = &verified.permissions {
            ext.insert(permissions.clone());
        }
        ext.insert(Arc::clone(&verified.claims));
        if let Some(token) = &verified.token {
            ext.insert(token.clone());
        }
        Ok(())
    }
}

/// The user token [`JwtAuthLayer`] accepted on a request, as a header value
/// ready to forward (the token alone, without `Bearer `). Present only when
/// the layer was built with [`keep_token`](JwtAuthLayerBuilder::keep_token).
/// Cloning it counts a reference; it copies nothing.
///
/// ```
/// use forten_auth::{JwtAuthLayer, KeySet, UserToken, VerifyingKey, jsonwebtoken::Algorithm};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let key = [3u8; 32];
/// let layer = JwtAuthLayer::builder()
///     .issuer("auth-service")
///     .audience("api-gateway")
///     .algorithms([Algorithm::HS256])
///     .keys(KeySet::new([VerifyingKey::hs256(&key).unwrap()]))
///     .keep_token()
///     .build()
///     .unwrap();
/// let svc = layer.layer(service_fn(|req: http::Request<()>| async move {
///     let token = UserToken::from_extensions(req.extensions()).unwrap();
///     Ok::<_, std::convert::Infallible>(http::Response::new(token.as_str().to_owned()))
/// }));
/// let claims = serde_json::json!({"iss": "auth-service", "aud": "api-gateway",
///     "sub": "ada", "exp": 4_000_000_000u64});
/// let token = jsonwebtoken::encode(
///     &jsonwebtoken::Header::new(Algorithm::HS256),
///     &claims,
///     &jsonwebtoken::EncodingKey::from_secret(&key),
/// )
/// .unwrap();
/// let req = http::Request::builder()
///     .header("authorization", format!("Bearer {token}"))
///     .body(())
///     .unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// let http_body_util::Either::Left(body) = res.into_body() else { panic!("refused") };
/// assert_eq!(body, token);
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserToken(HeaderValue);

impl UserToken {
    /// The token [`JwtAuthLayer`] put into these request extensions, if it
    /// accepted the request's token and keeps tokens.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<&UserToken> {
        extensions.get::<UserToken>()
    }

    /// The token as a header value (to send it on, say in `x-user-token`).
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        // made from a `&str`: always visible ASCII
        self.0.to_str().unwrap_or_default()
    }
}

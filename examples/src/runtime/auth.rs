//! Keys, tokens and identities shared by the services.
//!
//! How identity travels: the client sends its user token (issued by
//! auth-service) to the gateway as `Authorization: Bearer`. The gateway checks
//! it with forten-auth's [`JwtAuthLayer`], then calls a service with *its own*
//! service token in `Authorization` (forten-client adds it per attempt) and
//! forwards the user's token unchanged in [`USER_TOKEN_HEADER`]. Each service
//! checks the service token with [`ServiceAuthLayer`] (only `api-gateway` may
//! call) and verifies the forwarded user token again with the same verifier
//! ([`CurrentUser`]): a service trusts no unsigned identity header, so a
//! caller that reaches a service directly cannot claim to be someone else.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use forten_auth::jsonwebtoken::Algorithm;
use forten_auth::{
    ApiKeyLayer, AuthError, JwtAuthLayer, KeySet, Permissions, Policy, ServiceAuth,
    ServiceAuthLayer, SigningKey, UserClaims, VerifyingKey,
};
use http::HeaderValue;
use http::request::Parts;
use serde::Serialize;

use super::input::ApiError;

/// The header carrying the user's token from the gateway to a service.
pub const USER_TOKEN_HEADER: &str = "x-user-token";
/// `iss` of user tokens.
pub const USER_TOKEN_ISSUER: &str = "auth-service";
/// `aud` of user tokens.
pub const USER_TOKEN_AUDIENCE: &str = "eventboard";
/// How long a user token is valid.
pub const USER_TOKEN_LIFETIME: Duration = Duration::from_hours(1);
/// The development secret of user tokens (printed as such by `forten-demo`).
pub const DEV_USER_TOKEN_SECRET: &str = "forten-dev-user-token-secret-not-for-production";
/// The development secret of service tokens (printed as such by `forten-demo`).
pub const DEV_SERVICE_TOKEN_SECRET: &str = "forten-dev-service-token-secret-not-for-production";
/// The development key services register with (printed as such by `forten-demo`).
pub const DEV_REGISTRY_KEY: &str = "forten-dev-registry-key-not-for-production";
/// The header carrying the registry key (forten-auth's internal API key header).
pub const REGISTRY_KEY_HEADER: &str = "x-internal-auth";
/// The permission approve and reject need.
pub const APPROVE: &str = "events:approve";

/// The system's secrets.
#[derive(Clone)]
pub struct Secrets {
    /// HS256: signs user tokens (auth-service) and verifies them (everyone).
    pub user_token: String,
    /// HS256: signs and verifies service-to-service tokens.
    pub service_token: String,
    /// The internal API key (`x-internal-auth`) a service must send to
    /// register, heartbeat or deregister in the gateway's registry (reads are open).
    pub registry_key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

impl Secrets {
    /// The development secrets.
    pub fn dev() -> Self {
        Secrets {
            user_token: DEV_USER_TOKEN_SECRET.to_owned(),
            service_token: DEV_SERVICE_TOKEN_SECRET.to_owned(),
            registry_key: DEV_REGISTRY_KEY.to_owned(),
        }
    }

    /// Whether these are the development secrets.
    pub fn is_dev(&self) -> bool {
        self.user_token == DEV_USER_TOKEN_SECRET
            || self.service_token == DEV_SERVICE_TOKEN_SECRET
            || self.registry_key == DEV_REGISTRY_KEY
    }
}

/// The roles and what they may do: member {events:read, events:write};
/// manager and admin add events:approve.
pub fn policy() -> Policy {
    let member = ["events:read", "events:write"];
    Policy::builder()
        .role("member", member)
        .role("manager", member)
        .role("manager", [APPROVE])
        .role("admin", member)
        .role("admin", [APPROVE])
        .build()
        .unwrap_or_default()
}

/// How many verified user tokens a service keeps (forten-auth's
/// `cache_verified`): each request carries its user's token, so the
/// signature check and claims parsing run once per session, not per request.
pub const VERIFIED_USER_TOKENS: usize = 10_000;
/// How many verified service tokens a service keeps (a caller reuses its
/// token for minutes).
pub const VERIFIED_SERVICE_TOKENS: usize = 64;

/// The keys built from [`Secrets`]: sign and verify user and service tokens.
/// Cloning shares them (one `Arc`: the keys go into every request's extensions).
#[derive(Clone, Debug)]
pub struct Keys {
    inner: Arc<KeysInner>,
}

#[derive(Debug)]
struct KeysInner {
    user_signing: SigningKey,
    users: JwtAuthLayer,
    gateway_users: JwtAuthLayer,
    service_signing: SigningKey,
    service_verifying: KeySet,
    policy: Policy,
    registry: ApiKeyLayer,
}

#[derive(Serialize)]
struct UserTokenClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    roles: [&'a str; 1],
    org: &'a str,
    email: &'a str,
    name: &'a str,
}

/// What a user token says about its user.
#[derive(Debug, Clone, Copy)]
pub struct TokenUser<'a> {
    /// The user id (`sub`).
    pub id: &'a str,
    /// The user's role.
    pub role: &'a str,
    /// The user's organization (`org`).
    pub organization: &'a str,
    /// The user's email.
    pub email: &'a str,
    /// The user's name.
    pub name: &'a str,
}

impl Keys {
    /// Builds the keys; secrets shorter than 32 bytes are refused.
    pub fn new(secrets: &Secrets) -> Result<Self, AuthError> {
        let user_signing = SigningKey::hs256(secrets.user_token.as_bytes())?.with_kid("user-1");
        let user_keys =
            KeySet::new([VerifyingKey::hs256(secrets.user_token.as_bytes())?.with_kid("user-1")]);
        let user_tokens = || {
            JwtAuthLayer::builder()
                .issuer(USER_TOKEN_ISSUER)
                .audience(USER_TOKEN_AUDIENCE)
                .algorithms([Algorithm::HS256])
                .keys(user_keys.clone())
                .cache_verified(VERIFIED_USER_TOKENS)
        };
        // The services authorize (CurrentUser: the policy's permissions).
        let users = user_tokens().policy(policy()).build()?;
        // The gateway authenticates and forwards the token (x-user-token)
        // without parsing or copying it again; it grants nothing itself, so
        // it resolves no permissions.
        let gateway_users = user_tokens().keep_token().build()?;
        let policy = policy();
        let registry = ApiKeyLayer::builder()
            .key(secrets.registry_key.as_bytes())
            .build()?;
        let service_signing =
            SigningKey::hs256(secrets.service_token.as_bytes())?.with_kid("service-1");
        let service_keys = KeySet::new([
            VerifyingKey::hs256(secrets.service_token.as_bytes())?.with_kid("service-1")
        ]);
        Ok(Keys {
            inner: Arc::new(KeysInner {
                user_signing,
                users,
                gateway_users,
                service_signing,
                service_verifying: service_keys,
                policy,
                registry,
            }),
        })
    }

    /// The gateway's guard of registry writes (`x-internal-auth`).
    pub fn registry_guard(&self) -> ApiKeyLayer {
        self.inner.registry.clone()
    }

    /// The role policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The gateway's user-token layer: puts the [`ClientIdentity`](forten_auth::ClientIdentity),
    /// `Arc<`[`UserClaims`]`>` and the token ([`forten_auth::UserToken`], to
    /// forward) into extensions. No [`Permissions`]: the services decide
    /// what a user may do ([`CurrentUser::require`]).
    pub fn user_layer(&self) -> JwtAuthLayer {
        self.inner.gateway_users.clone()
    }

    /// Signs a user token; returns it with its lifetime.
    pub fn issue_user_token(&self, user: TokenUser<'_>) -> Result<(String, Duration), AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = UserTokenClaims {
            iss: USER_TOKEN_ISSUER,
            aud: USER_TOKEN_AUDIENCE,
            sub: user.id,
            iat: now,
            exp: now + USER_TOKEN_LIFETIME.as_secs(),
            roles: [user.role],
            org: user.organization,
            email: user.email,
            name: user.name,
        };
        Ok((self.inner.user_signing.sign(&claims)?, USER_TOKEN_LIFETIME))
    }

    /// Verifies a user token.
    pub fn verify_user_token(&self, token: &str) -> Result<UserClaims, AuthError> {
        self.inner.users.verify(token)
    }

    /// The calling side of service auth for the service `me`.
    pub fn service_auth(&self, me: &str) -> Result<ServiceAuth, AuthError> {
        ServiceAuth::builder(me)
            .signing_key(self.inner.service_signing.clone())
            .build()
    }

    /// The called side: only `callers` may call `me`.
    pub fn service_auth_layer(
        &self,
        me: &str,
        callers: &[&str],
    ) -> Result<ServiceAuthLayer, AuthError> {
        ServiceAuthLayer::builder(me, self.inner.service_verifying.clone())
            .allow_callers(callers.iter().copied())
            .cache_verified(VERIFIED_SERVICE_TOKENS)
            .build()
    }
}

/// The user a service request is made for: the forwarded user token
/// ([`USER_TOKEN_HEADER`]), verified again with the [`Keys`] in the request
/// extensions. Missing or invalid: 401.
///
/// Claims and permissions are shared with the verified-token cache and the
/// token with the request's header ([`JwtAuthLayer::verify_shared`]): a
/// request whose token was seen before copies none of them.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The verified claims.
    pub claims: Arc<UserClaims>,
    /// What the user's roles grant (the [`policy`]).
    pub permissions: Permissions,
    /// The token as sent (to pass on, e.g. from the dashboard).
    pub token: HeaderValue,
}

impl CurrentUser {
    /// The user id.
    pub fn id(&self) -> &str {
        &self.claims.subject
    }

    /// The user's organization (tokens without one belong to none: "").
    pub fn organization(&self) -> &str {
        self.claims.organisation.as_deref().unwrap_or("")
    }

    /// 403 unless the user holds `permission`.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the permission {permission}, which your role does not grant"
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let keys = parts
            .extensions
            .get::<Keys>()
            .ok_or_else(|| ApiError::unauthenticated("this service cannot verify user tokens"))?;
        let header = parts
            .headers
            .get(USER_TOKEN_HEADER)
            .ok_or_else(|| ApiError::unauthenticated("no user token was forwarded"))?;
        let token = header
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the user token is not visible ASCII"))?;
        let user =
            keys.inner.users.verify_shared(token).map_err(|e| {
                ApiError::unauthenticated(format!("the user token is invalid: {e}"))
            })?;
        // The layer's policy is this one (`Keys::new`); computed here only
        // if a layer without one ever verified the token.
        let permissions = match user.permissions() {
            Some(p) => p.clone(),
            None => keys.inner.policy.permissions_for(&user.claims().roles),
        };
        Ok(CurrentUser {
            claims: Arc::clone(user.claims()),
            permissions,
            token: header.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request head a service's handler sees: the [`Keys`] in
    /// extensions (as `server_stack` puts them) and `token`, if any.
    fn parts(keys: &Keys, token: Option<HeaderValue>) -> Parts {
        let mut req = http::Request::new(());
        req.extensions_mut().insert(keys.clone());
        if let Some(token) = token {
            req.headers_mut().insert(USER_TOKEN_HEADER, token);
        }
        req.into_parts().0
    }

    /// The 401's detail for `token`.
    async fn refused(keys: &Keys, token: Option<HeaderValue>) -> String {
        match CurrentUser::from_request_parts(&mut parts(keys, token), &()).await {
            Ok(_) => panic!("accepted"),
            Err(ApiError(forten_core::Error::Unauthenticated { detail })) => detail,
            Err(ApiError(other)) => panic!("not a 401: {other}"),
        }
    }

    #[tokio::test]
    async fn a_forwarded_token_that_is_missing_unreadable_or_invalid_is_a_401_saying_which() {
        let keys = Keys::new(&Secrets::dev()).unwrap();
        assert_eq!(refused(&keys, None).await, "no user token was forwarded");
        let not_ascii = HeaderValue::from_bytes(b"\xffabc").unwrap();
        assert_eq!(
            refused(&keys, Some(not_ascii)).await,
            "the user token is not visible ASCII"
        );
        let garbage = HeaderValue::from_static("not-a-jwt");
        assert!(
            refused(&keys, Some(garbage))
                .await
                .starts_with("the user token is invalid: "),
        );
    }

    #[tokio::test]
    async fn a_token_seen_before_shares_its_claims_and_grants_the_roles_permissions() {
        let keys = Keys::new(&Secrets::dev()).unwrap();
        let (token, _) = keys
            .issue_user_token(TokenUser {
                id: "u1",
                role: "manager",
                organization: "acme",
                email: "m@acme.test",
                name: "Manager",
            })
            .unwrap();
        let value = HeaderValue::from_str(&token).unwrap();
        let first = CurrentUser::from_request_parts(&mut parts(&keys, Some(value.clone())), &())
            .await
            .unwrap();
        let again = CurrentUser::from_request_parts(&mut parts(&keys, Some(value.clone())), &())
            .await
            .unwrap();
        assert_eq!(first.id(), "u1");
        assert_eq!(first.organization(), "acme");
        assert_eq!(first.token, value);
        assert!(first.require(APPROVE).is_ok());
        assert!(
            Arc::ptr_eq(&first.claims, &again.claims),
            "the cached claims, not a copy"
        );
    }
}

//! Authentication and authorization as tower layers: service-to-service
//! JWTs, user JWTs (static keys or JWKS), scopes, RBAC and internal API keys.
//!
//! - [`ServiceAuth`] mints (and caches per target) the tokens a service sends
//!   ([`ServiceTokenLayer`] adds them to outbound requests);
//!   [`ServiceAuthLayer`] checks them on the called service and puts a
//!   [`ServiceIdentity`] into request extensions.
//! - [`JwtAuthLayer`] validates user tokens at the gateway, with keys from a
//!   [`KeySet`] or a [`JwksCache`], and puts the [`UserClaims`] into extensions (read them with [`UserClaims::from_extensions`]).
//! - [`Policy`] maps roles to permissions; [`RequirePermissionLayer`] answers
//!   403 when one is missing.
//! - [`ApiKeyLayer`] checks an internal API key (`x-internal-auth`) in constant time.
//!
//! Every layer answers 401 / 403 itself with forten-core's JSON:API error
//! document (DESIGN 4.3; a 401 carries `WWW-Authenticate: Bearer
//! error="invalid_token"`), and the inner service does not run. Futures are
//! concrete (no boxing per request).
//!
//! Crypto is jsonwebtoken 11 with its `aws_lc_rs` backend. Exactly one backend
//! feature must be on in the whole build, or the first sign/verify panics.
//!
//! ```
//! use forten_auth::{KeySet, ServiceAuth, ServiceAuthLayer, ServiceIdentity, SigningKey};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Both sides share the signing key's public half (here an HS256 secret).
//! let key = SigningKey::hs256(b"a shared secret of 32 bytes or more!").unwrap().with_kid("2026-11");
//! let server_keys = KeySet::new([key.verifying_key().unwrap()]);
//!
//! // caller: "orders"
//! let orders = ServiceAuth::builder("orders").signing_key(key).scopes(["events:write"]).build().unwrap();
//!
//! // callee: "events", accepting calls from "orders" with scope events:write
//! let events = ServiceAuthLayer::builder("events", server_keys)
//!     .allow_callers(["orders"])
//!     .require_scopes(["events:write"])
//!     .build()
//!     .unwrap()
//!     .layer(service_fn(|req: http::Request<()>| async move {
//!         let caller = ServiceIdentity::from_extensions(req.extensions()).unwrap();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(caller.name.clone()))
//!     }));
//!
//! let req = http::Request::builder()
//!     .header(http::header::AUTHORIZATION, orders.auth_header("events").unwrap())
//!     .body(())
//!     .unwrap();
//! let res = events.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # });
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api_key;
mod cache;
mod check;
mod client;
mod error;
mod identity;
mod jwks;
mod jwt;
mod keys;
mod rbac;
mod service;
mod verify;

pub use api_key::{
    ApiKeyCheck, ApiKeyLayer, ApiKeyLayerBuilder, MIN_API_KEY_BYTES, X_INTERNAL_AUTH,
};
pub use check::{AuthFuture, AuthService, RequestCheck, rejection_response};
pub use client::{ServiceToken, ServiceTokenFuture, ServiceTokenLayer};
pub use error::{AuthError, Rejection};
/// The authenticated caller (user `sub` or calling service name), as the JWT
/// and service layers record it in request extensions; forten-core's
/// idempotency layer scopes its entries by it.
pub use forten_core::idempotency::ClientIdentity;
pub use identity::{Permissions, ServiceIdentity, UserClaims};
pub use jwks::{FetchFuture, JwksCache, JwksCacheBuilder};
pub use jwt::{JwtAuthLayer, JwtAuthLayerBuilder, UserToken, UserTokenCheck, VerifiedUser};
pub use keys::{KeySet, MIN_HMAC_SECRET_BYTES, SigningKey, VerifyingKey};
pub use rbac::{PermissionCheck, Policy, PolicyBuilder, RequirePermissionLayer, RouteTable};
pub use service::{
    DEFAULT_TOKEN_LIFETIME, ServiceAuth, ServiceAuthBuilder, ServiceAuthLayer,
    ServiceAuthLayerBuilder, ServiceClaims, ServiceTokenCheck,
};
pub use verify::{Audience, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES};

/// The jsonwebtoken crate this one is built on (for [`jsonwebtoken::Algorithm`]).
pub use jsonwebtoken;

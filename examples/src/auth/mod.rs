//! `auth-service` (:3001): signup, login, me and token validation; issues
//! user JWTs (HS256, `iss` auth-service, `aud` eventboard, `roles`, `org`);
//! publishes `user.registered`. Passwords are hashed with argon2id.
//!
//! Internal API (every route needs the gateway's service token):
//!
//! | route | answer |
//! |---|---|
//! | `POST /users` `{email,password,name,organization,role?}` | 201 user; 409 duplicate email; 422 with `source.pointer` |
//! | `POST /sessions` `{email,password}` | 200 `{accessToken,tokenType,expiresIn}`; 401 |
//! | `GET /users/me` (user token in `x-user-token`) | 200 user |
//! | `POST /tokens/validate` `{token}` | 200 `{valid,userId,roles,organization,expiresAt}`; 401 |

mod store;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use forten_health::{Check, CheckResult};
use serde_json::{Value, json};

pub use store::{DuplicateEmail, MemoryUsers, Passwords, StoredUser, User, UserRepository};

use crate::runtime::auth::TokenUser;
use crate::runtime::guard::internal;
use crate::runtime::input::check_len;
use crate::runtime::names::AUTH;
use crate::runtime::{
    ApiError, ApiResult, Bus, CurrentUser, JsonObject, Keys, Launch, ServiceContext, publish,
    server_stack,
};
use crate::system::SystemError;

/// What auth-service keeps across restarts (its "database").
#[derive(Clone)]
pub struct AuthStore {
    /// The users.
    pub users: Arc<dyn UserRepository>,
    /// The password hasher.
    pub passwords: Passwords,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore").finish_non_exhaustive()
    }
}

impl Default for AuthStore {
    fn default() -> Self {
        AuthStore {
            users: Arc::new(MemoryUsers::new()),
            passwords: Passwords::new(),
        }
    }
}

#[derive(Clone)]
struct AuthState {
    store: AuthStore,
    keys: Keys,
    bus: Bus,
}

/// The roles a user may choose at signup (a demo simplification; `admin` is refused).
const SELF_SERVICE_ROLES: [&str; 2] = ["member", "manager"];

/// Builds auth-service: connects its bus, its routes behind service auth,
/// its health endpoints and the server stack.
pub async fn launch(ctx: &ServiceContext, store: AuthStore) -> Result<Launch, SystemError> {
    let bus = ctx.bus.connect(AUTH).await?;
    let users = Arc::clone(&store.users);
    let monitor = ctx
        .monitor(AUTH, Some(&bus))
        .check(
            Check::from_fn("users:count", move || {
                let n = users.count();
                async move { CheckResult::pass().with_observed_value(n) }
            })
            .informational(),
        )
        .build()?;
    let state = AuthState {
        store,
        keys: ctx.keys.clone(),
        bus: bus.clone(),
    };
    let routes = Router::new()
        .route("/users", post(signup))
        .route("/sessions", post(login))
        .route("/users/me", get(me))
        .route("/tokens/validate", post(validate))
        .with_state(state);
    let internal = internal(routes, AUTH, &ctx.keys)?;
    let router = server_stack(
        AUTH,
        internal.nest_service("/health", monitor.routes().nested()),
        ctx.max_deadline,
        Some(&ctx.keys),
    );
    Ok(Launch {
        name: AUTH,
        router,
        monitor,
        registry: Some(ctx.registry.clone()),
        bus: Some(bus),
        subscriptions: Vec::new(),
    })
}

/// A plausible email: one `@`, a non-empty local part, a dotted domain, no spaces.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

async fn signup(
    State(s): State<AuthState>,
    body: JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let email = body.required_str("email")?.trim().to_owned();
    if !valid_email(&email) {
        return Err(ApiError::invalid(
            "/email",
            "`email` must be an address like name@example.com",
        ));
    }
    let password = body.required_str("password")?.to_owned();
    check_len("password", &password, 8, 128)?;
    let name = body.required_str("name")?.trim().to_owned();
    check_len("name", &name, 1, 100)?;
    let organization = body.required_str("organization")?.trim().to_owned();
    check_len("organization", &organization, 1, 100)?;
    let role = body.optional_str("role")?.unwrap_or("member").to_owned();
    if role == "admin" {
        return Err(ApiError::invalid(
            "/role",
            "`admin` cannot be chosen at signup; choose member or manager",
        ));
    }
    if !SELF_SERVICE_ROLES.contains(&role.as_str()) {
        return Err(ApiError::invalid(
            "/role",
            "`role` must be member or manager",
        ));
    }
    if s.store.users.by_email(&email).is_some() {
        return Err(ApiError::conflict("this email is already registered"));
    }
    let passwords = s.store.passwords.clone();
    let password_hash = tokio::task::spawn_blocking(move || passwords.hash(&password))
        .await
        .map_err(|_| ApiError::unavailable("password hashing was interrupted"))?
        .map_err(|e| ApiError::unavailable(format!("password hashing failed: {e}")))?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        name,
        organization,
        role,
    };
    s.store
        .users
        .insert(StoredUser {
            user: user.clone(),
            password_hash,
        })
        .map_err(|DuplicateEmail| ApiError::conflict("this email is already registered"))?;
    publish(&s.bus, "user.registered", "user", &user.id, &user).await;
    Ok((StatusCode::CREATED, Json(json!({ "data": user }))))
}

async fn login(State(s): State<AuthState>, body: JsonObject) -> ApiResult<Json<Value>> {
    let email = body.required_str("email")?.trim().to_owned();
    let password = body.required_str("password")?.to_owned();
    let stored = s.store.users.by_email(&email);
    let passwords = s.store.passwords.clone();
    let hash = stored.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || passwords.verify(&password, hash.as_deref()))
        .await
        .unwrap_or(false);
    let user = match stored {
        Some(u) if ok => u.user,
        _ => return Err(ApiError::unauthenticated("wrong email or password")),
    };
    let (token, lifetime) = s
        .keys
        .issue_user_token(TokenUser {
            id: &user.id,
            role: &user.role,
            organization: &user.organization,
            email: &user.email,
            name: &user.name,
        })
        .map_err(|e| ApiError::unavailable(format!("cannot issue a token: {e}")))?;
    Ok(Json(json!({ "data": {
        "accessToken": token,
        "tokenType": "Bearer",
        "expiresIn": lifetime.as_secs(),
    }})))
}

async fn me(State(s): State<AuthState>, user: CurrentUser) -> ApiResult<Json<Value>> {
    let found = s
        .store
        .users
        .by_id(user.id())
        .ok_or_else(|| ApiError::not_found("the token's user does not exist (any more)"))?;
    Ok(Json(json!({ "data": found })))
}

async fn validate(State(s): State<AuthState>, body: JsonObject) -> ApiResult<Json<Value>> {
    let token = body.required_str("token")?;
    let claims = s
        .keys
        .verify_user_token(token)
        .map_err(|e| ApiError::unauthenticated(format!("the token is invalid: {e}")))?;
    Ok(Json(json!({ "data": {
        "valid": true,
        "userId": claims.subject,
        "roles": claims.roles,
        "organization": claims.organisation,
        "expiresAt": claims.expires_at,
    }})))
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn email_shapes() {
        for ok in ["a@b.io", "first.last+tag@example.co.uk"] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@", "@b.io", "a@b", "a@@b.io", "a b@c.io", "a@.io", "a@b.io.",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}

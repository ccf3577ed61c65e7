//! What the auth layers put into request extensions.

use std::collections::HashSet;
use std::sync::Arc;

use http::Extensions;

/// The calling service, put into request extensions by
/// [`ServiceAuthLayer`](crate::ServiceAuthLayer) as `Arc<ServiceIdentity>`
/// (shared with its verified-token cache); read it with
/// [`from_extensions`](Self::from_extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// The caller's name (the token's `iss`).
    pub name: String,
    /// The scopes the token grants.
    pub scopes: Vec<String>,
}

impl ServiceIdentity {
    /// The caller [`ServiceAuthLayer`](crate::ServiceAuthLayer) put into
    /// these request extensions, if it accepted the request's token.
    pub fn from_extensions(extensions: &Extensions) -> Option<&ServiceIdentity> {
        extensions.get::<Arc<ServiceIdentity>>().map(|s| &**s)
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The authenticated user, put into request extensions by
/// [`JwtAuthLayer`](crate::JwtAuthLayer) as `Arc<UserClaims>` (shared with
/// its verified-token cache); read them with [`from_extensions`](Self::from_extensions).
#[derive(Debug, Clone, PartialEq)]
pub struct UserClaims {
    /// `sub`: who the user is.
    pub subject: String,
    /// `iss`: who issued the token.
    pub issuer: String,
    /// The roles claim (default claim name `roles`; an array or a space-separated string).
    pub roles: Vec<String>,
    /// The organisation claim (default claim name `org`), if present.
    pub organisation: Option<String>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Every other claim, as sent.
    pub custom: serde_json::Map<String, serde_json::Value>,
}

impl UserClaims {
    /// The claims [`JwtAuthLayer`](crate::JwtAuthLayer) put into these
    /// request extensions, if it accepted the request's token.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use forten_auth::UserClaims;
    ///
    /// let mut req = http::Request::new(());
    /// assert!(UserClaims::from_extensions(req.extensions()).is_none());
    /// # let claims = UserClaims { subject: "ada".into(), issuer: "auth".into(), roles: vec![],
    /// #     organisation: None, expires_at: 0, custom: Default::default() };
    /// req.extensions_mut().insert(Arc::new(claims)); // what the layer does
    /// assert_eq!(UserClaims::from_extensions(req.extensions()).unwrap().subject, "ada");
    /// ```
    pub fn from_extensions(extensions: &Extensions) -> Option<&UserClaims> {
        extensions.get::<Arc<UserClaims>>().map(|c| &**c)
    }

    /// Whether the user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The permissions the caller holds, put into request extensions by the JWT
/// layer (its roles resolved through a [`Policy`](crate::Policy)) and by the
/// service layer (its scopes). [`RequirePermissionLayer`](crate::RequirePermissionLayer)
/// reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(Arc<HashSet<String>>);

impl Permissions {
    /// A set holding `permissions`.
    pub fn new<I, P>(permissions: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        Permissions(Arc::new(permissions.into_iter().map(Into::into).collect()))
    }

    /// Whether `permission` is held (or the wildcard `*`).
    pub fn contains(&self, permission: &str) -> bool {
        self.0.contains(permission) || self.0.contains("*")
    }

    /// Iterates the held permissions.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

//! Role-based access control: a [`Policy`] maps roles to permissions;
//! [`RequirePermissionLayer`] answers 403 when the caller lacks one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use http::{Method, Request};
use tower_layer::Layer;

use crate::check::{AuthService, RequestCheck};
use crate::error::{AuthError, Rejection};
use crate::identity::Permissions;

/// Maps roles to the permissions they grant. A permission `*` grants everything.
///
/// ```
/// use forten_auth::Policy;
/// let policy = Policy::builder()
///     .role("viewer", ["events:read"])
///     .role("approver", ["events:read", "events:approve"])
///     .build()
///     .unwrap();
/// let p = policy.permissions_for(&["viewer".to_owned()]);
/// assert!(p.contains("events:read"));
/// assert!(!p.contains("events:approve"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: Arc<HashMap<String, Vec<String>>>,
}

/// Builder of [`Policy`].
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    roles: HashMap<String, Vec<String>>,
}

impl PolicyBuilder {
    /// Grants `permissions` to `role` (adds to what the role already has).
    pub fn role<I, P>(mut self, role: impl Into<String>, permissions: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.roles
            .entry(role.into())
            .or_default()
            .extend(permissions.into_iter().map(Into::into));
        self
    }

    /// Validates the policy (no empty role or permission names).
    pub fn build(self) -> Result<Policy, AuthError> {
        for (role, perms) in &self.roles {
            if role.is_empty() || perms.iter().any(String::is_empty) {
                return Err(AuthError::Config(format!(
                    "policy role {role:?} has an empty name or permission"
                )));
            }
        }
        Ok(Policy {
            roles: Arc::new(self.roles),
        })
    }
}

impl Policy {
    /// A builder.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// The permissions granted by `roles` together (unknown roles grant nothing).
    pub fn permissions_for(&self, roles: &[String]) -> Permissions {
        let mut set: HashSet<&str> = HashSet::new();
        for role in roles {
            if let Some(perms) = self.roles.get(role) {
                set.extend(perms.iter().map(String::as_str));
            }
        }
        Permissions::new(set)
    }
}

/// Requires a permission per request: one fixed permission, or a route table.
/// Reads the [`Permissions`] extension an auth layer put there (place this
/// layer inside `JwtAuthLayer` with a policy, or inside `ServiceAuthLayer`,
/// whose scopes count as permissions). Answers 403 when the permission is
/// missing and 401 when no auth layer ran; the inner service does not run.
///
/// ```
/// use forten_auth::{Permissions, RequirePermissionLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let svc = RequirePermissionLayer::new("events:approve").layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Permissions::new(["events:read"]));
/// assert_eq!(svc.oneshot(req).await.unwrap().status(), 403);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct RequirePermissionLayer {
    check: PermissionCheck,
}

impl RequirePermissionLayer {
    /// Every request needs `permission`.
    pub fn new(permission: impl Into<String>) -> Self {
        RequirePermissionLayer {
            check: PermissionCheck::Fixed(Arc::from(permission.into())),
        }
    }

    /// The permission depends on method and path, per `routes`.
    pub fn routes(routes: RouteTable) -> Self {
        RequirePermissionLayer {
            check: PermissionCheck::Routes(Arc::new(routes)),
        }
    }
}

impl<S> Layer<S> for RequirePermissionLayer {
    type Service = AuthService<S, PermissionCheck>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.check.clone())
    }
}

/// The [`RequestCheck`] of [`RequirePermissionLayer`].
#[derive(Debug, Clone)]
pub enum PermissionCheck {
    /// One permission for every request.
    Fixed(Arc<str>),
    /// A permission per route.
    Routes(Arc<RouteTable>),
}

impl RequestCheck for PermissionCheck {
    fn check<B>(&self, req: &mut Request<B>) -> Result<(), Rejection> {
        let needed: &str = match self {
            PermissionCheck::Fixed(p) => p,
            PermissionCheck::Routes(table) => {
                match table.permission_for(req.method(), req.uri().path()) {
                    Some(p) => p,
                    None => return Ok(()),
                }
            }
        };
        match req.extensions().get::<Permissions>() {
            None => Err(Rejection::NotAuthenticated),
            Some(held) if held.contains(needed) => Ok(()),
            Some(_) => Err(Rejection::MissingPermission(needed.to_owned())),
        }
    }
}

/// Permissions per route: a method (or any) and a path pattern whose
/// segments are literals, `*` or `{name}` (one segment each), or a final
/// `**` (the rest). The first matching route wins; requests matching no
/// route need no permission.
///
/// ```
/// use forten_auth::RouteTable;
/// use http::Method;
/// let table = RouteTable::new()
///     .route(Method::POST, "/api/v1/events/{id}/approve", "events:approve")
///     .any_method("/api/v1/admin/**", "admin");
/// assert_eq!(table.permission_for(&Method::POST, "/api/v1/events/7/approve"), Some("events:approve"));
/// assert_eq!(table.permission_for(&Method::GET, "/api/v1/admin/users/3"), Some("admin"));
/// assert_eq!(table.permission_for(&Method::GET, "/api/v1/events/7"), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    method: Option<Method>,
    segments: Vec<String>,
    permission: String,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable::default()
    }

    /// `method` on paths matching `pattern` needs `permission`.
    pub fn route(mut self, method: Method, pattern: &str, permission: impl Into<String>) -> Self {
        self.push(Some(method), pattern, permission.into());
        self
    }

    /// Any method on paths matching `pattern` needs `permission`.
    pub fn any_method(mut self, pattern: &str, permission: impl Into<String>) -> Self {
        self.push(None, pattern, permission.into());
        self
    }

    fn push(&mut self, method: Option<Method>, pattern: &str, permission: String) {
        self.routes.push(Route {
            method,
            segments: split(pattern).map(str::to_owned).collect(),
            permission,
        });
    }

    /// The permission `method path` needs, if any route matches.
    pub fn permission_for(&self, method: &Method, path: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.method.as_ref().is_none_or(|m| m == method) && matches(&r.segments, path))
            .map(|r| r.permission.as_str())
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(pattern: &[String], path: &str) -> bool {
    let mut parts = split(path);
    for seg in pattern {
        if seg == "**" {
            return true;
        }
        let Some(part) = parts.next() else {
            return false;
        };
        let wildcard = seg == "*" || (seg.starts_with('{') && seg.ends_with('}'));
        if !wildcard && seg != part {
            return false;
        }
    }
    parts.next().is_none()
}

impl fmt::Display for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.routes {
            let method = r.method.as_ref().map_or("*", Method::as_str);
            writeln!(f, "{method} /{} -> {}", r.segments.join("/"), r.permission)?;
        }
        Ok(())
    }
}

//! Internal API keys: [`ApiKeyLayer`].

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, Request};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_layer::Layer;

use crate::check::{AuthService, RequestCheck};
use crate::error::{AuthError, Rejection};

/// The default header carrying the internal API key.
pub const X_INTERNAL_AUTH: HeaderName = HeaderName::from_static("x-internal-auth");

/// Requires an internal API key in a header (`x-internal-auth` by default).
/// Several keys may be valid at once (rotation). Only SHA-256 digests of the
/// keys are kept; the presented key is hashed and compared with every digest
/// in constant time (no early exit, so timing reveals neither which key nor
/// how much of it matched). A wrong, missing or empty key answers 401.
///
/// ```
/// use forten_auth::ApiKeyLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let layer = ApiKeyLayer::builder().key("s3cret-internal-key-2026").build().unwrap();
/// let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let req = http::Request::builder().header("x-internal-auth", "s3cret-internal-key-2026").body(()).unwrap();
/// assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
/// assert_eq!(svc.oneshot(http::Request::new(())).await.unwrap().status(), 401);
/// # });
/// ```
#[derive(Clone)]
pub struct ApiKeyLayer {
    check: ApiKeyCheck,
}

impl fmt::Debug for ApiKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("header", &self.check.header)
            .field("keys", &self.check.digests.len())
            .finish()
    }
}

/// Builder of [`ApiKeyLayer`].
pub struct ApiKeyLayerBuilder {
    header: HeaderName,
    digests: Vec<[u8; 32]>,
    too_short: bool,
}

impl fmt::Debug for ApiKeyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayerBuilder")
            .field("header", &self.header)
            .field("keys", &self.digests.len())
            .field("too_short", &self.too_short)
            .finish()
    }
}

/// The shortest API key accepted.
pub const MIN_API_KEY_BYTES: usize = 16;

impl ApiKeyLayerBuilder {
    /// The header carrying the key (default `x-internal-auth`).
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// Accepts `key` (at least 16 bytes). Call again to accept several keys.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        let key = key.as_ref();
        self.too_short |= key.len() < MIN_API_KEY_BYTES;
        self.digests.push(Sha256::digest(key).into());
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<ApiKeyLayer, AuthError> {
        if self.digests.is_empty() {
            return Err(AuthError::Config(
                "no API key: call .key(...) at least once".to_owned(),
            ));
        }
        if self.too_short {
            return Err(AuthError::Config(format!(
                "an API key must be at least {MIN_API_KEY_BYTES} bytes; generate a random one"
            )));
        }
        Ok(ApiKeyLayer {
            check: ApiKeyCheck {
                header: self.header,
                digests: self.digests.into(),
            },
        })
    }
}

impl ApiKeyLayer {
    /// A builder.
    pub fn builder() -> ApiKeyLayerBuilder {
        ApiKeyLayerBuilder {
            header: X_INTERNAL_AUTH,
            digests: Vec::new(),
            too_short: false,
        }
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = AuthService<S, ApiKeyCheck>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.check.clone())
    }
}

/// The [`RequestCheck`] of [`ApiKeyLayer`].
#[derive(Clone)]
pub struct ApiKeyCheck {
    header: HeaderName,
    digests: Arc<[[u8; 32]]>,
}

impl fmt::Debug for ApiKeyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyCheck")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl ApiKeyCheck {
    /// Whether `presented` is one of the keys (constant time over all keys).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut any = subtle::Choice::from(0);
        for d in self.digests.iter() {
            any |= d.ct_eq(&digest);
        }
        bool::from(any)
    }
}

impl RequestCheck for ApiKeyCheck {
    fn check<B>(&self, req: &mut Request<B>) -> Result<(), Rejection> {
        let mut values = req.headers().get_all(&self.header).iter();
        let value = values.next().ok_or(Rejection::Missing)?;
        if values.next().is_some() {
            return Err(Rejection::BadHeader);
        }
        if value.is_empty() {
            return Err(Rejection::Missing);
        }
        if self.accepts(value.as_bytes()) {
            Ok(())
        } else {
            Err(Rejection::WrongKey)
        }
    }
}

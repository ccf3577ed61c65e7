//! [`ClientIdentity`]: who is calling, as auth layers record it.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;

/// The authenticated caller of a request (a user id, a service name),
/// inserted into the request extensions by an authentication layer.
///
/// The idempotency and rate-limit layers scope their state by it; when it is
/// absent they fall back to a configurable function of the request.
///
/// ```
/// use forten_core::idempotency::ClientIdentity;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ClientIdentity::new("user-42"));
/// assert_eq!(req.extensions().get::<ClientIdentity>().unwrap().as_str(), "user-42");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity(Arc<str>);

impl ClientIdentity {
    /// The identity `subject`.
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        ClientIdentity(subject.into())
    }

    /// The subject.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject, shared (a reference-count increment, no copy).
    pub fn as_arc(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A function naming the client of a request that carries no [`ClientIdentity`].
pub type IdentityFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

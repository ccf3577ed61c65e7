//! The [`IdempotencyStore`] trait and the values it keeps.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::error::StoreError;

/// The SHA-256 digest that names one idempotency entry: client identity,
/// method, path and key, each length-prefixed so no two scopes collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey(pub [u8; 32]);

/// The SHA-256 digest of a request's method, path and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

/// Proof of holding an in-flight lock: only its holder can complete or release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockToken(pub u128);

/// An acquired in-flight lock on one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The entry the lock is on.
    pub scope: ScopeKey,
    /// The fingerprint of the request holding it.
    pub fingerprint: Fingerprint,
    /// The holder's token.
    pub token: LockToken,
}

impl Lock {
    /// A lock with a fresh random token.
    pub fn new(scope: ScopeKey, fingerprint: Fingerprint) -> Self {
        Lock {
            scope,
            fingerprint,
            token: LockToken(uuid::Uuid::new_v4().as_u128()),
        }
    }
}

/// A response as stored for replay: status, headers and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status code.
    pub status: StatusCode,
    /// Every header the handler set.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// No entry: the caller holds the lock and must run the request, then
    /// [`complete`](IdempotencyStore::complete) or [`release`](IdempotencyStore::release).
    Acquired(Lock),
    /// The same request is still running (answer 409).
    InFlight,
    /// The same request completed: replay this response.
    Completed(StoredResponse),
    /// The key was used with a different fingerprint (answer 422).
    Mismatch,
}

/// Where idempotency entries live. Implementations must make `begin` atomic:
/// of several concurrent calls for one scope, exactly one gets
/// [`Begin::Acquired`].
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Looks the scope up and, when it is free (absent or expired), takes the
    /// in-flight lock for `lock_ttl`.
    fn begin(
        &self,
        scope: &ScopeKey,
        fingerprint: &Fingerprint,
        lock_ttl: Duration,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    /// Replaces the lock with the completed response, kept for `ttl`. Returns
    /// `false` (and stores nothing) when the lock was no longer held, e.g.
    /// because it expired.
    fn complete(
        &self,
        lock: &Lock,
        response: &StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Drops the lock if it is still held, so a retry can run. Called from
    /// `Drop` (a dropped or panicked request): it must not block. A backend
    /// that needs I/O starts it in the background; if that fails the lock
    /// still expires after its `lock_ttl`.
    fn release(&self, lock: &Lock);
}

impl StoredResponse {
    /// Bytes this response takes, roughly, for the store's byte budget.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 16)
            .sum();
        64 + headers + self.body.len()
    }

    /// A compact binary encoding (status, headers, body) for external stores.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&self.status.as_u16().to_be_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(&(name.as_str().len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes what [`encode`](Self::encode) wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut reader = Reader { bytes, at: 0 };
        let status = u16::from_be_bytes(reader.array()?);
        let status = StatusCode::from_u16(status).map_err(|_| corrupt("status"))?;
        let count = u32::from_be_bytes(reader.array()?);
        let mut headers = HeaderMap::new();
        for _ in 0..count {
            let len = u32::from_be_bytes(reader.array()?) as usize;
            let name =
                HeaderName::from_bytes(reader.take(len)?).map_err(|_| corrupt("header name"))?;
            let len = u32::from_be_bytes(reader.array()?) as usize;
            let value =
                HeaderValue::from_bytes(reader.take(len)?).map_err(|_| corrupt("header value"))?;
            headers.append(name, value);
        }
        let body = Bytes::copy_from_slice(&bytes[reader.at..]);
        Ok(StoredResponse {
            status,
            headers,
            body,
        })
    }
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt(what)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.at.checked_add(n).ok_or_else(|| corrupt("length"))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| corrupt("truncated"))?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        let r = StoredResponse {
            status: StatusCode::CREATED,
            headers,
            body: Bytes::from_static(b"{\"id\":1}"),
        };
        assert_eq!(StoredResponse::decode(&r.encode()).unwrap(), r);
        assert!(StoredResponse::decode(&r.encode()[..5]).is_err());
        assert!(StoredResponse::decode(&[]).is_err());
    }
}

//! [`RedisStore`]: an [`IdempotencyStore`] on Redis, shared by replicas.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::error::StoreError;
use super::store::{Begin, Fingerprint, IdempotencyStore, Lock, ScopeKey, StoredResponse};

/// Takes the lock when the key is free, else returns what is there; one
/// round trip, atomic.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false",
    )
});

/// Replaces our lock with the completed entry, only if we still hold it.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0",
    )
});

/// Deletes our lock, only if we still hold it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

const LOCKED: u8 = b'L';
const DONE: u8 = b'D';

/// An idempotency store on Redis, for several gateway replicas sharing entries.
///
/// Each scope is one Redis string under `<prefix><hex scope>` with a `PX`
/// expiry: an in-flight lock (`L`, fingerprint, random token) while the
/// request runs, then the stored response (`D`, fingerprint, response). Begin,
/// complete and release are Lua scripts, so each is atomic; completing or
/// releasing checks the token, so a request whose lock expired cannot
/// overwrite a newer holder's entry.
///
/// ```no_run
/// use forten_core::idempotency::{IdempotencyLayer, RedisStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("gateway:idem:");
/// let layer = IdempotencyLayer::new(store);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "forten:idem:";

    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`) with a reconnecting
    /// connection manager.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = client.get_connection_manager().await.map_err(backend)?;
        Ok(Self::new(conn))
    }

    /// A store on an existing connection manager.
    pub fn new(conn: ConnectionManager) -> Self {
        RedisStore {
            conn,
            prefix: Arc::from(Self::DEFAULT_PREFIX),
        }
    }

    /// Puts every key under `prefix` (default `forten:idem:`).
    pub fn with_prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn key(&self, scope: &ScopeKey) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(self.prefix.len() + 64);
        key.push_str(&self.prefix);
        for b in scope.0 {
            let _ = write!(key, "{b:02x}");
        }
        key
    }
}

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn lock_value(lock: &Lock) -> Vec<u8> {
    let mut v = Vec::with_capacity(49);
    v.push(LOCKED);
    v.extend_from_slice(&lock.fingerprint.0);
    v.extend_from_slice(&lock.token.0.to_be_bytes());
    v
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl IdempotencyStore for RedisStore {
    fn begin(
        &self,
        scope: &ScopeKey,
        fingerprint: &Fingerprint,
        lock_ttl: Duration,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send {
        let lock = Lock::new(*scope, *fingerprint);
        let key = self.key(scope);
        let mut conn = self.conn.clone();
        async move {
            let found: Option<Vec<u8>> = BEGIN
                .key(key)
                .arg(lock_value(&lock))
                .arg(millis(lock_ttl))
                .invoke_async(&mut conn)
                .await
                .map_err(backend)?;
            let Some(found) = found else {
                return Ok(Begin::Acquired(lock));
            };
            let (kind, rest) = found
                .split_first()
                .ok_or(StoreError::Corrupt("empty entry"))?;
            let fp = rest.get(..32).ok_or(StoreError::Corrupt("short entry"))?;
            if fp != lock.fingerprint.0 {
                return Ok(Begin::Mismatch);
            }
            match *kind {
                LOCKED => Ok(Begin::InFlight),
                DONE => Ok(Begin::Completed(StoredResponse::decode(&rest[32..])?)),
                _ => Err(StoreError::Corrupt("unknown entry kind")),
            }
        }
    }

    fn complete(
        &self,
        lock: &Lock,
        response: &StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let key = self.key(&lock.scope);
        let held = lock_value(lock);
        let mut done = Vec::with_capacity(33 + response.size());
        done.push(DONE);
        done.extend_from_slice(&lock.fingerprint.0);
        done.extend_from_slice(&response.encode());
        let mut conn = self.conn.clone();
        async move {
            let n: i64 = COMPLETE
                .key(key)
                .arg(held)
                .arg(done)
                .arg(millis(ttl))
                .invoke_async(&mut conn)
                .await
                .map_err(backend)?;
            Ok(n == 1)
        }
    }

    fn release(&self, lock: &Lock) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime to do I/O on: the lock expires after its lock_ttl.
            return;
        };
        let key = self.key(&lock.scope);
        let held = lock_value(lock);
        let mut conn = self.conn.clone();
        handle.spawn(async move {
            let released: Result<i64, _> = RELEASE.key(key).arg(held).invoke_async(&mut conn).await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "could not release an idempotency lock; it expires by itself");
            }
        });
    }
}

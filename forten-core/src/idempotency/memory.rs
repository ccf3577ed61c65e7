//! [`MemoryStore`]: a bounded, sharded, in-process [`IdempotencyStore`].

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, ready};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::error::{ConfigError, StoreError};
use super::store::{Begin, Fingerprint, IdempotencyStore, Lock, ScopeKey, StoredResponse};

/// Bytes charged for an entry besides its stored response.
const ENTRY_OVERHEAD: usize = 128;

/// An in-process idempotency store: sharded maps behind short-held mutexes,
/// bounded in entries and bytes (the oldest entries are evicted first), with
/// per-entry expiry.
///
/// Fine for one process; use the Redis store when several replicas must
/// share entries. A response larger than a shard's byte budget is not stored
/// (the lock is dropped, so a retry runs the handler again).
///
/// ```
/// use forten_core::idempotency::MemoryStore;
///
/// let store = MemoryStore::builder().max_entries(50_000).max_bytes(256 << 20).build().unwrap();
/// # let _ = store;
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    max_entries: usize,
    max_bytes: usize,
}

/// Builder of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    shards: usize,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<ScopeKey, Entry>,
    /// Insertion order (sequence number -> scope), oldest first.
    order: BTreeMap<u64, ScopeKey>,
    seq: u64,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    expires_at: Instant,
    fingerprint: Fingerprint,
    size: usize,
    slot: Slot,
}

#[derive(Debug)]
enum Slot {
    InFlight(Lock),
    Done(StoredResponse),
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            shards: 16,
            max_entries: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

impl MemoryStoreBuilder {
    /// Number of independently locked shards (default 16).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Most entries kept, in-flight ones included (default 10 000).
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// Most bytes of stored responses kept (default 64 MiB).
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    /// The store, or what is wrong with the configuration.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        if self.shards == 0 {
            return Err(ConfigError::ZeroLimit("shards"));
        }
        if self.max_entries < self.shards {
            return Err(ConfigError::ZeroLimit(
                "max_entries per shard (max_entries / shards)",
            ));
        }
        if self.max_bytes / self.shards < ENTRY_OVERHEAD {
            return Err(ConfigError::ZeroLimit(
                "max_bytes per shard (max_bytes / shards)",
            ));
        }
        Ok(MemoryStore {
            shards: (0..self.shards).map(|_| Mutex::default()).collect(),
            max_entries: self.max_entries / self.shards,
            max_bytes: self.max_bytes / self.shards,
        })
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// A store with the default bounds (16 shards, 10 000 entries, 64 MiB).
    pub fn new() -> Self {
        let b = MemoryStoreBuilder::default();
        let shards = b.shards;
        MemoryStore {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            max_entries: b.max_entries / shards,
            max_bytes: b.max_bytes / shards,
        }
    }

    /// A builder to set the bounds.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// Live (unexpired) entries, in-flight ones included.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        (0..self.shards.len())
            .map(|i| {
                self.lock_shard(i)
                    .map
                    .values()
                    .filter(|e| e.expires_at > now)
                    .count()
            })
            .sum()
    }

    /// Whether no live entry is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, scope: &ScopeKey) -> usize {
        let mut first = [0; 8];
        first.copy_from_slice(&scope.0[..8]);
        (u64::from_le_bytes(first) % self.shards.len() as u64) as usize
    }

    fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        // No code panics while holding a shard, and the maps stay consistent
        // at every step, so a poisoned lock is still safe to use.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn begin_at(
        &self,
        now: Instant,
        scope: &ScopeKey,
        fingerprint: &Fingerprint,
        lock_ttl: Duration,
    ) -> Begin {
        let mut shard = self.lock_shard(self.shard_of(scope));
        if let Some(entry) = shard.map.get(scope) {
            if entry.expires_at > now {
                if entry.fingerprint != *fingerprint {
                    return Begin::Mismatch;
                }
                return match &entry.slot {
                    Slot::InFlight(_) => Begin::InFlight,
                    Slot::Done(response) => Begin::Completed(response.clone()),
                };
            }
            shard.remove(scope);
        }
        let lock = Lock::new(*scope, *fingerprint);
        shard.insert(
            *scope,
            now + lock_ttl,
            *fingerprint,
            ENTRY_OVERHEAD,
            Slot::InFlight(lock.clone()),
        );
        shard.evict(now, self.max_entries, self.max_bytes);
        Begin::Acquired(lock)
    }

    pub(crate) fn complete_at(
        &self,
        now: Instant,
        lock: &Lock,
        response: &StoredResponse,
        ttl: Duration,
    ) -> bool {
        let mut shard = self.lock_shard(self.shard_of(&lock.scope));
        if !shard.holds(now, lock) {
            return false;
        }
        shard.remove(&lock.scope);
        let size = ENTRY_OVERHEAD + response.size();
        if size > self.max_bytes {
            return false;
        }
        shard.insert(
            lock.scope,
            now + ttl,
            lock.fingerprint,
            size,
            Slot::Done(response.clone()),
        );
        shard.evict(now, self.max_entries, self.max_bytes);
        true
    }

    pub(crate) fn release_at(&self, now: Instant, lock: &Lock) {
        let mut shard = self.lock_shard(self.shard_of(&lock.scope));
        if shard.holds(now, lock) {
            shard.remove(&lock.scope);
        }
    }
}

impl Shard {
    fn holds(&self, now: Instant, lock: &Lock) -> bool {
        matches!(
            self.map.get(&lock.scope),
            Some(Entry { slot: Slot::InFlight(held), expires_at, .. })
                if held.token == lock.token && *expires_at > now
        )
    }

    fn insert(
        &mut self,
        scope: ScopeKey,
        expires_at: Instant,
        fingerprint: Fingerprint,
        size: usize,
        slot: Slot,
    ) {
        self.seq += 1;
        let seq = self.seq;
        self.order.insert(seq, scope);
        self.bytes += size;
        let entry = Entry {
            seq,
            expires_at,
            fingerprint,
            size,
            slot,
        };
        if let Some(old) = self.map.insert(scope, entry) {
            self.order.remove(&old.seq);
            self.bytes -= old.size;
        }
    }

    fn remove(&mut self, scope: &ScopeKey) {
        if let Some(old) = self.map.remove(scope) {
            self.order.remove(&old.seq);
            self.bytes -= old.size;
        }
    }

    /// Drops expired entries from the old end, then the oldest entries
    /// until the shard is within its bounds.
    fn evict(&mut self, now: Instant, max_entries: usize, max_bytes: usize) {
        while let Some((&seq, &scope)) = self.order.first_key_value() {
            match self.map.get(&scope) {
                Some(e) if e.seq == seq => {
                    let over = self.map.len() > max_entries || self.bytes > max_bytes;
                    if e.expires_at <= now || over {
                        self.remove(&scope);
                    } else {
                        break;
                    }
                }
                // an orphaned order slot (cannot happen, but never loop on it)
                _ => {
                    self.order.remove(&seq);
                }
            }
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn begin(
        &self,
        scope: &ScopeKey,
        fingerprint: &Fingerprint,
        lock_ttl: Duration,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send {
        ready(Ok(self.begin_at(
            Instant::now(),
            scope,
            fingerprint,
            lock_ttl,
        )))
    }

    fn complete(
        &self,
        lock: &Lock,
        response: &StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.complete_at(Instant::now(), lock, response, ttl)))
    }

    fn release(&self, lock: &Lock) {
        self.release_at(Instant::now(), lock);
    }
}

#[cfg(test)]
mod model_tests;

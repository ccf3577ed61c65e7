//! A bounded cache of verified tokens, so a service that sees the same token
//! on every request (a user's session, another service's cached token) pays
//! the signature check and the claims parsing once per token, not per request.
//!
//! What keeps it safe:
//! - keyed by the whole token string: a hit means the very bytes that were
//!   verified, signature included;
//! - only successes are stored, with the instant the verifier itself would
//!   start refusing the token (`exp` plus the leeway); past it, the entry is
//!   a miss and the token is verified (and refused) again;
//! - tied to the key set it was verified against: when the [`KeySet`]
//!   changes (a key inserted, retired or replaced), every entry is dropped,
//!   so a retired key's tokens stop passing at once;
//! - bounded: at capacity, expired entries go first, then everything (a
//!   burst of distinct tokens costs one verification each, as without cache).
//!
//! [`KeySet`]: crate::KeySet

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use crate::keys::VerifyingKey;

struct Entry<T> {
    /// The last second (inclusive) the verifier accepts the token: `exp + leeway`.
    valid_through: u64,
    value: T,
}

struct State<T> {
    /// The key set every entry was verified against.
    keys: Option<Arc<[VerifyingKey]>>,
    entries: HashMap<Box<str>, Entry<T>, TailHash>,
}

/// How many bytes of a token's end are hashed.
const HASHED_TAIL: usize = 32;

/// Hashes a token by its length and its last [`HASHED_TAIL`] bytes (with
/// std's randomly keyed SipHash), not the whole string: a token ends with its
/// signature, which tells tokens apart, and a 300-byte token costs a tenth of
/// the hashing. Equality still compares whole tokens, so a hit is still the
/// very bytes that were verified; tokens sharing a tail only share a bucket.
#[derive(Clone, Default)]
struct TailHash(RandomState);

impl BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct TailHasher(std::hash::DefaultHasher);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }

    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// Verified tokens and what their check produced (`T`), at most `capacity`.
pub(crate) struct VerifiedCache<T> {
    capacity: usize,
    state: RwLock<State<T>>,
}

impl<T: Clone> VerifiedCache<T> {
    /// A cache of at most `capacity` tokens (`None` for 0: no cache).
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| VerifiedCache {
            capacity,
            state: RwLock::new(State {
                keys: None,
                entries: HashMap::default(),
            }),
        })
    }

    /// What `token` verified to, if it was verified against `keys` and is
    /// still within its validity at `now`.
    pub(crate) fn get(&self, token: &str, keys: &Arc<[VerifyingKey]>, now: u64) -> Option<T> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if !state.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            return None;
        }
        state
            .entries
            .get(token)
            .filter(|e| now <= e.valid_through)
            .map(|e| e.value.clone())
    }

    /// Records that `token` verified against `keys` to `value`, accepted
    /// through the second `valid_through` (`exp + leeway`).
    pub(crate) fn insert(
        &self,
        token: &str,
        keys: Arc<[VerifyingKey]>,
        valid_through: u64,
        value: T,
        now: u64,
    ) {
        if valid_through < now {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, &keys)) {
            // Verified against another key set: what the old one vouched for no longer counts.
            state.entries.clear();
            state.keys = Some(keys);
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(token) {
            state.entries.retain(|_, e| now <= e.valid_through);
            if state.entries.len() >= self.capacity {
                state.entries.clear();
            }
        }
        state.entries.insert(
            token.into(),
            Entry {
                valid_through,
                value,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

impl<T> std::fmt::Debug for VerifiedCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<[VerifyingKey]> {
        Arc::from(vec![VerifyingKey::hs256(&[7u8; 32]).unwrap()])
    }

    #[test]
    fn tokens_sharing_a_tail_are_still_told_apart() {
        let cache = VerifiedCache::new(8).unwrap();
        let set = keys();
        let tail = "s".repeat(HASHED_TAIL);
        let (a, b) = (format!("aaaa.{tail}"), format!("bbbb.{tail}"));
        cache.insert(&a, set.clone(), 100, 1u32, 50);
        cache.insert(&b, set.clone(), 100, 2u32, 50);
        assert_eq!(cache.get(&a, &set, 50), Some(1));
        assert_eq!(cache.get(&b, &set, 50), Some(2));
        assert_eq!(cache.get(&format!("cccc.{tail}"), &set, 50), None);
        assert_eq!(cache.get("short", &set, 50), None);
    }

    #[test]
    fn zero_capacity_is_no_cache() {
        assert!(VerifiedCache::<u32>::new(0).is_none());
    }

    #[test]
    fn a_hit_needs_the_whole_token_and_the_same_key_set() {
        let cache = VerifiedCache::new(8).unwrap();
        let set = keys();
        cache.insert("a.b.c", set.clone(), 100, 1u32, 50);
        assert_eq!(cache.get("a.b.c", &set, 50), Some(1));
        assert_eq!(cache.get("a.b.", &set, 50), None);
        assert_eq!(cache.get("a.b.cd", &set, 50), None);
        // An equal but distinct snapshot is another key set (a rotation).
        assert_eq!(cache.get("a.b.c", &keys(), 50), None);
    }

    #[test]
    fn an_entry_lasts_through_exp_plus_leeway_and_not_a_second_more() {
        let cache = VerifiedCache::new(8).unwrap();
        let set = keys();
        cache.insert("t", set.clone(), 130, 1u32, 100);
        assert_eq!(cache.get("t", &set, 130), Some(1));
        assert_eq!(cache.get("t", &set, 131), None);
        // Already past validity: not stored at all.
        cache.insert("late", set.clone(), 99, 2u32, 100);
        assert_eq!(cache.get("late", &set, 99), None);
    }

    #[test]
    fn a_new_key_set_drops_every_entry() {
        let cache = VerifiedCache::new(8).unwrap();
        let old = keys();
        cache.insert("t1", old.clone(), 100, 1u32, 0);
        let new = keys();
        cache.insert("t2", new.clone(), 100, 2u32, 0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("t1", &new, 0), None);
        assert_eq!(cache.get("t1", &old, 0), None);
        assert_eq!(cache.get("t2", &new, 0), Some(2));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = VerifiedCache::new(4).unwrap();
        let set = keys();
        // Two expired by t = 50, two valid: a fifth token evicts the expired ones.
        cache.insert("e1", set.clone(), 40, 0u32, 0);
        cache.insert("e2", set.clone(), 40, 0u32, 0);
        cache.insert("v1", set.clone(), 100, 1u32, 0);
        cache.insert("v2", set.clone(), 100, 2u32, 0);
        cache.insert("v3", set.clone(), 100, 3u32, 50);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("v1", &set, 50), Some(1));
        for i in 0..100 {
            cache.insert(&format!("x{i}"), set.clone(), 100, i, 50);
            assert!(cache.len() <= 4);
        }
        // Re-inserting a present token does not evict.
        cache.insert("x99", set.clone(), 100, 99, 50);
        assert_eq!(cache.get("x99", &set, 50), Some(99));
    }
}

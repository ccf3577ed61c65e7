//! State-machine test of [`MemoryStore`] against a reference model: begin,
//! complete, release and the passing of time, in any order.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use proptest::prelude::*;
use tokio::time::Instant;

use super::MemoryStore;
use crate::idempotency::store::{Begin, Fingerprint, Lock, ScopeKey, StoredResponse};

const TTL: Duration = Duration::from_secs(1);
const LOCK_TTL: Duration = Duration::from_millis(400);

#[derive(Debug, Clone)]
enum Op {
    Begin { scope: u8, fp: u8 },
    Complete { lock: usize, body: u8 },
    Release { lock: usize },
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4u8, 0..2u8).prop_map(|(scope, fp)| Op::Begin { scope, fp }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(lock, body)| Op::Complete { lock, body }),
        1 => any::<usize>().prop_map(|lock| Op::Release { lock }),
        1 => (0..1500u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    InFlight(u128),
    Done(u8),
}

#[derive(Debug, Clone)]
struct ModelEntry {
    expires: u64,
    fp: u8,
    state: State,
}

/// What the model expects `begin` to answer.
#[derive(Debug, PartialEq)]
enum Expect {
    Acquired,
    InFlight,
    Completed(u8),
    Mismatch,
}

fn scope(s: u8) -> ScopeKey {
    let mut k = [0; 32];
    k[0] = s;
    k[31] = s;
    ScopeKey(k)
}

fn fingerprint(f: u8) -> Fingerprint {
    Fingerprint([f; 32])
}

fn response(body: u8) -> StoredResponse {
    StoredResponse {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from(vec![body]),
    }
}

proptest! {
    #[test]
    fn memory_store_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let store = MemoryStore::builder().shards(2).build().unwrap();
        let start = Instant::now();
        let mut now_ms = 0u64;
        let mut model: HashMap<u8, ModelEntry> = HashMap::new();
        // every lock ever acquired, with the scope it is on
        let mut locks: Vec<(u8, Lock)> = Vec::new();

        for op in ops {
            let now = start + Duration::from_millis(now_ms);
            match op {
                Op::Begin { scope: s, fp } => {
                    let live = model.get(&s).filter(|e| e.expires > now_ms).cloned();
                    let expect = match live {
                        Some(e) if e.fp != fp => Expect::Mismatch,
                        Some(ModelEntry { state: State::InFlight(_), .. }) => Expect::InFlight,
                        Some(ModelEntry { state: State::Done(b), .. }) => Expect::Completed(b),
                        None => Expect::Acquired,
                    };
                    let got = store.begin_at(now, &scope(s), &fingerprint(fp), LOCK_TTL);
                    let got_kind = match &got {
                        Begin::Acquired(_) => Expect::Acquired,
                        Begin::InFlight => Expect::InFlight,
                        Begin::Completed(r) => Expect::Completed(r.body[0]),
                        Begin::Mismatch => Expect::Mismatch,
                    };
                    prop_assert_eq!(&got_kind, &expect);
                    if let Begin::Acquired(lock) = got {
                        model.insert(s, ModelEntry {
                            expires: now_ms + LOCK_TTL.as_millis() as u64,
                            fp,
                            state: State::InFlight(lock.token.0),
                        });
                        locks.push((s, lock));
                    }
                }
                Op::Complete { lock, body } => {
                    if locks.is_empty() { continue; }
                    let (s, lock) = locks[lock % locks.len()].clone();
                    let holds = model.get(&s).is_some_and(|e| {
                        e.expires > now_ms && e.state == State::InFlight(lock.token.0)
                    });
                    let got = store.complete_at(now, &lock, &response(body), TTL);
                    prop_assert_eq!(got, holds);
                    if holds {
                        let fp = model[&s].fp;
                        model.insert(s, ModelEntry {
                            expires: now_ms + TTL.as_millis() as u64,
                            fp,
                            state: State::Done(body),
                        });
                    }
                }
                Op::Release { lock } => {
                    if locks.is_empty() { continue; }
                    let (s, lock) = locks[lock % locks.len()].clone();
                    let holds = model.get(&s).is_some_and(|e| {
                        e.expires > now_ms && e.state == State::InFlight(lock.token.0)
                    });
                    store.release_at(now, &lock);
                    if holds {
                        model.remove(&s);
                    }
                }
                Op::Advance { ms } => now_ms += ms,
            }
        }
    }
}

#[test]
fn evicts_oldest_within_bounds() {
    let store = MemoryStore::builder()
        .shards(1)
        .max_entries(3)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut locks = Vec::new();
    for s in 0..5u8 {
        let Begin::Acquired(lock) = store.begin_at(now, &scope(s), &fingerprint(0), TTL) else {
            panic!("fresh scope must be acquired");
        };
        assert!(store.complete_at(now, &lock, &response(s), TTL));
        locks.push(lock);
    }
    // 0 and 1 were evicted, 2..5 are kept
    for s in 0..2u8 {
        assert!(matches!(
            store.begin_at(now, &scope(s), &fingerprint(1), TTL),
            Begin::Acquired(_)
        ));
    }
    let kept = store.lock_shard(0).map.len();
    assert_eq!(kept, 3);

    let by_bytes = MemoryStore::builder()
        .shards(1)
        .max_bytes(1024)
        .build()
        .unwrap();
    let big = StoredResponse {
        body: Bytes::from(vec![0; 2000]),
        ..response(0)
    };
    let Begin::Acquired(lock) = by_bytes.begin_at(now, &scope(9), &fingerprint(0), TTL) else {
        panic!("fresh scope must be acquired");
    };
    assert!(
        !by_bytes.complete_at(now, &lock, &big, TTL),
        "larger than the budget: not stored"
    );
    assert!(matches!(
        by_bytes.begin_at(now, &scope(9), &fingerprint(0), TTL),
        Begin::Acquired(_)
    ));
}

#[test]
fn builder_validates() {
    assert!(MemoryStore::builder().shards(0).build().is_err());
    assert!(
        MemoryStore::builder()
            .shards(4)
            .max_entries(2)
            .build()
            .is_err()
    );
    assert!(MemoryStore::builder().max_bytes(10).build().is_err());
}

//! State-machine test (proptest-state-machine) of [`MemoryStore`] against a
//! reference model: begin, complete, release and the passing of time, in any
//! order, with shrinking to the shortest failing sequence.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use tokio::time::Instant;

use super::MemoryStore;
use crate::idempotency::store::{Begin, Fingerprint, Lock, ScopeKey, StoredResponse};

const TTL: Duration = Duration::from_secs(1);
const LOCK_TTL: Duration = Duration::from_millis(400);

#[derive(Debug, Clone)]
enum Op {
    Begin {
        scope: u8,
        fp: u8,
    },
    /// Complete the `lock`-th lock ever acquired (modulo their number).
    Complete {
        lock: usize,
        body: u8,
    },
    Release {
        lock: usize,
    },
    Advance {
        ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// Held by the n-th acquired lock.
    InFlight(usize),
    Done(u8),
}

#[derive(Debug, Clone)]
struct ModelEntry {
    expires: u64,
    fp: u8,
    slot: Slot,
}

/// What the model expects the last operation to answer.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Acquired,
    InFlight,
    Completed(u8),
    Mismatch,
    Completes(bool),
    Nothing,
}

#[derive(Debug, Clone, Default)]
struct Model {
    now_ms: u64,
    entries: HashMap<u8, ModelEntry>,
    /// The scope of every lock acquired, in order.
    lock_scopes: Vec<u8>,
    last: Option<Outcome>,
}

impl Model {
    fn live(&self, scope: u8) -> Option<&ModelEntry> {
        self.entries.get(&scope).filter(|e| e.expires > self.now_ms)
    }

    fn holds(&self, lock: usize) -> bool {
        let scope = self.lock_scopes[lock];
        self.live(scope)
            .is_some_and(|e| e.slot == Slot::InFlight(lock))
    }
}

struct StoreModel;

impl ReferenceStateMachine for StoreModel {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Op> {
        prop_oneof![
            3 => (0..4u8, 0..2u8).prop_map(|(scope, fp)| Op::Begin { scope, fp }),
            2 => (any::<usize>(), any::<u8>()).prop_map(|(lock, body)| Op::Complete { lock, body }),
            1 => any::<usize>().prop_map(|lock| Op::Release { lock }),
            1 => (0..1500u64).prop_map(|ms| Op::Advance { ms }),
        ]
        .boxed()
    }

    fn apply(mut m: Model, op: &Op) -> Model {
        let now = m.now_ms;
        m.last = Some(match *op {
            Op::Begin { scope, fp } => match m.live(scope).cloned() {
                Some(e) if e.fp != fp => Outcome::Mismatch,
                Some(ModelEntry {
                    slot: Slot::InFlight(_),
                    ..
                }) => Outcome::InFlight,
                Some(ModelEntry {
                    slot: Slot::Done(b),
                    ..
                }) => Outcome::Completed(b),
                None => {
                    let lock = m.lock_scopes.len();
                    m.lock_scopes.push(scope);
                    let expires = now + LOCK_TTL.as_millis() as u64;
                    let slot = Slot::InFlight(lock);
                    m.entries.insert(scope, ModelEntry { expires, fp, slot });
                    Outcome::Acquired
                }
            },
            Op::Complete { .. } | Op::Release { .. } if m.lock_scopes.is_empty() => {
                Outcome::Nothing
            }
            Op::Complete { lock, body } => {
                let lock = lock % m.lock_scopes.len();
                let holds = m.holds(lock);
                if holds {
                    let scope = m.lock_scopes[lock];
                    let fp = m.entries[&scope].fp;
                    let expires = now + TTL.as_millis() as u64;
                    m.entries.insert(
                        scope,
                        ModelEntry {
                            expires,
                            fp,
                            slot: Slot::Done(body),
                        },
                    );
                }
                Outcome::Completes(holds)
            }
            Op::Release { lock } => {
                let lock = lock % m.lock_scopes.len();
                if m.holds(lock) {
                    m.entries.remove(&m.lock_scopes[lock]);
                }
                Outcome::Nothing
            }
            Op::Advance { ms } => {
                m.now_ms += ms;
                Outcome::Nothing
            }
        });
        m
    }
}

struct Sut {
    store: MemoryStore,
    start: Instant,
    locks: Vec<Lock>,
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = StoreModel;

    fn init_test(_model: &Model) -> Sut {
        Sut {
            store: MemoryStore::builder().shards(2).build().unwrap(),
            start: Instant::now(),
            locks: Vec::new(),
        }
    }

    fn apply(mut sut: Sut, model: &Model, op: Op) -> Sut {
        let now = sut.start + Duration::from_millis(model.now_ms);
        let expected = model.last.clone().unwrap();
        let got = match op {
            Op::Begin { scope: s, fp } => {
                match sut
                    .store
                    .begin_at(now, &scope(s), &fingerprint(fp), LOCK_TTL)
                {
                    Begin::Acquired(lock) => {
                        sut.locks.push(lock);
                        Outcome::Acquired
                    }
                    Begin::InFlight => Outcome::InFlight,
                    Begin::Completed(r) => Outcome::Completed(r.body[0]),
                    Begin::Mismatch => Outcome::Mismatch,
                }
            }
            Op::Complete { .. } | Op::Release { .. } if sut.locks.is_empty() => Outcome::Nothing,
            Op::Complete { lock, body } => {
                let lock = &sut.locks[lock % sut.locks.len()];
                Outcome::Completes(sut.store.complete_at(now, lock, &response(body), TTL))
            }
            Op::Release { lock } => {
                sut.store
                    .release_at(now, &sut.locks[lock % sut.locks.len()]);
                Outcome::Nothing
            }
            Op::Advance { .. } => Outcome::Nothing,
        };
        assert_eq!(got, expected);
        sut
    }
}

prop_state_machine! {
    #[test]
    fn memory_store_matches_model(sequential 1..80 => Sut);
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

#[test]
fn evicts_oldest_within_bounds() {
    let store = MemoryStore::builder()
        .shards(1)
        .max_entries(3)
        .build()
        .unwrap();
    let now = Instant::now();
    for s in 0..5u8 {
        let Begin::Acquired(lock) = store.begin_at(now, &scope(s), &fingerprint(0), TTL) else {
            panic!("fresh scope must be acquired");
        };
        assert!(store.complete_at(now, &lock, &response(s), TTL));
    }
    // 0 and 1 were evicted, 2..5 are kept
    assert!(matches!(
        store.begin_at(now, &scope(4), &fingerprint(0), TTL),
        Begin::Completed(_)
    ));
    for s in 0..2u8 {
        assert!(matches!(
            store.begin_at(now, &scope(s), &fingerprint(1), TTL),
            Begin::Acquired(_)
        ));
    }
    assert_eq!(store.lock_shard(0).map.len(), 3);

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

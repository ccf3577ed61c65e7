//! Fast per-thread randomness for ids (correlation ids, trace and span ids).
//!
//! These ids must be unpredictable enough not to collide, not secret: a
//! xoshiro generator seeded once per thread from the OS-seeded `ThreadRng`
//! costs a few nanoseconds per id where ChaCha costs tens.

use std::cell::RefCell;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// A random `u128`.
pub(crate) fn u128() -> u128 {
    RNG.with(|r| r.borrow_mut().random())
}

/// A random `u64`.
pub(crate) fn u64() -> u64 {
    RNG.with(|r| r.borrow_mut().random())
}

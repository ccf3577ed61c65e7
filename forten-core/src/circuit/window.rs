//! Sliding windows over atomics.
//!
//! Calls are first counted in per-thread *stripes* (one cache line each, a
//! single `fetch_add` per call), then flushed into the shared window in
//! batches, at once when the call failed or was slow, and before every
//! evaluation. So the shared window is exact whenever the breaker decides
//! anything, and threads do not fight over one counter on the success path.
//!
//! - Count window: a ring of `n` outcome bits per kind (failure, slow) in
//!   `AtomicU64` words, positions taken with one `fetch_add` per batch; the
//!   rates are popcounts, so no running total can drift.
//! - Time window: `n` one-second buckets tagged with their second.

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::SlidingWindow;

/// A value alone on its cache line (128 bytes: adjacent-line prefetch on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

impl Outcome {
    pub(crate) fn is_bad(self) -> bool {
        self.failure || self.slow
    }
}

/// Counts of a window (or of a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

// A stripe word: calls | failures << 16 | slow << 32 | second tag << 48.
const FIELD: u64 = 0xFFFF;
const FAIL_SHIFT: u32 = 16;
const SLOW_SHIFT: u32 = 32;
const TAG_SHIFT: u32 = 48;

fn delta(outcome: Outcome) -> u64 {
    1 | (u64::from(outcome.failure) << FAIL_SHIFT) | (u64::from(outcome.slow) << SLOW_SHIFT)
}

fn unpack(word: u64) -> Counts {
    Counts {
        calls: word & FIELD,
        failures: (word >> FAIL_SHIFT) & FIELD,
        slow: (word >> SLOW_SHIFT) & FIELD,
    }
}

/// The shared window plus the stripes feeding it.
#[derive(Debug)]
pub(crate) struct Window {
    kind: Kind,
    stripes: Box<[Padded<AtomicU64>]>,
    /// Successes a stripe holds before flushing them.
    batch: u64,
}

#[derive(Debug)]
enum Kind {
    Count(Box<CountRing>),
    Time(TimeBuckets),
}

impl Window {
    pub(crate) fn new(window: SlidingWindow, stripes: usize) -> Self {
        let (kind, batch) = match window {
            SlidingWindow::Count(n) => (Kind::Count(Box::new(CountRing::new(u64::from(n)))), 64),
            SlidingWindow::Time(n) => (Kind::Time(TimeBuckets::new(u64::from(n))), 64),
        };
        Window {
            kind,
            stripes: (0..stripes.max(1))
                .map(|_| Padded(AtomicU64::new(0)))
                .collect(),
            batch,
        }
    }

    pub(crate) fn stripe_count(&self) -> usize {
        self.stripes.len()
    }

    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self.kind, Kind::Time(_))
    }

    /// Records one outcome in stripe `stripe` (below [`stripe_count`](Self::stripe_count))
    /// at second `now_sec` (ignored by count windows). Returns true when the stripe should be flushed (batch
    /// full): the caller then calls [`flush_stripe`](Self::flush_stripe).
    #[inline]
    pub(crate) fn record(&self, stripe: usize, outcome: Outcome, now_sec: u64) -> bool {
        let cell = &self.stripes[stripe].0;
        let d = delta(outcome);
        let calls = match &self.kind {
            Kind::Count(_) => (cell.fetch_add(d, Ordering::AcqRel) & FIELD) + 1,
            Kind::Time(buckets) => {
                let tag = now_sec & FIELD;
                let mut current = cell.load(Ordering::Relaxed);
                loop {
                    let stale = (current & FIELD) != 0 && (current >> TAG_SHIFT) != tag;
                    let next = if stale {
                        (tag << TAG_SHIFT) | d
                    } else {
                        ((current & !(FIELD << TAG_SHIFT)) + d) | (tag << TAG_SHIFT)
                    };
                    match cell.compare_exchange_weak(
                        current,
                        next,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            if stale {
                                buckets.add(second_of(current, now_sec), unpack(current));
                            }
                            break next & FIELD;
                        }
                        Err(actual) => current = actual,
                    }
                }
            }
        };
        calls >= self.batch
    }

    /// Moves stripe `stripe`'s pending counts into the shared window.
    pub(crate) fn flush_stripe(&self, stripe: usize, now_sec: u64) {
        let cell = &self.stripes[stripe].0;
        let word = cell.swap(0, Ordering::AcqRel);
        if word & FIELD == 0 {
            return;
        }
        let counts = unpack(word);
        match &self.kind {
            Kind::Count(ring) => ring.add(counts),
            Kind::Time(buckets) => buckets.add(second_of(word, now_sec), counts),
        }
    }

    /// Flushes every stripe, then counts the window as of second `now_sec`.
    pub(crate) fn evaluate(&self, now_sec: u64) -> Counts {
        for i in 0..self.stripes.len() {
            self.flush_stripe(i, now_sec);
        }
        match &self.kind {
            Kind::Count(ring) => ring.counts(),
            Kind::Time(buckets) => buckets.counts(now_sec),
        }
    }

    /// Empties the window and the stripes (calls racing with this may land on
    /// either side; nothing can drift since counts are recomputed each time).
    pub(crate) fn reset(&self) {
        for s in &self.stripes {
            s.0.store(0, Ordering::Release);
        }
        match &self.kind {
            Kind::Count(ring) => ring.reset(),
            Kind::Time(buckets) => buckets.reset(),
        }
    }
}

/// The full second a stripe word's 16-bit tag stands for, seen from `now_sec`.
fn second_of(word: u64, now_sec: u64) -> u64 {
    let tag = word >> TAG_SHIFT;
    now_sec - (now_sec.wrapping_sub(tag) & FIELD).min(now_sec)
}

/// The last `n` outcomes as two bit rings.
#[derive(Debug)]
struct CountRing {
    n: u64,
    seq: Padded<AtomicU64>,
    failures: Box<[AtomicU64]>,
    slow: Box<[AtomicU64]>,
}

impl CountRing {
    fn new(n: u64) -> Self {
        let words = n.div_ceil(64) as usize;
        CountRing {
            n,
            seq: Padded(AtomicU64::new(0)),
            failures: (0..words).map(|_| AtomicU64::new(0)).collect(),
            slow: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Appends a batch: its failures take its last positions, its slow calls
    /// too. A stripe flushes as soon as a call fails or is slow, so on one
    /// thread the bad call *is* the batch's last: the ring keeps the exact
    /// order. (The two rings are independent, so overlap does not matter.)
    fn add(&self, batch: Counts) {
        let start = self.seq.fetch_add(batch.calls, Ordering::AcqRel);
        // Only the last n positions of a batch survive; skip the rest.
        let skip = batch.calls.saturating_sub(self.n);
        let mut offset = skip;
        while offset < batch.calls {
            let pos = (start + offset) % self.n;
            let bit = pos % 64;
            let len = (batch.calls - offset).min(64 - bit).min(self.n - pos);
            let mask = ones(len) << bit;
            let word = (pos / 64) as usize;
            let fail_bits = tail_bits(offset, len, batch.calls - batch.failures) << bit;
            let slow_bits = tail_bits(offset, len, batch.calls - batch.slow) << bit;
            set_bits(&self.failures[word], mask, fail_bits);
            set_bits(&self.slow[word], mask, slow_bits);
            offset += len;
        }
    }

    fn counts(&self) -> Counts {
        let calls = self.seq.load(Ordering::Acquire).min(self.n);
        let pop = |ring: &[AtomicU64]| -> u64 {
            ring.iter()
                .map(|w| u64::from(w.load(Ordering::Acquire).count_ones()))
                .sum::<u64>()
                .min(calls)
        };
        Counts {
            calls,
            failures: pop(&self.failures),
            slow: pop(&self.slow),
        }
    }

    fn reset(&self) {
        self.seq.store(0, Ordering::Release);
        for w in self.failures.iter().chain(self.slow.iter()) {
            w.store(0, Ordering::Release);
        }
    }
}

/// The bits of segment `[offset, offset + len)` of a batch whose positions
/// from `first` on are set.
fn tail_bits(offset: u64, len: u64, first: u64) -> u64 {
    let skip = first.saturating_sub(offset).min(len);
    // `skip` is 64 when a whole 64-call segment precedes the bad calls:
    // no bits, and a plain shift by 64 would overflow
    ones(len - skip).checked_shl(skip as u32).unwrap_or(0)
}

fn ones(len: u64) -> u64 {
    if len >= 64 { u64::MAX } else { (1 << len) - 1 }
}

fn set_bits(word: &AtomicU64, mask: u64, bits: u64) {
    let current = word.load(Ordering::Relaxed);
    if current & mask == bits {
        return;
    }
    // A single atomic read-modify-write per word: concurrent batches touching
    // other bits of the same word are never lost.
    let _ = word.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |w| {
        Some((w & !mask) | bits)
    });
}

/// `n` one-second buckets.
#[derive(Debug)]
struct TimeBuckets {
    n: u64,
    buckets: Box<[Bucket]>,
}

#[derive(Debug, Default)]
struct Bucket {
    /// second + 1; 0 = never used.
    tag: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl TimeBuckets {
    fn new(n: u64) -> Self {
        TimeBuckets {
            n,
            buckets: (0..n).map(|_| Bucket::default()).collect(),
        }
    }

    fn add(&self, second: u64, counts: Counts) {
        let bucket = &self.buckets[(second % self.n) as usize];
        let tag = second + 1;
        let current = bucket.tag.load(Ordering::Acquire);
        if current > tag {
            // The bucket already moved on to a later second: these calls have
            // left the window.
            return;
        }
        if current < tag
            && bucket
                .tag
                .compare_exchange(current, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.calls.store(0, Ordering::Release);
            bucket.failures.store(0, Ordering::Release);
            bucket.slow.store(0, Ordering::Release);
        }
        bucket.calls.fetch_add(counts.calls, Ordering::AcqRel);
        bucket.failures.fetch_add(counts.failures, Ordering::AcqRel);
        bucket.slow.fetch_add(counts.slow, Ordering::AcqRel);
    }

    fn counts(&self, now_sec: u64) -> Counts {
        // Seconds now_sec - n + 1 ..= now_sec, i.e. tags now_sec - n + 2 ..= now_sec + 1.
        let oldest = (now_sec + 2).saturating_sub(self.n);
        let newest = now_sec + 1;
        let mut total = Counts::default();
        for b in &*self.buckets {
            let tag = b.tag.load(Ordering::Acquire);
            if tag >= oldest && tag <= newest && tag != 0 {
                total.calls += b.calls.load(Ordering::Acquire);
                total.failures += b.failures.load(Ordering::Acquire);
                total.slow += b.slow.load(Ordering::Acquire);
            }
        }
        total.failures = total.failures.min(total.calls);
        total.slow = total.slow.min(total.calls);
        total
    }

    fn reset(&self) {
        for b in &*self.buckets {
            b.tag.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Outcome = Outcome {
        failure: false,
        slow: false,
    };
    const FAIL: Outcome = Outcome {
        failure: true,
        slow: false,
    };

    fn record(w: &Window, o: Outcome, sec: u64) {
        if w.record(0, o, sec) {
            w.flush_stripe(0, sec);
        }
    }

    #[test]
    fn count_ring_keeps_exactly_the_last_n() {
        let w = Window::new(SlidingWindow::Count(70), 4);
        let mut model = std::collections::VecDeque::new();
        for i in 0..1000u64 {
            let o = if i % 7 == 0 || i % 11 == 0 { FAIL } else { OK };
            record(&w, o, 0);
            model.push_back(o.failure);
            if model.len() > 70 {
                model.pop_front();
            }
            let c = w.evaluate(0);
            assert_eq!(c.calls, model.len() as u64, "at {i}");
            assert_eq!(
                c.failures,
                model.iter().filter(|f| **f).count() as u64,
                "at {i}"
            );
        }
    }

    #[test]
    fn a_batch_whose_failures_follow_a_whole_clean_word() {
        // 100 calls, the last one failed: positions 0..64 hold no failure
        let ring = CountRing::new(128);
        ring.add(Counts {
            calls: 100,
            failures: 1,
            slow: 0,
        });
        assert_eq!(
            ring.counts(),
            Counts {
                calls: 100,
                failures: 1,
                slow: 0,
            }
        );
    }

    #[test]
    fn batches_larger_than_the_ring_keep_their_tail() {
        let ring = CountRing::new(5);
        ring.add(Counts {
            calls: 12,
            failures: 12,
            slow: 0,
        });
        assert_eq!(
            ring.counts(),
            Counts {
                calls: 5,
                failures: 5,
                slow: 0
            }
        );
        ring.add(Counts {
            calls: 3,
            failures: 0,
            slow: 3,
        });
        assert_eq!(
            ring.counts(),
            Counts {
                calls: 5,
                failures: 2,
                slow: 3
            }
        );
    }

    #[test]
    fn time_buckets_forget_old_seconds() {
        let w = Window::new(SlidingWindow::Time(3), 2);
        record(&w, FAIL, 10);
        record(&w, OK, 11);
        record(&w, OK, 12);
        assert_eq!(
            w.evaluate(12),
            Counts {
                calls: 3,
                failures: 1,
                slow: 0
            }
        );
        assert_eq!(
            w.evaluate(13),
            Counts {
                calls: 2,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(w.evaluate(20), Counts::default());
    }

    #[test]
    fn a_stripe_tag_names_its_second() {
        assert_eq!(second_of(5 << TAG_SHIFT, 5), 5);
        assert_eq!(second_of(0xFFFF << TAG_SHIFT, 0x1_0001), 0xFFFF);
    }
}

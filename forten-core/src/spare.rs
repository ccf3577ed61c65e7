//! Thread-local spare `Arc`s for per-call futures.
//!
//! A response future that must own a reference to its middleware's shared
//! state (a circuit breaker's stripe) would clone an `Arc` per call and drop
//! it at the end: two atomic read-modify-writes, most of what such a
//! middleware costs when nothing goes wrong. Instead a future
//! [`take`]s this thread's spare reference when it is the one it needs and
//! [`give`]s it back when done, so back-to-back calls on a thread share one
//! reference and touch no reference count. Each slot keeps at most one
//! reference per thread alive after its owner is dropped.

use std::cell::Cell;
use std::sync::Arc;
use std::thread::LocalKey;

/// A thread's spare reference: declare one per kind of state with
/// `thread_local! { static S: Slot<T> = const { Cell::new(None) }; }`.
pub(crate) type Slot<T> = Cell<Option<Arc<T>>>;

/// A reference to `wanted`: the thread's spare in `slot` if it is the same
/// allocation, else a clone.
#[inline]
pub(crate) fn take<T: ?Sized>(slot: &'static LocalKey<Slot<T>>, wanted: &Arc<T>) -> Arc<T> {
    slot.try_with(|s| match s.take() {
        Some(spare) if Arc::ptr_eq(&spare, wanted) => spare,
        other => {
            s.set(other);
            Arc::clone(wanted)
        }
    })
    .unwrap_or_else(|_| Arc::clone(wanted))
}

/// Makes `arc` the thread's spare in `slot`; the one it replaces, if any,
/// is dropped.
#[inline]
pub(crate) fn give<T: ?Sized>(slot: &'static LocalKey<Slot<T>>, arc: Arc<T>) {
    // Fails only while the thread is being torn down: then `arc` just drops.
    let _ = slot.try_with(move |s| drop(s.replace(Some(arc))));
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOT: Slot<u32> = const { Cell::new(None) };
    }

    #[test]
    fn a_given_reference_is_taken_back_without_a_clone() {
        let a = Arc::new(1);
        let lent = take(&SLOT, &a);
        assert_eq!(Arc::strong_count(&a), 2);
        give(&SLOT, lent);
        let again = take(&SLOT, &a);
        assert_eq!(Arc::strong_count(&a), 2, "the spare, not a new clone");
        let b = Arc::new(2);
        give(&SLOT, again);
        let other = take(&SLOT, &b);
        assert_eq!(*other, 2, "another allocation gets its own clone");
        assert_eq!(Arc::strong_count(&a), 2, "and leaves the spare alone");
        give(&SLOT, other);
        assert_eq!(Arc::strong_count(&a), 1, "a new spare replaces the old one");
    }
}

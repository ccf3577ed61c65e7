//! [`TimedFuture`]: an inner future raced against a lazily armed timer.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::{BoxError, Error};

pin_project! {
    /// Response future of the deadline and timeout layers.
    ///
    /// The timer is armed only if the inner future is not ready on its first
    /// poll, so a call that answers at once never touches tokio's timer wheel;
    /// and not while a timer armed inside it, in the same poll of the same
    /// task, fires no later than this deadline (a server's deadline around a
    /// client's per-attempt timeout): that timer wakes the task in time, and
    /// this one is armed at the first pending poll without it.
    /// When the deadline passes first, the inner future is dropped and the
    /// call fails with [`Error::Timeout`].
    pub struct TimedFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Instant,
        budget: Duration,
    }
}

impl<F> TimedFuture<F> {
    pub(crate) fn new(inner: F, deadline: Instant, budget: Duration) -> Self {
        TimedFuture {
            inner: Some(inner),
            sleep: None,
            deadline,
            budget,
        }
    }

    /// A future that fails at once: the deadline passed before the call.
    pub(crate) fn expired(budget: Duration) -> Self {
        TimedFuture {
            inner: None,
            sleep: None,
            deadline: Instant::now(),
            budget,
        }
    }
}

impl<F, T, E> Future for TimedFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let timeout = |budget: Duration| -> BoxError {
            Box::new(Error::Timeout {
                after: Some(budget),
            })
        };
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(timeout(*this.budget)));
        };
        let (polled, below) = armed_within(|| inner.poll(cx));
        if let Poll::Ready(result) = polled {
            return Poll::Ready(result.map_err(Into::into));
        }
        if this.sleep.is_none() {
            if below.is_some_and(|b| b <= *this.deadline) {
                // A timer inside wakes this task by our deadline: no need
                // for one of our own yet.
                report_armed(below);
                return Poll::Pending;
            }
            this.sleep.set(Some(sleep_until(*this.deadline)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                // Drop the inner call now: its work is no longer wanted.
                this.inner.set(None);
                return Poll::Ready(Err(timeout(*this.budget)));
            }
        }
        report_armed(Some(
            below.map_or(*this.deadline, |b| b.min(*this.deadline)),
        ));
        Poll::Pending
    }
}

thread_local! {
    /// While a [`TimedFuture`] polls its inner future: the earliest deadline
    /// of the timers armed inside it during that poll (they wake this task).
    static ARMED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `poll` (a poll of the future a timer of yours guards) and returns
/// its result with the earliest deadline of the timers armed inside it
/// during that poll: [`TimedFuture`]s, and anything that called
/// [`report_armed`]. They wake this task by then, so a timer of yours with a
/// later or equal deadline need not be armed yet. The enclosing record is
/// restored afterwards, even if `poll` panics.
///
/// This is how the deadline and timeout layers avoid arming a timer each
/// when one inside already covers them; a middleware with a timer of its own
/// can take part the same way (forten-client's total deadline does).
///
/// ```
/// use forten_core::deadline::{armed_within, report_armed};
/// use tokio::time::{Duration, Instant};
///
/// let at = Instant::now() + Duration::from_secs(1);
/// let ((), earliest) = armed_within(|| report_armed(Some(at)));
/// assert_eq!(earliest, Some(at));
/// assert_eq!(armed_within(|| ()).1, None);
/// ```
pub fn armed_within<R>(poll: impl FnOnce() -> R) -> (R, Option<Instant>) {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0;
            let _ = ARMED.try_with(|a| a.set(outer));
        }
    }
    let restore = Restore(ARMED.try_with(Cell::take).ok().flatten());
    let result = poll();
    let below = ARMED.try_with(Cell::get).ok().flatten();
    drop(restore);
    (result, below)
}

/// Tells the enclosing [`armed_within`] (a [`TimedFuture`] polling you) that
/// a timer armed in this poll wakes the task at `at` at the latest: call it
/// when your future returns `Pending` with its timer armed (or covered by
/// one inside it, as [`armed_within`] said). `None` does nothing.
pub fn report_armed(at: Option<Instant>) {
    let Some(at) = at else { return };
    let _ = ARMED.try_with(|a| a.set(Some(a.get().map_or(at, |prev| prev.min(at)))));
}

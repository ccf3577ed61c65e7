//! [`RetryBudget`]: Finagle's bound on retry amplification.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Fixed-point scale of the ratio (per mille).
const SCALE: u128 = 1000;

/// Deposits are credited to the ring in batches of this many, so only one
/// deposit in `BATCH` reads the clock.
const BATCH: u64 = 16;

/// Limits retries to a fraction of recent traffic, Finagle's model: within the
/// last `window`, retries may not exceed `ratio` x requests plus
/// `min_per_second` x the window's seconds (the reserve lets quiet clients
/// retry at all).
///
/// Every request [`deposit`](Self::deposit)s; every retry must
/// [`try_withdraw`](Self::try_withdraw) first. Under a full outage the load a
/// client sends is therefore at most `1 + ratio` times its request rate (plus
/// the reserve), instead of `max_attempts` times.
///
/// Lock-free: counts live in a ring of one-second buckets, each an atomic word
/// holding the bucket's second and its count. A deposit is one atomic add;
/// every 16th deposit also reads the clock and credits the batch of 16 to the
/// current second (the not-yet-credited rest counts as current). Reading the
/// clock per request would cost more than everything else the retry layer
/// does on a first success; the price is a window edge blurred by at most
/// 2 x 15 requests, i.e. at most `30 x ratio` extra retries. Clones share the same budget, so one budget can cover
/// several layers (e.g. every route to the same upstream).
///
/// Defaults: 20 % + 10 retries/s over 10 s.
///
/// ```
/// use std::time::Duration;
/// use forten_core::retry::RetryBudget;
///
/// let budget = RetryBudget::builder()
///     .ratio(0.5)
///     .min_per_second(0)
///     .window(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// for _ in 0..4 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw()); // 2 retries for 4 requests at 50 %
/// # });
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    window: u64,
    ratio_pm: u64,
    min_per_second: u32,
    reserve_pm: u128,
    /// Every deposit ever made; the ring holds all but the last `total % BATCH`.
    total: Padded,
    buckets: Box<[Bucket]>,
}

#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

/// One second of the window. Each word packs the bucket's second (high 32
/// bits, wrapping) and its count (low 32 bits). Aligned to a cache line so
/// neighbouring seconds do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Bucket {
    deposits: AtomicU64,
    withdrawals: AtomicU64,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &(self.inner.ratio_pm as f64 / 1000.0))
            .field("min_per_second", &self.inner.min_per_second)
            .field("window_secs", &self.inner.window)
            .finish_non_exhaustive()
    }
}

/// A budget configuration the builder refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The ratio is negative, NaN, infinite or above 1000.
    #[error(
        "the retry ratio must be a finite number in [0, 1000], got {0}; 0.2 allows 20 % retries"
    )]
    InvalidRatio(f64),
    /// The window is shorter than one second or longer than one hour.
    #[error("the budget window must be between 1 s and 1 h in whole seconds, got {0:?}")]
    InvalidWindow(Duration),
}

/// Builds a validated [`RetryBudget`].
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
}

impl RetryBudgetBuilder {
    /// Retries allowed per request in the window (default 0.2, i.e. 20 %).
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries allowed per second regardless of traffic (default 10).
    pub fn min_per_second(mut self, min: u32) -> Self {
        self.min_per_second = min;
        self
    }

    /// How far back requests and retries count (default 10 s; whole seconds,
    /// 1 s to 1 h; a fraction of a second is dropped).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Validates and returns the budget.
    pub fn build(self) -> Result<RetryBudget, BudgetError> {
        if !self.ratio.is_finite() || !(0.0..=1000.0).contains(&self.ratio) {
            return Err(BudgetError::InvalidRatio(self.ratio));
        }
        let window = self.window.as_secs();
        if !(1..=3600).contains(&window) {
            return Err(BudgetError::InvalidWindow(self.window));
        }
        let ratio_pm = (self.ratio * 1000.0).round() as u64;
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                start: Instant::now(),
                window,
                ratio_pm,
                min_per_second: self.min_per_second,
                reserve_pm: u128::from(self.min_per_second) * u128::from(window) * SCALE,
                total: Padded::default(),
                buckets: (0..window).map(|_| Bucket::default()).collect(),
            }),
        })
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new()
    }
}

impl RetryBudget {
    /// The default budget: 20 % + 10 retries/s over 10 s.
    pub fn new() -> Self {
        RetryBudget::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    /// A builder starting from the defaults.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }

    /// Records one request (call it once per request, not per attempt).
    #[inline]
    pub fn deposit(&self) {
        if self.inner.count_deposit() {
            self.inner.credit_batch(self.inner.now());
        }
    }

    /// Takes one retry from the budget; `false` means the budget is spent and
    /// the caller must not retry.
    pub fn try_withdraw(&self) -> bool {
        self.inner.try_withdraw_at(self.inner.now())
    }

    /// How many retries the budget would allow right now.
    pub fn balance(&self) -> u64 {
        self.inner.balance_at(self.inner.now())
    }
}

fn pack(epoch: u32, count: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(count)
}

fn epoch_of(v: u64) -> u32 {
    (v >> 32) as u32
}

fn count_of(v: u64) -> u32 {
    v as u32
}

/// Adds `by` to `slot` for second `now`, resetting a bucket left from an
/// older second.
fn increment(slot: &AtomicU64, now: u32, by: u32) {
    let mut v = slot.load(Ordering::Relaxed);
    loop {
        let e = epoch_of(v);
        // a bucket already rotated by a thread with a later clock read keeps its epoch
        let next = if e == now || (now.wrapping_sub(e) as i32) < 0 {
            pack(e, count_of(v).saturating_add(by))
        } else {
            pack(now, by)
        };
        match slot.compare_exchange_weak(v, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => v = seen,
        }
    }
}

/// Takes back one count added for second `now`; if the bucket rotated since,
/// the count left the window already.
fn decrement(slot: &AtomicU64, now: u32) {
    let mut v = slot.load(Ordering::Relaxed);
    while epoch_of(v) == now && count_of(v) > 0 {
        match slot.compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => v = seen,
        }
    }
}

impl Inner {
    fn now(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.start)
            .as_secs()
    }

    fn bucket(&self, now: u64) -> &Bucket {
        // `buckets.len() == window >= 1`, so the index is in range
        &self.buckets[(now % self.window) as usize]
    }

    /// Counts one deposit; `true` when it completes a batch the caller must
    /// credit with [`credit_batch`](Self::credit_batch).
    #[inline]
    fn count_deposit(&self) -> bool {
        (self.total.0.fetch_add(1, Ordering::Relaxed) + 1) % BATCH == 0
    }

    fn credit_batch(&self, now: u64) {
        increment(&self.bucket(now).deposits, now as u32, BATCH as u32);
    }

    #[cfg(test)]
    fn deposit_at(&self, now: u64) {
        if self.count_deposit() {
            self.credit_batch(now);
        }
    }

    /// Requests and retries counted in the window ending at second `now`.
    fn totals(&self, now: u64) -> (u128, u128) {
        let now = now as u32;
        let in_window = |v: u64| {
            let age = now.wrapping_sub(epoch_of(v));
            if u64::from(age) < self.window || (age as i32) < 0 {
                u128::from(count_of(v))
            } else {
                0
            }
        };
        let uncredited = u128::from(self.total.0.load(Ordering::Acquire) % BATCH);
        self.buckets.iter().fold((uncredited, 0), |(d, w), b| {
            (
                d + in_window(b.deposits.load(Ordering::Acquire)),
                w + in_window(b.withdrawals.load(Ordering::Acquire)),
            )
        })
    }

    fn allowance_pm(&self, deposits: u128) -> u128 {
        u128::from(self.ratio_pm) * deposits + self.reserve_pm
    }

    fn try_withdraw_at(&self, now: u64) -> bool {
        // count first, then check: concurrent withdrawals can never overshoot
        let slot = &self.bucket(now).withdrawals;
        increment(slot, now as u32, 1);
        let (deposits, withdrawals) = self.totals(now);
        if withdrawals * SCALE <= self.allowance_pm(deposits) {
            true
        } else {
            decrement(slot, now as u32);
            false
        }
    }

    fn balance_at(&self, now: u64) -> u64 {
        let (deposits, withdrawals) = self.totals(now);
        let allowed = self.allowance_pm(deposits) / SCALE;
        u64::try_from(allowed.saturating_sub(withdrawals)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;
    use proptest::strategy::BoxedStrategy;
    use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

    use super::*;

    /// The reference model: every event with its second, counted naively.
    #[derive(Debug, Clone)]
    struct Model {
        ratio_pm: u64,
        min_per_second: u32,
        window: u64,
        now: u64,
        /// every deposit made
        total: u64,
        /// the second of each credited batch of `BATCH` deposits
        batches: VecDeque<u64>,
        withdrawals: VecDeque<u64>,
        last_withdraw: Option<bool>,
    }

    impl Model {
        fn count(&self, events: &VecDeque<u64>) -> u128 {
            events
                .iter()
                .filter(|&&t| self.now - t < self.window)
                .count() as u128
        }

        fn deposits(&self) -> u128 {
            self.count(&self.batches) * u128::from(BATCH) + u128::from(self.total % BATCH)
        }

        fn allows(&self) -> bool {
            let d = self.deposits();
            let w = self.count(&self.withdrawals);
            (w + 1) * 1000
                <= u128::from(self.ratio_pm) * d
                    + u128::from(self.min_per_second) * u128::from(self.window) * 1000
        }

        fn balance(&self) -> u64 {
            let d = self.deposits();
            let w = self.count(&self.withdrawals);
            let allowed = (u128::from(self.ratio_pm) * d
                + u128::from(self.min_per_second) * u128::from(self.window) * 1000)
                / 1000;
            allowed.saturating_sub(w) as u64
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Deposit(u32),
        Withdraw,
        Advance(u64),
    }

    struct BudgetMachine;

    impl ReferenceStateMachine for BudgetMachine {
        type State = Model;
        type Transition = Step;

        fn init_state() -> BoxedStrategy<Model> {
            (0u64..=1500, 0u32..4, 1u64..6)
                .prop_map(|(ratio_pm, min_per_second, window)| Model {
                    ratio_pm,
                    min_per_second,
                    window,
                    now: 0,
                    total: 0,
                    batches: VecDeque::new(),
                    withdrawals: VecDeque::new(),
                    last_withdraw: None,
                })
                .boxed()
        }

        fn transitions(state: &Model) -> BoxedStrategy<Step> {
            let window = state.window;
            prop_oneof![
                3 => (1u32..40).prop_map(Step::Deposit),
                4 => Just(Step::Withdraw),
                1 => (0..=window + 1).prop_map(Step::Advance),
            ]
            .boxed()
        }

        fn apply(mut state: Model, step: &Step) -> Model {
            state.last_withdraw = None;
            match *step {
                Step::Deposit(n) => {
                    for _ in 0..n {
                        state.total += 1;
                        if state.total % BATCH == 0 {
                            state.batches.push_back(state.now);
                        }
                    }
                }
                Step::Withdraw => {
                    let ok = state.allows();
                    if ok {
                        state.withdrawals.push_back(state.now);
                    }
                    state.last_withdraw = Some(ok);
                }
                Step::Advance(s) => state.now += s,
            }
            state
        }
    }

    struct Sut {
        inner: Inner,
        now: u64,
    }

    impl StateMachineTest for BudgetMachine {
        type SystemUnderTest = Sut;
        type Reference = BudgetMachine;

        fn init_test(model: &Model) -> Sut {
            let budget = RetryBudget::builder()
                .ratio(model.ratio_pm as f64 / 1000.0)
                .min_per_second(model.min_per_second)
                .window(Duration::from_secs(model.window))
                .build()
                .unwrap();
            let inner = Arc::try_unwrap(budget.inner).ok().unwrap();
            Sut { inner, now: 0 }
        }

        fn apply(mut sut: Sut, model: &Model, step: Step) -> Sut {
            match step {
                Step::Deposit(n) => (0..n).for_each(|_| sut.inner.deposit_at(sut.now)),
                Step::Withdraw => {
                    let got = sut.inner.try_withdraw_at(sut.now);
                    assert_eq!(Some(got), model.last_withdraw);
                }
                Step::Advance(s) => sut.now += s,
            }
            sut
        }

        fn check_invariants(sut: &Sut, model: &Model) {
            assert_eq!(sut.inner.balance_at(sut.now), model.balance());
        }
    }

    prop_state_machine! {
        #[test]
        fn budget_matches_reference_model(sequential 1..60 => BudgetMachine);
    }

    #[test]
    fn builder_rejects_bad_config() {
        assert!(matches!(
            RetryBudget::builder().ratio(-0.1).build(),
            Err(BudgetError::InvalidRatio(_))
        ));
        assert!(matches!(
            RetryBudget::builder().ratio(f64::NAN).build(),
            Err(BudgetError::InvalidRatio(_))
        ));
        assert!(matches!(
            RetryBudget::builder()
                .window(Duration::from_millis(500))
                .build(),
            Err(BudgetError::InvalidWindow(_))
        ));
    }

    #[test]
    fn concurrent_withdrawals_never_overshoot() {
        let budget = RetryBudget::builder()
            .ratio(0.1)
            .min_per_second(0)
            .build()
            .unwrap();
        let inner = &budget.inner;
        (0..1000).for_each(|_| inner.deposit_at(0));
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if inner.try_withdraw_at(0) {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // counting first and checking after can deny a few under contention, never over-grant
        let granted = granted.load(Ordering::Relaxed);
        assert!((95..=100).contains(&granted), "granted {granted}");
    }
}

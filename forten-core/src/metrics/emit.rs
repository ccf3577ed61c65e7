//! The emission points inside forten-core; [`noop`](super) mirrors this API
//! when the `metrics` feature is off.

use std::sync::Arc;

use metrics::{
    Counter, Gauge, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
};

use super::{
    CIRCUIT_REJECTED, CIRCUIT_STATE, CIRCUIT_TRANSITIONS, CLIENT_REQUEST_DURATION,
    EVENTS_DEAD_LETTERED, EVENTS_HANDLED, EVENTS_PUBLISHED, IDEMPOTENCY_REPLAYS, RATE_LIMITED,
    RETRY_ATTEMPTS, RETRY_BUDGET_EXHAUSTED, SERVER_REQUEST_DURATION, SERVER_REQUESTS,
};
use crate::circuit::CircuitState;

/// The label of a retry layer without a name.
const UNNAMED: &str = "default";

/// Describes every forten metric (help text and unit) to the installed
/// recorder; call it once, after installing the recorder.
pub fn describe() {
    describe_gauge!(
        CIRCUIT_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled."
    );
    describe_counter!(CIRCUIT_TRANSITIONS, "Circuit breaker state transitions.");
    describe_counter!(CIRCUIT_REJECTED, "Calls a circuit breaker refused.");
    describe_counter!(
        RETRY_ATTEMPTS,
        "Attempts with a retryable outcome, by what followed."
    );
    describe_counter!(
        RETRY_BUDGET_EXHAUSTED,
        "Retries refused by an empty retry budget."
    );
    describe_histogram!(
        CLIENT_REQUEST_DURATION,
        Unit::Seconds,
        "Client calls to a service, retries included."
    );
    describe_counter!(SERVER_REQUESTS, "Requests a server answered.");
    describe_histogram!(
        SERVER_REQUEST_DURATION,
        Unit::Seconds,
        "Time until a server's response head."
    );
    describe_counter!(EVENTS_PUBLISHED, "Events published, by outcome.");
    describe_counter!(EVENTS_HANDLED, "Event deliveries handled, by outcome.");
    describe_counter!(EVENTS_DEAD_LETTERED, "Events moved to a dead-letter queue.");
    describe_counter!(
        IDEMPOTENCY_REPLAYS,
        "Responses replayed from the idempotency store."
    );
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit.");
}

/// A breaker's per-call handles, resolved when the breaker is built.
#[derive(Debug)]
pub(crate) struct BreakerHandles {
    state: Gauge,
    rejected: Counter,
}

impl BreakerHandles {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        let state = gauge!(CIRCUIT_STATE, "breaker" => Arc::clone(name));
        state.set(CircuitState::Closed.code() as f64);
        BreakerHandles {
            state,
            rejected: counter!(CIRCUIT_REJECTED, "breaker" => Arc::clone(name)),
        }
    }

    #[inline]
    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }

    #[cold]
    pub(crate) fn transition(&self, name: &Arc<str>, from: CircuitState, to: CircuitState) {
        self.state.set(to.code() as f64);
        counter!(
            CIRCUIT_TRANSITIONS,
            "breaker" => Arc::clone(name),
            "from" => from.as_str(),
            "to" => to.as_str(),
        )
        .increment(1);
    }
}

fn service_label(service: Option<&Arc<str>>) -> metrics::SharedString {
    service.map_or(metrics::SharedString::const_str(UNNAMED), |s| {
        metrics::SharedString::from(Arc::clone(s))
    })
}

/// An attempt's retryable outcome and what followed it.
#[cold]
pub(crate) fn retry_attempt(service: Option<&Arc<str>>, outcome: &'static str) {
    counter!(RETRY_ATTEMPTS, "service" => service_label(service), "outcome" => outcome)
        .increment(1);
}

/// A retry refused by an empty budget.
#[cold]
pub(crate) fn retry_budget_exhausted(service: Option<&Arc<str>>) {
    counter!(RETRY_BUDGET_EXHAUSTED, "service" => service_label(service)).increment(1);
}

/// A response replayed from the idempotency store.
pub(crate) fn idempotency_replayed() {
    counter!(IDEMPOTENCY_REPLAYS).increment(1);
}

/// A request refused by the rate limit `policy`.
#[cold]
pub(crate) fn rate_limited(policy: &Arc<str>) {
    counter!(RATE_LIMITED, "policy" => Arc::clone(policy)).increment(1);
}

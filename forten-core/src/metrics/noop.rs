//! The emission points with the `metrics` feature off: they do nothing.
// the same methods as the real handles, so callers compile either way
#![allow(clippy::unused_self)]

use std::sync::Arc;

use crate::circuit::CircuitState;

#[derive(Debug)]
pub(crate) struct BreakerHandles;

impl BreakerHandles {
    pub(crate) fn new(_name: &Arc<str>) -> Self {
        BreakerHandles
    }
    #[inline]
    pub(crate) fn rejected(&self) {}
    #[inline]
    pub(crate) fn transition(&self, _name: &Arc<str>, _from: CircuitState, _to: CircuitState) {}
}

#[inline]
pub(crate) fn retry_attempt(_service: Option<&Arc<str>>, _outcome: &'static str) {}
#[inline]
pub(crate) fn retry_budget_exhausted(_service: Option<&Arc<str>>) {}
#[inline]
pub(crate) fn idempotency_replayed() {}
#[inline]
pub(crate) fn rate_limited(_policy: &Arc<str>) {}

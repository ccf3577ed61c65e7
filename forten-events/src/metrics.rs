//! The bus's metrics (names in `forten_core::metrics`, README "Metrics"):
//! publishes by event type and outcome, deliveries handled by queue and
//! outcome, dead letters by queue. A no-op without the `metrics` feature.

use crate::error::Error;

/// Counts one publish by its result.
pub(crate) fn published(event_type: &str, result: &Result<(), Error>) {
    #[cfg(feature = "metrics")]
    {
        let outcome = match result {
            Ok(()) => "ok",
            Err(Error::Unroutable { .. }) => "unroutable",
            Err(_) => "error",
        };
        metrics::counter!(
            forten_core::metrics::EVENTS_PUBLISHED,
            "event_type" => event_type.to_owned(),
            "outcome" => outcome,
        )
        .increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (event_type, result);
}

/// One subscription's counters, resolved when it starts consuming.
#[derive(Debug)]
pub(crate) struct QueueMetrics {
    #[cfg(feature = "metrics")]
    handled: [metrics::Counter; 4],
    #[cfg(feature = "metrics")]
    dead_lettered: metrics::Counter,
}

/// How a delivery ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handled {
    Ok = 0,
    Duplicate = 1,
    Retry = 2,
    DeadLettered = 3,
}

#[cfg(feature = "metrics")]
const HANDLED: [&str; 4] = ["ok", "duplicate", "retry", "dead_lettered"];

impl QueueMetrics {
    pub(crate) fn new(queue: &std::sync::Arc<str>) -> Self {
        #[cfg(feature = "metrics")]
        {
            use forten_core::metrics::{EVENTS_DEAD_LETTERED, EVENTS_HANDLED};
            let q = || std::sync::Arc::clone(queue);
            QueueMetrics {
                handled: HANDLED.map(|outcome| {
                    metrics::counter!(EVENTS_HANDLED, "queue" => q(), "outcome" => outcome)
                }),
                dead_lettered: metrics::counter!(EVENTS_DEAD_LETTERED, "queue" => q()),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = queue;
            QueueMetrics {}
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn handled(&self, outcome: Handled) {
        #[cfg(feature = "metrics")]
        {
            self.handled[outcome as usize].increment(1);
            if let Handled::DeadLettered = outcome {
                self.dead_lettered.increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = outcome;
    }
}

//! What both backends do with one delivery: decode, dedup, run the handler in
//! the event's context, and decide ack / retry / dead-letter.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::Instrument;

use crate::context;
use crate::envelope::decode_body;
use crate::error::HandlerError;
use crate::handler::{Delivery, Handler};
use crate::metrics::{Handled, QueueMetrics};
use crate::subscription::Subscription;

/// A message as a backend received it.
pub(crate) struct Inbound<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
    pub(crate) attempt: u32,
    pub(crate) redelivered: bool,
}

/// What to do with the message after the handler.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    Ack,
    Retry { delay: Duration, next_attempt: u32 },
    DeadLetter { reason: String },
}

/// Remembers the ids of events handled successfully (bounded, oldest out).
#[derive(Debug)]
pub(crate) struct Dedup {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
    window: usize,
}

impl Dedup {
    pub(crate) fn new(window: usize) -> Self {
        Dedup {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            window,
        }
    }

    fn seen(&self, id: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .contains(id)
    }

    fn remember(&self, id: &str) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.0.insert(id.to_owned()) {
            g.1.push_back(id.to_owned());
            while g.1.len() > self.window {
                if let Some(old) = g.1.pop_front() {
                    g.0.remove(&old);
                }
            }
        }
    }
}

/// Shared per-subscription state for dispatching.
pub(crate) struct Dispatcher {
    pub(crate) sub: Subscription,
    pub(crate) queue: Arc<str>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) dedup: Option<Dedup>,
    metrics: QueueMetrics,
}

impl Dispatcher {
    pub(crate) fn new(sub: Subscription, handler: Arc<dyn Handler>) -> Self {
        let queue = Arc::from(sub.queue.as_str());
        Dispatcher {
            metrics: QueueMetrics::new(&queue),
            queue,
            dedup: sub.dedup.map(Dedup::new),
            sub,
            handler,
        }
    }

    /// Runs the handler for one message and says what to do with it.
    pub(crate) async fn dispatch(&self, msg: Inbound<'_>) -> Outcome {
        let (outcome, handled) = self.decide(msg).await;
        self.metrics.handled(handled);
        outcome
    }

    async fn decide(&self, msg: Inbound<'_>) -> (Outcome, Handled) {
        let event = match decode_body(msg.body, msg.traceparent, msg.tracestate) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(queue = %self.queue, error = %e, "undecodable event dead-lettered");
                let reason = format!("undecodable envelope: {e}");
                return (Outcome::DeadLetter { reason }, Handled::DeadLettered);
            }
        };
        if let Some(dedup) = &self.dedup
            && dedup.seen(&event.event_id)
        {
            tracing::debug!(event_id = %event.event_id, "duplicate skipped");
            return (Outcome::Ack, Handled::Duplicate);
        }
        let ctx = context::restore(
            &event.correlation_id,
            event.traceparent.as_deref(),
            event.tracestate.as_deref(),
        );
        let span = tracing::info_span!(
            "event",
            event_type = %event.event_type,
            event_id = %event.event_id,
            correlation_id = %event.correlation_id,
            queue = %self.queue,
            attempt = msg.attempt,
        );
        ctx.set_parent_of(&span);
        let event_id = event.event_id.clone();
        let delivery = Delivery {
            event,
            attempt: msg.attempt,
            redelivered: msg.redelivered,
            queue: self.queue.clone(),
        };
        let result = context::scope(ctx, event_id.clone(), self.handler.handle(delivery))
            .instrument(span)
            .await;
        match result {
            Ok(()) => {
                if let Some(dedup) = &self.dedup {
                    dedup.remember(&event_id);
                }
                (Outcome::Ack, Handled::Ok)
            }
            Err(HandlerError::Retry(e)) if msg.attempt <= self.sub.max_retries => {
                tracing::debug!(%event_id, attempt = msg.attempt, error = %e, "handler failed; retrying");
                let retry = Outcome::Retry {
                    delay: self.sub.retry_delay(msg.attempt),
                    next_attempt: msg.attempt + 1,
                };
                (retry, Handled::Retry)
            }
            Err(e) => {
                tracing::warn!(%event_id, attempt = msg.attempt, error = %e, "event dead-lettered");
                let reason = match e {
                    HandlerError::Retry(e) => {
                        format!("retries exhausted after {} attempt(s): {e}", msg.attempt)
                    }
                    HandlerError::Permanent(e) => format!("permanent failure: {e}"),
                };
                (Outcome::DeadLetter { reason }, Handled::DeadLettered)
            }
        }
    }
}

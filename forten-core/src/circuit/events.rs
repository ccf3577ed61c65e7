//! [`CircuitEvent`]s: every state transition and rejection, as a stream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_stream::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::CircuitState;

/// Something a circuit breaker did, as seen by [`subscribe`](super::CircuitBreaker::subscribe).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitEvent {
    /// The breaker changed state.
    Transition {
        /// The breaker's name.
        name: Arc<str>,
        /// The state it left.
        from: CircuitState,
        /// The state it entered.
        to: CircuitState,
    },
    /// A call was refused without reaching the inner service.
    Rejected {
        /// The breaker's name.
        name: Arc<str>,
        /// The state that refused it (Open, HalfOpen with no permit left, ForcedOpen).
        state: CircuitState,
        /// The `retry_after` handed to the caller.
        retry_after: Duration,
    },
}

impl CircuitEvent {
    /// The name of the breaker that emitted the event.
    pub fn name(&self) -> &str {
        match self {
            CircuitEvent::Transition { name, .. } | CircuitEvent::Rejected { name, .. } => name,
        }
    }
}

/// Sends events to subscribers; shared by every breaker of a keyed layer.
#[derive(Debug, Clone)]
pub(crate) struct Emitter {
    sender: broadcast::Sender<CircuitEvent>,
    /// Live [`CircuitEvents`] streams: lets the rejection path skip the
    /// channel's lock entirely when nobody listens.
    subscribers: Arc<AtomicUsize>,
}

impl Emitter {
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Emitter {
            sender,
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A handle that emits while this emitter (or a clone) lives, without
    /// keeping the channel open: what a breaker's shared state holds, so that
    /// the streams end when the last breaker handle is dropped even though
    /// in-flight calls (and thread-local spares, see `breaker.rs`) still keep
    /// that state alive.
    pub(crate) fn downgrade(&self) -> WeakEmitter {
        WeakEmitter {
            sender: self.sender.downgrade(),
            subscribers: Arc::clone(&self.subscribers),
        }
    }

    pub(crate) fn subscribe(&self) -> CircuitEvents {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        CircuitEvents {
            inner: BroadcastStream::new(self.sender.subscribe()),
            subscribers: Arc::clone(&self.subscribers),
            lagged: 0,
        }
    }
}

/// The emitting side a breaker's state keeps: see [`Emitter::downgrade`].
#[derive(Debug, Clone)]
pub(crate) struct WeakEmitter {
    sender: broadcast::WeakSender<CircuitEvent>,
    subscribers: Arc<AtomicUsize>,
}

impl WeakEmitter {
    pub(crate) fn has_subscribers(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Sends `event` to the subscribers, if any, while a breaker handle lives.
    pub(crate) fn emit(&self, event: CircuitEvent) {
        if self.has_subscribers() {
            if let Some(sender) = self.sender.upgrade() {
                // An error only means every receiver went away meanwhile.
                let _ = sender.send(event);
            }
        }
    }
}

/// A stream of [`CircuitEvent`]s, from [`CircuitBreaker::subscribe`](super::CircuitBreaker::subscribe).
///
/// Events are buffered per subscriber up to the configured capacity
/// ([`event_capacity`](super::CircuitBreakerBuilder::event_capacity)); a
/// subscriber that falls further behind skips the oldest ones and
/// [`lagged`](Self::lagged) says how many it missed. The stream ends when
/// the breaker is dropped: its last clone and every service built from it
/// (for a keyed layer, its registry and every key's breaker). Calls still in
/// flight then finish normally, but emit nothing more.
pub struct CircuitEvents {
    inner: BroadcastStream<CircuitEvent>,
    subscribers: Arc<AtomicUsize>,
    lagged: u64,
}

impl CircuitEvents {
    /// How many events this subscriber skipped because it fell behind.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl std::fmt::Debug for CircuitEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitEvents")
            .field("lagged", &self.lagged)
            .finish_non_exhaustive()
    }
}

impl Stream for CircuitEvents {
    type Item = CircuitEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CircuitEvent>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    self.lagged += n;
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for CircuitEvents {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

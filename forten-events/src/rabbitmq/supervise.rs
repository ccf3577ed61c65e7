//! Keeps both connections up even when nothing uses one of them.
//!
//! A link is otherwise re-opened by its user: a publish re-opens the
//! publishing connection, a consumer the consuming one. A bus that only
//! publishes (or only consumes) never touches its other connection, so a cut
//! would leave that one down for good, and [`is_connected`] false with it:
//! a readiness check built on it would take a healthy service out of
//! service. The supervisor re-opens a dead link itself, on each
//! `Disconnected` event and, in case an event was missed, on a periodic look.
//!
//! [`is_connected`]: super::RabbitMqBus::is_connected

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::Inner;
use crate::bus::ConnectionEvent;

/// How often the supervisor looks at both links without an event.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Starts the supervisor of `inner`'s links; it stops when the bus closes
/// (or is dropped).
pub(super) fn supervise(inner: &Arc<Inner>) {
    let mut events = inner.events.subscribe();
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let root = inner.root.clone();
    inner.tracker.spawn(async move {
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = root.cancelled() => break,
                event = events.recv() => match event {
                    Ok(ConnectionEvent::Disconnected { .. }) | Err(RecvError::Lagged(_)) => {}
                    Ok(_) => continue,
                    Err(RecvError::Closed) => break,
                },
                _ = look.tick() => {}
            }
            let Some(inner) = weak.upgrade() else { break };
            if inner.closed.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                () = root.cancelled() => break,
                () = reopen_dead_links(&inner) => {}
            }
        }
    });
}

async fn reopen_dead_links(inner: &Inner) {
    let publish = inner.publish_link();
    if !publish.conn.status().connected()
        && let Err(e) = inner.reconnect_publish(publish.generation).await
    {
        tracing::warn!(error = %e, "re-opening the RabbitMQ publishing connection failed; trying again");
    }
    let consume = inner.consume_link();
    if !consume.conn.status().connected()
        && let Err(e) = inner.reconnect_consume(consume.generation).await
    {
        tracing::warn!(error = %e, "re-opening the RabbitMQ consuming connection failed; trying again");
    }
}

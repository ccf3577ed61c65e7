//! [`MemoryBus`]: the in-process bus with RabbitMQ's semantics.

use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{ConnectionEvent, DeadLetter, Publisher, Subscriber, SubscriptionHandle};
use crate::dispatch::{Dispatcher, Inbound, Outcome};
use crate::envelope::EncodedEvent;
use crate::error::Error;
use crate::handler::Handler;
use crate::subscription::Subscription;
use crate::topic;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An in-memory event bus with the semantics of the RabbitMQ one: topic
/// patterns, one durable queue per subscription (events published before
/// anyone consumes are kept), competing consumers, ack after the handler,
/// retries after their delays on tokio time, a dead-letter queue per queue,
/// redelivery of what a closed subscriber did not finish.
///
/// Clones share everything; [`connection`](Self::connection) opens another
/// client on the same in-memory broker (its own subscriptions and shutdown),
/// like a second service in the same process.
///
/// ```
/// use std::sync::Arc;
/// use forten_events::{Event, MemoryBus, PublisherExt, Subscriber, Subscription};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let bus = MemoryBus::new("auth-service");
/// let sub = Subscription::builder("notifications.users").bind("user.*").build()?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let handle = bus.subscribe(sub, Arc::new(move |d: forten_events::Delivery| {
///     let tx = tx.clone();
///     async move { tx.send(d.event.event_type).ok(); Ok(()) }
/// })).await?;
/// bus.publish(&Event::new("user.registered", serde_json::json!({"id": 1}))).await?;
/// assert_eq!(rx.recv().await.as_deref(), Some("user.registered"));
/// handle.close().await;
/// # Ok::<_, forten_events::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct MemoryBus {
    broker: Arc<Broker>,
    client: Arc<Client>,
}

#[derive(Debug, Default)]
struct Broker {
    queues: Mutex<HashMap<String, Arc<MemQueue>>>,
}

#[derive(Debug)]
struct Client {
    app_id: String,
    closed: AtomicBool,
    root: CancellationToken,
    tracker: TaskTracker,
    events: broadcast::Sender<ConnectionEvent>,
}

#[derive(Debug)]
struct MemQueue {
    patterns: Mutex<Vec<String>>,
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    ready: VecDeque<Msg>,
    dead: VecDeque<DeadLetter>,
}

#[derive(Clone, Debug)]
struct Msg {
    event: Arc<EncodedEvent>,
    attempt: u32,
    redelivered: bool,
}

impl MemoryBus {
    /// A new in-memory broker and a client on it publishing as `app_id`.
    pub fn new(app_id: impl Into<String>) -> Self {
        MemoryBus {
            broker: Arc::new(Broker::default()),
            client: Client::new(app_id.into()),
        }
    }

    /// Another client on the same in-memory broker (own subscriptions and
    /// own [`close`](Self::close)).
    pub fn connection(&self, app_id: impl Into<String>) -> Self {
        MemoryBus {
            broker: self.broker.clone(),
            client: Client::new(app_id.into()),
        }
    }

    /// Events waiting in `queue` (not counting those being handled).
    pub fn queue_len(&self, queue: &str) -> Option<usize> {
        let q = lock(&self.broker.queues).get(queue).cloned()?;
        Some(lock(&q.state).ready.len())
    }

    /// True until [`close`](Self::close).
    pub fn is_connected(&self) -> bool {
        !self.client.closed.load(Ordering::SeqCst)
    }

    /// Connection changes: `Closed` once this client is closed.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.client.events.subscribe()
    }

    /// Closes this client: publishing fails with [`Error::Closed`], every
    /// subscription closes gracefully (see [`SubscriptionHandle::close`]).
    pub async fn close(&self) {
        self.client.closed.store(true, Ordering::SeqCst);
        self.client.root.cancel();
        self.client.tracker.close();
        self.client.tracker.wait().await;
        let _ = self.client.events.send(ConnectionEvent::Closed);
    }

    fn queue(&self, name: &str) -> Arc<MemQueue> {
        lock(&self.broker.queues)
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(MemQueue {
                    patterns: Mutex::new(Vec::new()),
                    state: Mutex::new(QueueState::default()),
                    notify: Notify::new(),
                })
            })
            .clone()
    }

    fn publish_now(&self, event: EncodedEvent) -> Result<(), Error> {
        if self.client.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let targets: Vec<Arc<MemQueue>> = lock(&self.broker.queues)
            .values()
            .filter(|q| {
                lock(&q.patterns)
                    .iter()
                    .any(|p| topic::matches(p, &event.event_type))
            })
            .cloned()
            .collect();
        if targets.is_empty() {
            return Err(Error::Unroutable {
                event_type: event.event_type,
            });
        }
        let event = Arc::new(event);
        for q in targets {
            q.push_back(Msg {
                event: event.clone(),
                attempt: 1,
                redelivered: false,
            });
        }
        Ok(())
    }
}

impl Client {
    fn new(app_id: String) -> Arc<Self> {
        Arc::new(Client {
            app_id,
            closed: AtomicBool::new(false),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            events: broadcast::channel(16).0,
        })
    }
}

impl MemQueue {
    fn push_back(&self, msg: Msg) {
        lock(&self.state).ready.push_back(msg);
        self.notify.notify_waiters();
    }

    fn push_front(&self, msg: Msg) {
        lock(&self.state).ready.push_front(msg);
        self.notify.notify_waiters();
    }

    async fn pop(&self) -> Msg {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(m) = lock(&self.state).ready.pop_front() {
                return m;
            }
            notified.await;
        }
    }

    fn settle(self: &Arc<Self>, msg: Msg, outcome: Outcome) {
        match outcome {
            Outcome::Ack => {}
            Outcome::Retry {
                delay,
                next_attempt,
            } => {
                let q = self.clone();
                // The broker side holds the message while it waits (a TTL queue on RabbitMQ).
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    q.push_back(Msg {
                        event: msg.event,
                        attempt: next_attempt,
                        redelivered: false,
                    });
                });
            }
            Outcome::DeadLetter { reason } => {
                lock(&self.state).dead.push_back(DeadLetter {
                    reason,
                    attempts: msg.attempt,
                    routing_key: msg.event.event_type.clone(),
                    body: msg.event.body.clone(),
                });
            }
        }
    }
}

async fn consume(q: Arc<MemQueue>, d: Arc<Dispatcher>, token: CancellationToken) {
    let sem = Arc::new(Semaphore::new(d.sub.concurrency));
    let mut tasks = JoinSet::new();
    let inflight: Arc<Mutex<HashMap<u64, Msg>>> = Arc::default();
    let mut next_id = 0_u64;
    loop {
        let permit = tokio::select! {
            biased;
            () = token.cancelled() => break,
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let msg = tokio::select! {
            biased;
            () = token.cancelled() => break,
            m = q.pop() => m,
        };
        next_id += 1;
        let id = next_id;
        lock(&inflight).insert(id, msg.clone());
        let (q2, d2, inflight2) = (q.clone(), d.clone(), inflight.clone());
        tasks.spawn(async move {
            let outcome = d2
                .dispatch(Inbound {
                    body: &msg.event.body,
                    traceparent: msg.event.traceparent.clone(),
                    tracestate: msg.event.tracestate.clone(),
                    attempt: msg.attempt,
                    redelivered: msg.redelivered,
                })
                .await;
            // From here on nothing awaits: an abort cannot split settling from forgetting.
            lock(&inflight2).remove(&id);
            q2.settle(msg, outcome);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(d.sub.shutdown_grace, drain).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let unfinished: Vec<Msg> = lock(&inflight).drain().map(|(_, m)| m).collect();
    for mut m in unfinished {
        m.redelivered = true;
        q.push_front(m);
    }
}

impl Publisher for MemoryBus {
    fn app_id(&self) -> &str {
        &self.client.app_id
    }

    fn publish_encoded(&self, event: EncodedEvent) -> BoxFuture<'_, Result<(), Error>> {
        let event_type = event.event_type.clone();
        let r = self.publish_now(event);
        crate::metrics::published(&event_type, &r);
        Box::pin(async move { r })
    }

    fn is_connected(&self) -> bool {
        MemoryBus::is_connected(self)
    }
}

impl Subscriber for MemoryBus {
    fn declare<'a>(&'a self, sub: &'a Subscription) -> BoxFuture<'a, Result<(), Error>> {
        let q = self.queue(&sub.queue);
        let mut patterns = lock(&q.patterns);
        for p in &sub.patterns {
            if !patterns.contains(p) {
                patterns.push(p.clone());
            }
        }
        drop(patterns);
        Box::pin(async { Ok(()) })
    }

    fn subscribe(
        &self,
        sub: Subscription,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'_, Result<SubscriptionHandle, Error>> {
        Box::pin(async move {
            if self.client.closed.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            self.declare(&sub).await?;
            let q = self.queue(&sub.queue);
            let queue = sub.queue.clone();
            let token = self.client.root.child_token();
            let d = Arc::new(Dispatcher::new(sub, handler));
            let task = self.client.tracker.spawn(consume(q, d, token.clone()));
            Ok(SubscriptionHandle::new(queue, token, task))
        })
    }

    fn take_dead_letters<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, Error>> {
        let q = lock(&self.broker.queues).get(queue).cloned();
        let taken = q.map_or_else(Vec::new, |q| {
            let mut st = lock(&q.state);
            let n = max.min(st.dead.len());
            st.dead.drain(..n).collect()
        });
        Box::pin(async move { Ok(taken) })
    }
}

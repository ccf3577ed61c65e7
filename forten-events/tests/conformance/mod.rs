//! One conformance suite for every backend (issue 5): each `cNN_*` function
//! is one behaviour; the backend's test file runs them all with its fixture.
//! Events are counted by eventId: duplicates are allowed (at least once), a
//! missing id is a failure.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::missing_panics_doc,
    clippy::unwrap_used
)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forten_core::correlation::CorrelationContext;
use forten_events::{
    Delivery, Event, HandlerError, Publisher, PublisherExt, Subscriber, Subscription,
    SubscriptionBuilder,
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the suite needs from a backend.
pub trait Fixture: Send + Sync + 'static {
    /// A bus of this backend.
    type Bus: Publisher + Subscriber + Clone + Send + Sync + 'static;
    /// A new client on the fixture's broker (and exchange).
    fn bus(&self) -> impl Future<Output = Self::Bus> + Send;
    /// Closes a client gracefully.
    fn close(&self, bus: &Self::Bus) -> impl Future<Output = ()> + Send;
    /// A subscription builder on a queue name unique to this fixture.
    fn sub(&self, name: &str) -> SubscriptionBuilder;
    /// Remembers a subscription's topology for cleanup.
    fn track(&self, sub: &Subscription);
}

/// Attempt numbers and times per event id.
type Attempts = HashMap<String, Vec<(u32, Instant)>>;

/// How long any wait may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(60);

fn build<F: Fixture>(fx: &F, b: SubscriptionBuilder) -> Subscription {
    let sub = b.build().unwrap();
    fx.track(&sub);
    sub
}

/// Records deliveries by eventId and wakes waiters.
#[derive(Clone, Default)]
pub struct Seen {
    by_id: Arc<Mutex<HashMap<String, Vec<Delivery>>>>,
    notify: Arc<Notify>,
}

impl Seen {
    pub fn record(&self, d: &Delivery) {
        self.by_id
            .lock()
            .unwrap()
            .entry(d.event.event_id.clone())
            .or_default()
            .push(d.clone());
        self.notify.notify_waiters();
    }

    pub fn distinct(&self) -> usize {
        self.by_id.lock().unwrap().len()
    }

    pub fn get(&self, id: &str) -> Option<Vec<Delivery>> {
        self.by_id.lock().unwrap().get(id).cloned()
    }

    pub fn all(&self) -> HashMap<String, Vec<Delivery>> {
        self.by_id.lock().unwrap().clone()
    }

    /// Waits until `n` distinct events were seen; panics after [`LIMIT`].
    pub async fn wait_for(&self, n: usize) {
        assert!(
            self.try_wait_for(n, LIMIT).await,
            "only {} of {n} events arrived within {LIMIT:?}",
            self.distinct()
        );
    }

    pub async fn try_wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.distinct() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.distinct() >= n;
            }
        }
    }

    /// A handler that records every delivery and succeeds.
    pub fn handler(&self) -> Arc<dyn forten_events::Handler> {
        let seen = self.clone();
        Arc::new(move |d: Delivery| {
            seen.record(&d);
            async { Ok(()) }
        })
    }
}

fn event(kind: &str, n: usize) -> Event<Value> {
    Event::new(kind, json!({ "n": n }))
}

/// Polls the dead-letter queue until `n` letters were taken.
async fn dead_letters<B: Subscriber>(
    bus: &B,
    queue: &str,
    n: usize,
) -> Vec<forten_events::DeadLetter> {
    let deadline = Instant::now() + LIMIT;
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(bus.take_dead_letters(queue, n - got.len()).await.unwrap());
        if got.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} dead letters",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    got
}

/// Behaviour 1: 100 events published before subscribing all arrive with data and metadata intact.
pub async fn c01_published_before_subscribing_arrive<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(fx, fx.sub("c01").bind("c01.created"));
    bus.declare(&sub).await.unwrap();
    let mut sent = Vec::new();
    for n in 0..100 {
        let e = event("c01.created", n)
            .with_aggregate(format!("agg-{n}"), "thing")
            .with_version("2.1")
            .with_metadata("tenant", "acme")
            .published_by("c01-service");
        bus.publish(&e).await.unwrap();
        sent.push(e);
    }
    let seen = Seen::default();
    let h = bus.subscribe(sub, seen.handler()).await.unwrap();
    seen.wait_for(100).await;
    for e in &sent {
        let got = &seen.get(&e.event_id).unwrap()[0].event;
        assert_eq!(got.event_type, e.event_type);
        assert_eq!(got.data, e.data);
        assert_eq!(got.aggregate_id, e.aggregate_id);
        assert_eq!(got.aggregate_type.as_deref(), Some("thing"));
        assert_eq!(got.event_version, "2.1");
        assert_eq!(got.occurred_at, e.occurred_at);
        assert_eq!(got.correlation_id, e.correlation_id);
        assert_eq!(got.metadata.published_by, "c01-service");
        assert_eq!(got.metadata.extra["tenant"], "acme");
        assert!(got.metadata.published_at.is_some());
        assert_eq!(got.traceparent, e.traceparent);
    }
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 2: 5,000 events from 50 concurrent publishers to 50 concurrent handlers: all arrive.
pub async fn c02_concurrent_publishers_and_handlers<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(
        fx,
        fx.sub("c02").bind("c02.*").concurrency(50).prefetch(200),
    );
    let seen = Seen::default();
    let h = bus.subscribe(sub, seen.handler()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..50 {
        let bus = bus.clone();
        tasks.spawn(async move {
            let events: Vec<_> = (0..100).map(|n| event("c02.tick", p * 100 + n)).collect();
            bus.publish_batch(&events, 20).await.unwrap();
        });
    }
    tasks.join_all().await;
    seen.wait_for(5_000).await;
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 3: 20 event types x 100 events: each subscription gets all of its own and none of the others'.
pub async fn c03_each_subscription_gets_its_own_types<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let mut subs = Vec::new();
    for t in 0..20 {
        let sub = build(fx, fx.sub(&format!("c03-{t}")).bind(format!("c03.t{t}")));
        let seen = Seen::default();
        subs.push((bus.subscribe(sub, seen.handler()).await.unwrap(), seen));
    }
    let events: Vec<_> = (0..20)
        .flat_map(|t| (0..100).map(move |n| event(&format!("c03.t{t}"), n)))
        .collect();
    bus.publish_batch(&events, 100).await.unwrap();
    for (t, (_, seen)) in subs.iter().enumerate() {
        seen.wait_for(100).await;
        let all = seen.all();
        assert_eq!(all.len(), 100, "subscription {t}");
        let kind = format!("c03.t{t}");
        assert!(all.values().all(|d| d[0].event.event_type == kind));
    }
    for (h, _) in subs {
        h.close().await;
    }
    fx.close(&bus).await;
}

/// Behaviour 4: A handler that fails twice and then succeeds: every event still handled; retry delays respected.
pub async fn c04_fails_twice_then_succeeds<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let delays = [Duration::from_millis(100), Duration::from_millis(250)];
    let sub = build(
        fx,
        fx.sub("c04")
            .bind("c04.x")
            .max_retries(3)
            .retry_delays(delays)
            .concurrency(20),
    );
    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let seen = Seen::default();
    let (a2, s2) = (attempts.clone(), seen.clone());
    let h = bus
        .subscribe(
            sub,
            Arc::new(move |d: Delivery| {
                a2.lock()
                    .unwrap()
                    .entry(d.event.event_id.clone())
                    .or_default()
                    .push((d.attempt, Instant::now()));
                let r = if d.attempt < 3 {
                    Err(HandlerError::retry("not yet"))
                } else {
                    s2.record(&d);
                    Ok(())
                };
                async move { r }
            }),
        )
        .await
        .unwrap();
    let events: Vec<_> = (0..20).map(|n| event("c04.x", n)).collect();
    bus.publish_batch(&events, 20).await.unwrap();
    seen.wait_for(20).await;
    for (id, tries) in attempts.lock().unwrap().iter() {
        let by_attempt = |a: u32| tries.iter().find(|t| t.0 == a).map(|t| t.1).unwrap();
        let (t1, t2, t3) = (by_attempt(1), by_attempt(2), by_attempt(3));
        assert!(
            t2 - t1 >= delays[0],
            "{id}: first retry after {:?}",
            t2 - t1
        );
        assert!(
            t3 - t2 >= delays[1],
            "{id}: second retry after {:?}",
            t3 - t2
        );
    }
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 5: A handler that always fails: after max retries the event is in the dead-letter
/// queue with reason and attempt count; nothing else is stuck.
pub async fn c05_always_failing_goes_to_dlq<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(
        fx,
        fx.sub("c05")
            .bind("c05.*")
            .max_retries(2)
            .retry_delay(Duration::from_millis(30)),
    );
    let queue = sub.queue().to_owned();
    let seen = Seen::default();
    let s2 = seen.clone();
    let h = bus
        .subscribe(
            sub,
            Arc::new(move |d: Delivery| {
                let r = if d.event.event_type == "c05.bad" {
                    Err(HandlerError::retry("always broken"))
                } else {
                    s2.record(&d);
                    Ok(())
                };
                async move { r }
            }),
        )
        .await
        .unwrap();
    let bad: Vec<_> = (0..10).map(|n| event("c05.bad", n)).collect();
    let good: Vec<_> = (0..50).map(|n| event("c05.good", n)).collect();
    bus.publish_batch(&bad, 10).await.unwrap();
    bus.publish_batch(&good, 50).await.unwrap();
    seen.wait_for(50).await;
    let letters = dead_letters(&bus, &queue, 10).await;
    let mut ids: Vec<_> = letters
        .iter()
        .map(|l| l.event().unwrap().event_id)
        .collect();
    ids.sort();
    let mut want: Vec<_> = bad.iter().map(|e| e.event_id.clone()).collect();
    want.sort();
    assert_eq!(ids, want);
    for l in &letters {
        assert_eq!(l.attempts, 3, "{l:?}");
        assert_eq!(l.routing_key, "c05.bad");
        assert!(l.reason.contains("always broken"), "{}", l.reason);
        assert!(l.reason.contains("retries exhausted"), "{}", l.reason);
    }
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 6: A permanent error goes to the dead-letter queue at once.
pub async fn c06_permanent_error_dead_letters_at_once<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(
        fx,
        fx.sub("c06")
            .bind("c06.x")
            .max_retries(5)
            .retry_delay(Duration::from_millis(10)),
    );
    let queue = sub.queue().to_owned();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let h = bus
        .subscribe(
            sub,
            Arc::new(move |_d: Delivery| {
                c2.fetch_add(1, Ordering::SeqCst);
                async { Err(HandlerError::permanent("invalid order")) }
            }),
        )
        .await
        .unwrap();
    let events: Vec<_> = (0..10).map(|n| event("c06.x", n)).collect();
    bus.publish_batch(&events, 10).await.unwrap();
    let letters = dead_letters(&bus, &queue, 10).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "each handled exactly once"
    );
    for l in &letters {
        assert_eq!(l.attempts, 1);
        assert!(l.reason.contains("permanent"), "{}", l.reason);
        assert!(l.reason.contains("invalid order"), "{}", l.reason);
    }
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 7: Subscribers closed and reopened repeatedly while 5,000 events flow: none lost.
pub async fn c07_reopening_subscribers_lose_nothing<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(
        fx,
        fx.sub("c07").bind("c07.x").concurrency(20).prefetch(100),
    );
    bus.declare(&sub).await.unwrap();
    let seen = Seen::default();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for chunk in 0..10 {
                let events: Vec<_> = (0..500).map(|n| event("c07.x", chunk * 500 + n)).collect();
                bus.publish_batch(&events, 100).await.unwrap();
            }
        })
    };
    let mut cycles = 0;
    while cycles < 10 || !publisher.is_finished() {
        let h = bus.subscribe(sub.clone(), seen.handler()).await.unwrap();
        let target = (seen.distinct() + 200).min(5_000);
        seen.try_wait_for(target, Duration::from_secs(2)).await;
        h.close().await;
        cycles += 1;
        if seen.distinct() == 5_000 {
            break;
        }
    }
    publisher.await.unwrap();
    let h = bus.subscribe(sub, seen.handler()).await.unwrap();
    seen.wait_for(5_000).await;
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 8: 10 subscribers opened and closed concurrently, then 50 events: all arrive.
pub async fn c08_concurrent_open_close_then_events<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(fx, fx.sub("c08").bind("c08.x"));
    let seen = Seen::default();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (bus, sub, seen) = (bus.clone(), sub.clone(), seen.clone());
        tasks.spawn(async move {
            let h = bus.subscribe(sub, seen.handler()).await.unwrap();
            h.close().await;
        });
    }
    tasks.join_all().await;
    let events: Vec<_> = (0..50).map(|n| event("c08.x", n)).collect();
    bus.publish_batch(&events, 50).await.unwrap();
    let h = bus.subscribe(sub, seen.handler()).await.unwrap();
    seen.wait_for(50).await;
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 9: Order kept per publisher when concurrency is 1.
pub async fn c09_order_kept_with_concurrency_one<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(fx, fx.sub("c09").bind("c09.x").concurrency(1).prefetch(50));
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Seen::default();
    let (o2, s2) = (order.clone(), seen.clone());
    let h = bus
        .subscribe(
            sub,
            Arc::new(move |d: Delivery| {
                o2.lock().unwrap().push(d.event.data["n"].as_u64().unwrap());
                s2.record(&d);
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();
    for n in 0..300 {
        bus.publish(&event("c09.x", n)).await.unwrap();
    }
    seen.wait_for(300).await;
    let order = order.lock().unwrap().clone();
    assert_eq!(order, (0..300).collect::<Vec<u64>>());
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 10: 10,000 events published concurrently then the publisher closed: none lost.
pub async fn c10_publisher_closed_after_burst_loses_nothing<F: Fixture>(fx: &F) {
    let consumer = fx.bus().await;
    let sub = build(
        fx,
        fx.sub("c10").bind("c10.x").concurrency(50).prefetch(300),
    );
    consumer.declare(&sub).await.unwrap();
    let publisher = fx.bus().await;
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..10 {
        let bus = publisher.clone();
        tasks.spawn(async move {
            let events: Vec<_> = (0..1_000).map(|n| event("c10.x", p * 1_000 + n)).collect();
            bus.publish_batch(&events, 100).await.unwrap();
        });
    }
    tasks.join_all().await;
    fx.close(&publisher).await;
    let seen = Seen::default();
    let h = consumer.subscribe(sub, seen.handler()).await.unwrap();
    seen.wait_for(10_000).await;
    h.close().await;
    fx.close(&consumer).await;
}

/// Behaviour 11: Correlation id and traceparent published from inside a correlation scope are
/// the ones the handler sees; what the handler publishes names the event as its cause.
pub async fn c11_correlation_reaches_the_handler<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let first = build(fx, fx.sub("c11-a").bind("c11.first"));
    let second = build(fx, fx.sub("c11-b").bind("c11.second"));
    let contexts = Arc::new(Mutex::new(Vec::new()));
    let seen_second = Seen::default();
    bus.declare(&second).await.unwrap();
    let (c2, b2) = (contexts.clone(), bus.clone());
    let h1 = bus
        .subscribe(
            first,
            Arc::new(move |_d: Delivery| {
                let (c2, b2) = (c2.clone(), b2.clone());
                async move {
                    c2.lock().unwrap().push(CorrelationContext::current());
                    b2.publish(&Event::new("c11.second", json!({})))
                        .await
                        .map_err(HandlerError::retry)
                }
            }),
        )
        .await
        .unwrap();
    let h2 = bus.subscribe(second, seen_second.handler()).await.unwrap();
    let ctx = CorrelationContext::from_values(
        Some("order-4711"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("vendor=abc"),
    );
    let published = ctx
        .clone()
        .scope(async {
            let e = Event::new("c11.first", json!({"k": 1}));
            bus.publish(&e).await.unwrap();
            e
        })
        .await;
    seen_second.wait_for(1).await;
    let got = contexts.lock().unwrap()[0]
        .clone()
        .expect("handler runs inside a context");
    assert_eq!(got.correlation_id().as_str(), "order-4711");
    assert_eq!(
        got.trace_parent().to_string(),
        ctx.trace_parent().to_string()
    );
    assert_eq!(
        got.trace_state().map(ToString::to_string).as_deref(),
        Some("vendor=abc")
    );
    let follow = seen_second.all().into_values().next().unwrap()[0]
        .event
        .clone();
    assert_eq!(follow.correlation_id, "order-4711");
    assert_eq!(
        follow.causation_id.as_deref(),
        Some(published.event_id.as_str())
    );
    h1.close().await;
    h2.close().await;
    fx.close(&bus).await;
}

/// Behaviour 12: Graceful shutdown during handling: in-flight handlers finish, unfinished
/// deliveries come back to the next subscriber.
pub async fn c12_graceful_shutdown_hands_over<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    // Part 1: in-flight handlers finish within the grace period and are acked.
    let sub = build(
        fx,
        fx.sub("c12")
            .bind("c12.x")
            .concurrency(5)
            .prefetch(20)
            .shutdown_grace(Duration::from_secs(10)),
    );
    bus.declare(&sub).await.unwrap();
    let events: Vec<_> = (0..20).map(|n| event("c12.x", n)).collect();
    bus.publish_batch(&events, 20).await.unwrap();
    let started = Seen::default();
    let finished = Seen::default();
    let (st, fin) = (started.clone(), finished.clone());
    let h = bus
        .subscribe(
            sub.clone(),
            Arc::new(move |d: Delivery| {
                st.record(&d);
                let fin = fin.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    fin.record(&d);
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    started.wait_for(5).await;
    h.close().await;
    let started_ids: Vec<String> = started.all().into_keys().collect();
    assert!(!started_ids.is_empty());
    for id in &started_ids {
        assert!(
            finished.get(id).is_some(),
            "in-flight handler for {id} did not finish"
        );
    }
    let rest = Seen::default();
    let h = bus.subscribe(sub.clone(), rest.handler()).await.unwrap();
    rest.wait_for(20 - started_ids.len()).await;
    let mut all: Vec<String> = rest.all().into_keys().chain(started_ids.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20);
    h.close().await;

    // Part 2: a handler that outlives the grace period is abandoned and its
    // event redelivered to the next subscriber.
    let stuck = build(
        fx,
        fx.sub("c12-stuck")
            .bind("c12.stuck")
            .shutdown_grace(Duration::from_millis(100)),
    );
    let entered = Seen::default();
    let e2 = entered.clone();
    let h = bus
        .subscribe(
            stuck.clone(),
            Arc::new(move |d: Delivery| {
                e2.record(&d);
                std::future::pending()
            }),
        )
        .await
        .unwrap();
    let e = event("c12.stuck", 1);
    bus.publish(&e).await.unwrap();
    entered.wait_for(1).await;
    h.close().await;
    let again = Seen::default();
    let h = bus.subscribe(stuck, again.handler()).await.unwrap();
    again.wait_for(1).await;
    let d = &again.get(&e.event_id).unwrap()[0];
    assert!(
        d.redelivered,
        "an abandoned delivery comes back marked redelivered"
    );
    h.close().await;
    fx.close(&bus).await;
}

/// Behaviour 13: an event no queue is bound to is an error, not a silent drop.
pub async fn c13_unroutable_is_an_error<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(fx, fx.sub("c13").bind("c13.bound"));
    bus.declare(&sub).await.unwrap();
    bus.publish(&event("c13.bound", 1)).await.unwrap();
    let err = bus.publish(&event("c13.nobody", 1)).await.unwrap_err();
    assert!(
        matches!(err, forten_events::Error::Unroutable { ref event_type } if event_type == "c13.nobody"),
        "{err:?}"
    );
    fx.close(&bus).await;
}

/// Behaviour 14: with dedup on, an event id handled once is not handled again.
pub async fn c14_dedup_skips_duplicates<F: Fixture>(fx: &F) {
    let bus = fx.bus().await;
    let sub = build(fx, fx.sub("c14").bind("c14.x").dedup(1_000).concurrency(1));
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Seen::default();
    let (c2, s2) = (calls.clone(), seen.clone());
    let h = bus
        .subscribe(
            sub,
            Arc::new(move |d: Delivery| {
                c2.fetch_add(1, Ordering::SeqCst);
                s2.record(&d);
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();
    let e = event("c14.x", 1);
    bus.publish(&e).await.unwrap();
    bus.publish(&e).await.unwrap();
    let marker = event("c14.x", 2);
    bus.publish(&marker).await.unwrap();
    seen.wait_for(2).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the duplicate was skipped");
    h.close().await;
    fx.close(&bus).await;
}

/// The process-wide Prometheus recorder of this test binary: tests run in
/// parallel on many threads, so they share it and tell their series apart by
/// their own queue and event-type labels.
fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap()
    })
}

/// The value of the series `name` with exactly these labels (in any order)
/// in Prometheus text; 0 when absent.
fn series(name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = prometheus().render();
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines()
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{')?;
            let mut got: Vec<String> = rest
                .strip_suffix('}')?
                .split(',')
                .map(str::to_owned)
                .collect();
            got.sort();
            (metric == name && got == want).then(|| value.parse::<f64>().ok())?
        })
        .map_or(0, |v| v as u64)
}

/// Issue 11: publishes by type and outcome, deliveries by queue and outcome,
/// dead letters by queue.
pub async fn c15_metrics_count_publishes_handling_and_dead_letters<F: Fixture>(fx: &F) {
    use forten_core::metrics::{EVENTS_DEAD_LETTERED, EVENTS_HANDLED, EVENTS_PUBLISHED};
    prometheus(); // before the bus and subscription resolve their handles
    let bus = fx.bus().await;
    let sub = build(fx, fx.sub("c15").bind("c15.*").max_retries(0));
    let queue = sub.queue().to_owned();
    let seen = Seen::default();
    let s2 = seen.clone();
    let h = bus
        .subscribe(
            sub,
            Arc::new(move |d: Delivery| {
                let fail = d.event.event_type == "c15.bad";
                s2.record(&d);
                async move {
                    if fail {
                        Err(HandlerError::permanent("bad"))
                    } else {
                        Ok(())
                    }
                }
            }),
        )
        .await
        .unwrap();
    for n in 0..3 {
        bus.publish(&event("c15.good", n)).await.unwrap();
    }
    bus.publish(&event("c15.bad", 0)).await.unwrap();
    bus.publish(&event("c15-nobody", 0)).await.unwrap_err();
    seen.wait_for(4).await;
    dead_letters(&bus, &queue, 1).await;

    let published = |t, o| series(EVENTS_PUBLISHED, &[("event_type", t), ("outcome", o)]);
    assert_eq!(published("c15.good", "ok"), 3);
    assert_eq!(published("c15.bad", "ok"), 1);
    assert_eq!(published("c15-nobody", "unroutable"), 1);
    let handled = |o| series(EVENTS_HANDLED, &[("queue", &queue), ("outcome", o)]);
    // the handler ran before the outcome was counted: wait for the count
    let deadline = Instant::now() + LIMIT;
    while handled("ok") < 3 || handled("dead_lettered") < 1 {
        assert!(Instant::now() < deadline, "handled counts stayed short");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handled("ok"), 3);
    assert_eq!(handled("dead_lettered"), 1);
    assert_eq!(handled("retry"), 0);
    assert_eq!(series(EVENTS_DEAD_LETTERED, &[("queue", &queue)]), 1);
    h.close().await;
    fx.close(&bus).await;
}

/// Every behaviour, by name, for the backends' test files.
#[macro_export]
macro_rules! conformance_names {
    ($m:ident) => {
        $m!(
            c01_published_before_subscribing_arrive,
            c02_concurrent_publishers_and_handlers,
            c03_each_subscription_gets_its_own_types,
            c04_fails_twice_then_succeeds,
            c05_always_failing_goes_to_dlq,
            c06_permanent_error_dead_letters_at_once,
            c07_reopening_subscribers_lose_nothing,
            c08_concurrent_open_close_then_events,
            c09_order_kept_with_concurrency_one,
            c10_publisher_closed_after_burst_loses_nothing,
            c11_correlation_reaches_the_handler,
            c12_graceful_shutdown_hands_over,
            c13_unroutable_is_an_error,
            c14_dedup_skips_duplicates,
            c15_metrics_count_publishes_handling_and_dead_letters
        );
    };
}

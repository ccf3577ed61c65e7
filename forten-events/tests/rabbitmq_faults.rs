//! Faults against RabbitMQ: a connection cut by a TCP proxy in the middle of
//! a publish-and-consume workload, and a broker that is not there at start.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forten_events::{
    Delivery, Error, Event, PublisherExt, RabbitMqBus, RabbitMqConfig, Subscriber, Subscription,
};
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;
use tcp_proxy::Proxy;

const BROKER: &str = "127.0.0.1:5672";

#[derive(Clone, Default)]
struct Seen {
    ids: Arc<Mutex<HashSet<String>>>,
    notify: Arc<Notify>,
}

impl Seen {
    fn count(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut notified = std::pin::pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() >= n;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: run scripts/test"]
async fn connection_cut_by_a_proxy_loses_nothing_and_consuming_resumes() {
    const TOTAL: usize = 10_000;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let proxy = Proxy::start(BROKER).await.unwrap();
    let prefix = format!("forten-test.{}", uuid::Uuid::new_v4().simple());
    let config = RabbitMqConfig::new(proxy.amqp_uri())
        .exchange(format!("{prefix}.events"))
        .app_id("faults")
        .reconnect(50, Duration::from_millis(50), Duration::from_millis(500));
    let bus = RabbitMqBus::connect(config.clone()).await.unwrap();
    let sub = Subscription::builder(format!("{prefix}.cut"))
        .bind("cut.x")
        .concurrency(50)
        .prefetch(300)
        .build()
        .unwrap();
    let seen = Seen::default();
    let s2 = seen.clone();
    let handle = bus
        .subscribe(
            sub.clone(),
            Arc::new(move |d: Delivery| {
                s2.ids.lock().unwrap().insert(d.event.event_id);
                s2.notify.notify_waiters();
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();
    let mut events = bus.connection_events();

    let events_to_send: Vec<_> = (0..TOTAL)
        .map(|n| Event::new("cut.x", serde_json::json!({ "n": n })))
        .collect();
    let publisher = {
        let bus = bus.clone();
        let events_to_send = events_to_send.clone();
        tokio::spawn(async move {
            for chunk in events_to_send.chunks(1_000) {
                bus.publish_batch(chunk, 100).await.unwrap();
            }
        })
    };
    // Cut once while both publishing and consuming are under way, then
    // again while consuming catches up.
    assert!(seen.wait_for(2_000, Duration::from_secs(60)).await);
    assert!(proxy.cut() >= 2, "both connections go through the proxy");
    assert!(
        seen.wait_for(6_000, Duration::from_secs(60)).await,
        "consuming resumed by itself"
    );
    proxy.cut();
    publisher.await.unwrap();
    assert!(
        seen.wait_for(TOTAL, Duration::from_secs(60)).await,
        "{} of {TOTAL} arrived",
        seen.count()
    );
    let ids = seen.ids.lock().unwrap().clone();
    assert!(events_to_send.iter().all(|e| ids.contains(&e.event_id)));
    let mut saw_disconnect = false;
    while let Ok(ev) = events.try_recv() {
        saw_disconnect |= matches!(ev, forten_events::ConnectionEvent::Disconnected { .. });
    }
    assert!(saw_disconnect, "the cut shows up as a connection event");
    assert!(bus.is_connected());
    handle.close().await;
    bus.delete_subscription(&sub).await.unwrap();
    bus.delete_exchanges().await.unwrap();
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: run scripts/test"]
async fn a_cut_connection_nothing_uses_is_reopened_by_itself() {
    // A bus that neither publishes nor consumes after the cut: neither link
    // is re-opened by a user, yet is_connected turns true again (a readiness
    // check built on it must not keep a healthy service out for good).
    let proxy = Proxy::start(BROKER).await.unwrap();
    let prefix = format!("forten-test.{}", uuid::Uuid::new_v4().simple());
    let config = RabbitMqConfig::new(proxy.amqp_uri())
        .exchange(format!("{prefix}.events"))
        .app_id("idle")
        .reconnect(50, Duration::from_millis(50), Duration::from_millis(500));
    let bus = RabbitMqBus::connect(config).await.unwrap();
    assert!(bus.is_connected());
    assert!(proxy.cut() >= 2, "both connections go through the proxy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut saw_down = false;
    while !(saw_down && bus.is_connected()) {
        saw_down |= !bus.is_connected();
        assert!(
            tokio::time::Instant::now() < deadline,
            "still not connected 30 s after the cut (saw it down: {saw_down})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the broker answers on the re-opened link: no queue is bound, so
    // the mandatory publish comes back unroutable (not a connection error).
    match bus
        .publish(&Event::new("idle.x", serde_json::json!({})))
        .await
    {
        Err(Error::Unroutable { .. }) => {}
        other => panic!("publish after the reconnect: {other:?}"),
    }
    bus.delete_exchanges().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn unreachable_broker_fails_after_the_configured_attempts() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = tokio::time::Instant::now();
    let err = RabbitMqBus::connect(
        RabbitMqConfig::new(format!("amqp://guest:secret@127.0.0.1:{port}/%2f")).reconnect(
            3,
            Duration::from_millis(10),
            Duration::from_millis(50),
        ),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    match &err {
        Error::Connect { attempts, uri, .. } => {
            assert_eq!(*attempts, 3);
            assert!(!uri.contains("secret"), "the password is not shown");
        }
        other => panic!("expected Error::Connect, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("could not connect"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

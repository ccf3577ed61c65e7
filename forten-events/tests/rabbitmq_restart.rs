//! A real broker restart (`rabbitmqctl stop_app` / `start_app`) in the
//! middle of a publish-and-consume workload: its own test binary with one
//! test, so it never overlaps the other RabbitMQ tests of this crate. A
//! guard starts the broker again even when the test fails.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forten_events::{
    Delivery, Event, PublisherExt, RabbitMqBus, RabbitMqConfig, Subscriber, Subscription,
};
use tokio::sync::Notify;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=2";

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Starts the broker app again when dropped, whatever happened.
struct BrokerGuard {
    stopped: bool,
}

impl BrokerGuard {
    fn stop(&mut self) {
        self.stopped = true;
        assert!(
            rabbitmqctl(&["-q", "stop_app"]),
            "rabbitmqctl stop_app failed"
        );
    }

    fn start(&mut self) {
        assert!(
            rabbitmqctl(&["-q", "start_app"]),
            "rabbitmqctl start_app failed"
        );
        rabbitmqctl(&["-q", "await_startup", "--timeout", "60"]);
        self.stopped = false;
    }
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        // Also after a panic between stop and start: never leave it stopped.
        if self.stopped || std::thread::panicking() {
            rabbitmqctl(&["-q", "start_app"]);
        }
        rabbitmqctl(&["-q", "await_startup", "--timeout", "60"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: run scripts/test"]
async fn broker_restart_loses_nothing() {
    const TOTAL: usize = 10_000;
    let prefix = format!("forten-test.{}", uuid::Uuid::new_v4().simple());
    let config = RabbitMqConfig::new(URI)
        .exchange(format!("{prefix}.events"))
        .app_id("restart")
        .reconnect(120, Duration::from_millis(100), Duration::from_millis(500))
        .recovery_timeout(Duration::from_secs(90));
    let bus = RabbitMqBus::connect(config).await.unwrap();
    let sub = Subscription::builder(format!("{prefix}.restart"))
        .bind("restart.x")
        .concurrency(50)
        .prefetch(300)
        .build()
        .unwrap();
    let ids: Arc<Mutex<HashSet<String>>> = Arc::default();
    let notify = Arc::new(Notify::new());
    let (i2, n2) = (ids.clone(), notify.clone());
    let handle = bus
        .subscribe(
            sub.clone(),
            Arc::new(move |d: Delivery| {
                i2.lock().unwrap().insert(d.event.event_id);
                n2.notify_waiters();
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();
    let mut connection_events = bus.connection_events();
    let count = || ids.lock().unwrap().len();
    let wait_for = |n: usize| {
        let (ids, notify) = (ids.clone(), notify.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            loop {
                let mut notified = std::pin::pin!(notify.notified());
                notified.as_mut().enable();
                if ids.lock().unwrap().len() >= n {
                    return true;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return ids.lock().unwrap().len() >= n;
                }
            }
        }
    };

    let events: Vec<_> = (0..TOTAL)
        .map(|n| Event::new("restart.x", serde_json::json!({ "n": n })))
        .collect();
    let publisher = {
        let (bus, events) = (bus.clone(), events.clone());
        tokio::spawn(async move {
            for chunk in events.chunks(500) {
                bus.publish_batch(chunk, 100).await.unwrap();
            }
        })
    };

    assert!(wait_for(2_000).await);
    let mut guard = BrokerGuard { stopped: false };
    tokio::task::spawn_blocking(move || {
        guard.stop();
        guard.start();
    })
    .await
    .unwrap();
    publisher.await.unwrap();
    assert!(wait_for(TOTAL).await, "{} of {TOTAL} arrived", count());
    let seen = ids.lock().unwrap().clone();
    assert!(events.iter().all(|e| seen.contains(&e.event_id)));
    let mut reconnected = false;
    while let Ok(ev) = connection_events.try_recv() {
        reconnected |= ev == forten_events::ConnectionEvent::Connected;
    }
    assert!(
        reconnected,
        "the bus saw the broker go away and reconnected"
    );
    assert!(bus.is_connected());

    handle.close().await;
    bus.delete_subscription(&sub).await.unwrap();
    bus.delete_exchanges().await.unwrap();
    bus.close().await;
}

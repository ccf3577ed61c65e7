//! RabbitMQ throughput (criterion group `events`): confirmed publishing
//! through `RabbitMqBus` beside raw lapin doing the same (confirms,
//! mandatory, persistent, the same body, 100 unconfirmed in flight), and
//! publish-to-handler end to end. Needs RabbitMQ at 127.0.0.1:5672
//! (guest/guest); skipped with a message when it is not there.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forten_events::{
    Delivery, Event, PublisherExt, RabbitMqBus, RabbitMqConfig, Subscriber, Subscription,
};
use futures::{StreamExt, TryStreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::Notify;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const BATCH: usize = 1_000;
const WINDOW: usize = 100;

fn payload() -> serde_json::Value {
    serde_json::json!({"orderId": "ord-123456", "customer": "c-42", "total": 129.5,
        "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}], "note": "x".repeat(64)})
}

fn events(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let exchange = format!("forten-bench.{}", std::process::id());
    let setup = rt.block_on(async {
        let config = RabbitMqConfig::new(URI).exchange(&exchange).app_id("bench");
        let bus = RabbitMqBus::connect(config).await.ok()?;
        let publish_sub = Subscription::builder(format!("{exchange}.publish"))
            .bind("bench.publish")
            .build()
            .unwrap();
        bus.declare(&publish_sub).await.unwrap();
        Some((bus, publish_sub))
    });
    let Some((bus, publish_sub)) = setup else {
        eprintln!("events benches skipped: RabbitMQ is not reachable at {URI}");
        return;
    };

    let mut g = c.benchmark_group("events");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);

    // Each publishing bench starts from an empty queue (a long queue of
    // persistent messages slows the broker down).
    let fresh_queue = || {
        rt.block_on(async {
            bus.delete_subscription(&publish_sub).await.unwrap();
            bus.declare(&publish_sub).await.unwrap();
        });
    };
    fresh_queue();
    g.bench_function("publish_confirmed", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bus = bus.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch: Vec<_> = (0..BATCH)
                        .map(|_| Event::new("bench.publish", payload()))
                        .collect();
                    let start = Instant::now();
                    bus.publish_batch(&batch, WINDOW).await.unwrap();
                    total += start.elapsed();
                }
                total
            }
        });
    });

    let (conn, channel) = rt.block_on(async {
        let conn = Connection::connect(URI, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        (conn, channel)
    });
    fresh_queue();
    g.bench_function("peer_raw_lapin", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (channel, exchange) = (channel.clone(), exchange.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch: Vec<_> = (0..BATCH)
                        .map(|_| {
                            Event::new("bench.publish", payload())
                                .encode("bench")
                                .unwrap()
                        })
                        .collect();
                    let start = Instant::now();
                    futures::stream::iter(batch)
                        .map(|e| {
                            let (channel, exchange) = (channel.clone(), exchange.clone());
                            async move {
                                // The same properties and headers the bus sends.
                                let mut headers = FieldTable::default();
                                for (k, v) in [
                                    ("traceparent", e.traceparent.clone().unwrap_or_default()),
                                    ("cloudEvents_specversion", "1.0".to_owned()),
                                    ("cloudEvents_id", e.event_id.clone()),
                                    ("cloudEvents_source", e.published_by.clone()),
                                    ("cloudEvents_type", e.event_type.clone()),
                                    ("cloudEvents_time", e.occurred_at.clone()),
                                ] {
                                    headers.insert(k.into(), AMQPValue::LongString(v.into()));
                                }
                                let props = BasicProperties::default()
                                    .with_message_id(e.event_id.as_str().into())
                                    .with_type(e.event_type.as_str().into())
                                    .with_correlation_id(e.correlation_id.as_str().into())
                                    .with_timestamp(1)
                                    .with_app_id(e.published_by.as_str().into())
                                    .with_content_type("application/json".into())
                                    .with_delivery_mode(2)
                                    .with_headers(headers);
                                let confirm = channel
                                    .basic_publish(
                                        exchange.as_str().into(),
                                        "bench.publish".into(),
                                        BasicPublishOptions {
                                            mandatory: true,
                                            ..BasicPublishOptions::default()
                                        },
                                        &e.body,
                                        props,
                                    )
                                    .await?
                                    .await?;
                                assert!(confirm.is_ack() && confirm.take_message().is_none());
                                Ok::<_, lapin::Error>(())
                            }
                        })
                        .buffer_unordered(WINDOW)
                        .try_for_each(|()| async { Ok(()) })
                        .await
                        .unwrap();
                    total += start.elapsed();
                }
                total
            }
        });
    });

    let e2e_sub = Subscription::builder(format!("{exchange}.e2e"))
        .bind("bench.e2e")
        .prefetch(300)
        .concurrency(50)
        .build()
        .unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    let handle = rt
        .block_on({
            let (handled, notify) = (handled.clone(), notify.clone());
            bus.subscribe(
                e2e_sub.clone(),
                Arc::new(move |_d: Delivery| {
                    handled.fetch_add(1, Ordering::SeqCst);
                    notify.notify_waiters();
                    async { Ok(()) }
                }),
            )
        })
        .unwrap();
    g.bench_function("publish_to_handler", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (bus, handled, notify) = (bus.clone(), handled.clone(), notify.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch: Vec<_> = (0..BATCH)
                        .map(|_| Event::new("bench.e2e", payload()))
                        .collect();
                    let target = handled.load(Ordering::SeqCst) + BATCH;
                    let start = Instant::now();
                    bus.publish_batch(&batch, WINDOW).await.unwrap();
                    loop {
                        let mut notified = std::pin::pin!(notify.notified());
                        notified.as_mut().enable();
                        if handled.load(Ordering::SeqCst) >= target {
                            break;
                        }
                        tokio::time::timeout(Duration::from_secs(30), notified)
                            .await
                            .unwrap();
                    }
                    total += start.elapsed();
                }
                total
            }
        });
    });
    g.finish();

    rt.block_on(async {
        handle.close().await;
        drop(conn);
        bus.delete_subscription(&publish_sub).await.unwrap();
        bus.delete_subscription(&e2e_sub).await.unwrap();
        bus.delete_exchanges().await.unwrap();
        bus.close().await;
    });
}

criterion_group!(benches, events);
criterion_main!(benches);

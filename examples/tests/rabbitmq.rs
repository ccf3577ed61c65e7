//! The system on RabbitMQ (isolated exchange and queue names per run).

mod common;

use std::time::Duration;

use common::{Http, eventually, user};
use forten_examples::system::{RunningSystem, Service, SystemConfig};
use serde_json::json;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test]
#[ignore = "needs RabbitMQ: run scripts/test"]
async fn notifications_travel_over_rabbitmq_and_survive_a_consumer_restart() {
    let mut system = RunningSystem::start(SystemConfig::ephemeral().amqp(BROKER))
        .await
        .expect("the system starts on RabbitMQ");
    let gw = Http::new(system.gateway_url());
    let (_, t) = user(&gw, "rab", "acme", "member").await;
    let count = |t: String, gw: Http| async move {
        let r = gw.get("/api/v1/notifications", Some(&t)).await;
        r.json["data"].as_array().map_or(0, Vec::len)
    };
    eventually(Duration::from_secs(10), "the welcome", || {
        let (t, gw) = (t.clone(), gw.clone());
        async move { (count(t, gw).await == 1).then_some(()) }
    })
    .await;

    // published while notification-service is down: kept in its durable queue
    system
        .stop_service(Service::Notifications)
        .await
        .expect("stops");
    let r = gw
        .post("/api/v1/events", Some(&t), json!({"title": "Queued"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    system
        .restart_service(Service::Notifications)
        .await
        .expect("restarts");
    eventually(
        Duration::from_secs(15),
        "the queued event's notification",
        || {
            let (t, gw) = (t.clone(), gw.clone());
            async move { (count(t, gw).await == 2).then_some(()) }
        },
    )
    .await;
    system.shutdown().await.expect("graceful shutdown");
}

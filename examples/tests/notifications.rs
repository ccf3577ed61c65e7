//! notification-service: notifications from the domain events on the
//! in-memory bus, their routes, and the dead-letter queue for events it
//! cannot read.

mod common;

use std::time::Duration;

use common::{Http, eventually, user};
use forten_events::{Event, PublisherExt, Subscriber};
use forten_examples::runtime::BusConfig;
use forten_examples::system::{RunningSystem, SystemConfig};
use http::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn notifications(gw: &Http, token: &str, query: &str) -> Vec<Value> {
    let r = gw
        .get(&format!("/api/v1/notifications{query}"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until `token`'s user has a notification of `event_type`; returns it.
async fn wait_for(gw: &Http, token: &str, event_type: &str) -> Value {
    eventually(WAIT, event_type, || async {
        notifications(gw, token, "")
            .await
            .into_iter()
            .find(|n| n["eventType"] == event_type)
    })
    .await
}

#[tokio::test]
async fn domain_events_become_notifications() {
    let system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    let (member, m) = user(&gw, "nia", "acme", "member").await;
    let (_, boss) = user(&gw, "ned", "acme", "manager").await;
    let (_, other_boss) = user(&gw, "oz", "globex", "manager").await;

    let welcome = wait_for(&gw, &m, "user.registered").await;
    assert_eq!(welcome["userId"], member["id"]);
    assert_eq!(welcome["read"], false);
    assert!(
        welcome["message"]
            .as_str()
            .is_some_and(|s| s.contains("nia"))
    );

    let auth = format!("Bearer {m}");
    let created = gw
        .send(
            Method::POST,
            "/api/v1/events",
            &[
                ("authorization", &auth),
                ("x-correlation-id", "corr-hackathon"),
            ],
            Some(br#"{"title":"Hackathon"}"#),
        )
        .await;
    let event_id = created.json["data"]["id"].as_str().expect("id").to_owned();
    let n = wait_for(&gw, &m, "event.created").await;
    assert_eq!(n["subjectId"], event_id.as_str());
    assert_eq!(
        n["correlationId"], "corr-hackathon",
        "the envelope carried the request's id"
    );

    gw.post(
        &format!("/api/v1/events/{event_id}/submit"),
        Some(&m),
        json!({}),
    )
    .await;
    let to_boss = wait_for(&gw, &boss, "event.submitted").await;
    assert!(
        to_boss["message"]
            .as_str()
            .is_some_and(|s| s.contains("nia") && s.contains("Hackathon"))
    );
    gw.post(
        &format!("/api/v1/events/{event_id}/approve"),
        Some(&boss),
        json!({}),
    )
    .await;
    wait_for(&gw, &m, "event.approved").await;
    // a manager of another organization hears nothing of it
    assert!(
        notifications(&gw, &other_boss, "")
            .await
            .iter()
            .all(|n| n["eventType"] == "user.registered")
    );

    // newest first, read marks, the unread filter
    let mine = notifications(&gw, &m, "").await;
    let types: Vec<&str> = mine
        .iter()
        .filter_map(|n| n["eventType"].as_str())
        .collect();
    assert_eq!(
        types,
        ["event.approved", "event.created", "user.registered"]
    );
    let first = mine[0]["id"].as_str().expect("id");
    let read = gw
        .call(
            Method::PUT,
            &format!("/api/v1/notifications/{first}/read"),
            Some(&m),
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.json);
    assert_eq!(read.json["data"]["read"], true);
    assert_eq!(notifications(&gw, &m, "?unread=true").await.len(), 2);
    assert_eq!(notifications(&gw, &m, "?unread=false").await.len(), 3);
    let r = gw.get("/api/v1/notifications?unread=maybe", Some(&m)).await;
    r.assert_error(400, "VALIDATION_ERROR");
    // someone else's notification, or none at all: 404
    gw.call(
        Method::PUT,
        &format!("/api/v1/notifications/{first}/read"),
        Some(&boss),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    gw.call(
        Method::PUT,
        "/api/v1/notifications/nope/read",
        Some(&m),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn unreadable_events_are_dead_lettered() {
    let config = SystemConfig::ephemeral();
    let BusConfig::Memory(broker) = config.bus.clone() else {
        unreachable!("ephemeral uses the in-memory bus")
    };
    let queue = forten_examples::notifications::subscription(&config.bus)
        .expect("subscription")
        .queue()
        .to_owned();
    let system = RunningSystem::start(config).await.expect("starts");
    let intruder = broker.connection("intruder");
    intruder
        .publish(&Event::new("event.submitted", json!({"no": "fields"})))
        .await
        .expect("routable: notification-service's queue is bound");
    let dead = eventually(WAIT, "a dead letter", || async {
        let dead = intruder.take_dead_letters(&queue, 10).await.expect("dlq");
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead[0].routing_key, "event.submitted");
    assert_eq!(dead[0].attempts, 1, "bad data is permanent: no retries");
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn events_published_while_the_consumer_is_down_are_delivered_after_restart() {
    use forten_examples::system::Service;
    let mut system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("starts");
    let gw = Http::new(system.gateway_url());
    system
        .stop_service(Service::Notifications)
        .await
        .expect("stops");
    let (_, t) = user(&gw, "late", "acme", "member").await;
    gw.get("/api/v1/notifications", Some(&t))
        .await
        .assert_error(503, "UPSTREAM_UNAVAILABLE");
    system
        .restart_service(Service::Notifications)
        .await
        .expect("restarts");
    let welcome = eventually(WAIT, "the welcome after restart", || async {
        let r = gw.get("/api/v1/notifications", Some(&t)).await;
        (r.status == 200 && r.json["data"].as_array().is_some_and(|a| !a.is_empty()))
            .then(|| r.json["data"][0].clone())
    })
    .await;
    assert_eq!(welcome["eventType"], "user.registered");
    system.shutdown().await.expect("graceful shutdown");
}

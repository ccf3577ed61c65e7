//! The same flow on RabbitMQ, including a broker connection cut in the
//! middle of it: no notification is lost. The cut is made by a TCP proxy on
//! loopback between the bus and the broker (forten-events' own fault-test
//! proxy); the real broker is never restarted from here.
#![allow(missing_docs, clippy::unwrap_used)]

use std::fmt::Write as _;

use forten_examples::system::{RunningSystem, Service, SystemConfig};
use forten_examples::walkthrough::{self, ApiRequest, WalkthroughOptions};
use forten_system_tests::{
    ApiClient, ApiResponse, Org, WAIT, assert_status, body, poll_until, send, start,
    wait_for_notification,
};

#[path = "../../forten-events/tests/support/tcp_proxy.rs"]
mod tcp_proxy;
use tcp_proxy::Proxy;

const BROKER: &str = "127.0.0.1:5672";

/// Sends the request `make` builds until it is answered with something other
/// than a 503, within [`WAIT`]; past that, fails showing the health the
/// gateway and events-service report.
async fn retrying_503<'a>(
    system: &RunningSystem,
    make: impl Fn() -> ApiRequest<'a>,
) -> ApiResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = send(make()).await;
        if r.status.as_u16() != 503 {
            return r;
        }
        let now = tokio::time::Instant::now();
        assert!(
            now < deadline,
            "still 503 after {WAIT:?}: {}\n{}",
            body(&r),
            readiness(system).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What each service's `/health/ready` says, for failure messages.
async fn readiness(system: &RunningSystem) -> String {
    let mut out = String::new();
    for service in [Service::Auth, Service::Events, Service::Notifications] {
        let url = system.service_url(service).unwrap_or_default();
        let ready = match ApiClient::new(&url, WAIT) {
            Ok(api) => api
                .get("/health/ready")
                .send()
                .await
                .map_or_else(|e| e.to_string(), |r| body(&r)),
            Err(e) => e.to_string(),
        };
        let _ = writeln!(out, "{service} /health/ready: {ready}");
    }
    out
}

/// The system on RabbitMQ through `proxy`, its exchange and queues named for
/// this system alone.
fn config(proxy: &Proxy) -> SystemConfig {
    // RUST_LOG=forten_events=debug shows the bus reconnecting.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    // ephemeral() isolates the bus: exchange and queues get a per-system prefix.
    SystemConfig::ephemeral().amqp(proxy.amqp_uri())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: run scripts/test"]
async fn the_walkthrough_passes_on_rabbitmq() {
    let proxy = Proxy::start(BROKER).await.unwrap();
    let (system, _api) = start(config(&proxy)).await;
    let options = WalkthroughOptions {
        wait: WAIT,
        print: true,
        outage: true,
    };
    walkthrough::run_with(&system.gateway_url(), &options)
        .await
        .unwrap_or_else(|e| panic!("walkthrough on RabbitMQ failed: {e}"));
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: run scripts/test"]
async fn a_connection_cut_mid_flow_loses_no_notification() {
    const EVENTS: usize = 12;
    let proxy = Proxy::start(BROKER).await.unwrap();
    let (system, api) = start(config(&proxy)).await;
    let org = Org::new();
    let alice = org.member(&api).await;
    let bob = org.manager(&api).await;
    assert!(
        wait_for_notification(&api, &alice, "user.registered", &alice.id, WAIT)
            .await
            .is_some(),
        "the bus carries events before the cut"
    );

    // While the bus reconnects, events-service reports itself not ready and
    // the gateway may answer 503 (no healthy instance): a client retries
    // those. Creates carry an Idempotency-Key, so a retry never makes a
    // second event; a transition retried after it went through is a 409.
    let mut ids = Vec::new();
    for n in 0..EVENTS {
        if n == EVENTS / 3 || n == 2 * EVENTS / 3 {
            let cut = proxy.cut();
            assert!(
                cut >= 1,
                "the bus's connections go through the proxy ({cut} cut)"
            );
        }
        let key = format!("create-{n}-{}", alice.id);
        let created = retrying_503(&system, || {
            api.post("/api/v1/events")
                .bearer(&alice.token)
                .header("idempotency-key", key.clone())
                .json(&serde_json::json!({"title": format!("event {n}")}))
        })
        .await;
        assert_status(&created, 201);
        let id = created.data()["id"].as_str().unwrap().to_owned();
        let submit = retrying_503(&system, || {
            api.post(&format!("/api/v1/events/{id}/submit"))
                .bearer(&alice.token)
        })
        .await;
        assert!(
            matches!(submit.status.as_u16(), 200 | 409),
            "{}",
            body(&submit)
        );
        ids.push(id);
    }
    proxy.cut();
    for id in &ids {
        let approve = retrying_503(&system, || {
            api.post(&format!("/api/v1/events/{id}/approve"))
                .bearer(&bob.token)
        })
        .await;
        assert!(
            matches!(approve.status.as_u16(), 200 | 409),
            "{}",
            body(&approve)
        );
    }
    // Every expected notification, waited for together (one bound for all).
    let expected: Vec<_> = ids
        .iter()
        .enumerate()
        .flat_map(|(n, id)| {
            [
                (n, id, &alice, "event.created"),
                (n, id, &bob, "event.submitted"),
                (n, id, &alice, "event.approved"),
            ]
        })
        .collect();
    let missing = || async {
        let mine = send(api.get("/api/v1/notifications").bearer(&alice.token)).await;
        let bobs = send(api.get("/api/v1/notifications").bearer(&bob.token)).await;
        let has = |list: &serde_json::Value, kind: &str, id: &str| {
            list.as_array().is_some_and(|all| {
                all.iter()
                    .any(|n| n["eventType"] == kind && n["subjectId"] == id)
            })
        };
        let (mine, bobs) = (mine.data(), bobs.data());
        expected
            .iter()
            .filter(|(_, id, user, kind)| {
                let list = if user.id == alice.id { &mine } else { &bobs };
                !has(list, kind, id)
            })
            .map(|(n, id, user, kind)| format!("{kind} of event {n} ({id}) for {}", user.email))
            .collect::<Vec<_>>()
    };
    let all_arrived = poll_until(WAIT, || async {
        Ok(missing().await.is_empty().then_some(()))
    })
    .await;
    if all_arrived.is_none() {
        let mine = send(api.get("/api/v1/notifications").bearer(&alice.token)).await;
        panic!(
            "lost across the cuts: {:#?}\nalice's notifications: {}\n{}",
            missing().await,
            body(&mine),
            readiness(&system).await
        );
    }
    system.shutdown().await.unwrap();
}

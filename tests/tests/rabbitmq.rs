//! The same flow on RabbitMQ, including a broker connection cut in the
//! middle of it: no notification is lost. The cut is made by a TCP proxy on
//! loopback between the bus and the broker (forten-events' own fault-test
//! proxy); the real broker is never restarted from here.
#![allow(missing_docs, clippy::unwrap_used)]

use forten_examples::system::SystemConfig;
use forten_examples::walkthrough::{self, WalkthroughOptions};
use forten_system_tests::{
    Org, WAIT, assert_status, create_event, send, start, wait_for_notification,
};

#[path = "../../forten-events/tests/support/tcp_proxy.rs"]
mod tcp_proxy;
use tcp_proxy::Proxy;

const BROKER: &str = "127.0.0.1:5672";

/// The system on RabbitMQ through `proxy`, its exchange and queues named for
/// this system alone.
fn config(proxy: &Proxy) -> SystemConfig {
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

    let mut ids = Vec::new();
    for n in 0..EVENTS {
        if n == EVENTS / 3 || n == 2 * EVENTS / 3 {
            let cut = proxy.cut();
            assert!(
                cut >= 1,
                "the bus's connections go through the proxy ({cut} cut)"
            );
        }
        let id = create_event(&api, &alice, &format!("event {n}")).await;
        let submit = send(
            api.post(&format!("/api/v1/events/{id}/submit"))
                .bearer(&alice.token),
        )
        .await;
        assert_status(&submit, 200);
        ids.push(id);
    }
    proxy.cut();
    for id in &ids {
        let approve = send(
            api.post(&format!("/api/v1/events/{id}/approve"))
                .bearer(&bob.token),
        )
        .await;
        assert_status(&approve, 200);
    }
    for id in &ids {
        for (user, kind) in [
            (&alice, "event.created"),
            (&bob, "event.submitted"),
            (&alice, "event.approved"),
        ] {
            assert!(
                wait_for_notification(&api, user, kind, id, WAIT)
                    .await
                    .is_some(),
                "{kind} for event {id} reached {}",
                user.email
            );
        }
    }
    system.shutdown().await.unwrap();
}

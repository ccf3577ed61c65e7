//! ConsulRegistry against wiremock stand-ins for Consul's documented agent API
//! (no Consul server runs here).
#![cfg(feature = "consul")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use forten_discovery::{ConsulRegistry, DiscoveryError, Registry};
use futures::StreamExt;
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn registry(server: &MockServer) -> ConsulRegistry {
    ConsulRegistry::builder(server.uri())
        .token("s3cret")
        .ttl(Duration::from_secs(3))
        .watch_wait(Duration::from_secs(5))
        .backoff(forten_core::backoff::Constant::new(Duration::from_millis(10), 1).unwrap())
        .build()
        .unwrap()
}

fn entry(id: &str, port: u16) -> serde_json::Value {
    json!({
        "Node": {"Node": "n1", "Address": "10.0.0.1"},
        "Service": {"ID": id, "Service": "svc", "Address": "127.0.0.1", "Port": port,
                    "Meta": {"forten-version": "1.0.0", "zone": "a"},
                    "Weights": {"Passing": 1, "Warning": 1}},
        "Checks": [{"CheckID": format!("service:{id}"), "Status": "passing"}]
    })
}

#[tokio::test]
async fn registers_with_a_ttl_check_and_passes_it() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/register"))
        .and(header("x-consul-token", "s3cret"))
        .and(body_partial_json(json!({
            "ID": "a", "Name": "svc", "Address": "127.0.0.1", "Port": 4001,
            "Meta": {"forten-version": "1.0.0", "zone": "a"},
            "Weights": {"Passing": 1},
            "Check": {"CheckID": "service:a", "TTL": "3s", "DeregisterCriticalServiceAfter": "60s"}
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/check/pass/service:a"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2..)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/deregister/a"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let registry = registry(&server);
    let registration = registry
        .register(common::instance("svc", "a", 4001))
        .await
        .unwrap();
    // One pass at registration, then one per TTL/3 (1 s).
    common::wait_until(Duration::from_secs(5), "a heartbeat pass", || async {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/v1/agent/check/pass/service:a")
            .count()
            >= 2
    })
    .await;
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn dropping_a_registration_deregisters_with_the_agent() {
    let server = MockServer::start().await;
    for p in [
        "/v1/agent/service/register",
        "/v1/agent/check/pass/service:a",
    ] {
        Mock::given(method("PUT"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
    }
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/deregister/a"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let registration = registry(&server)
        .register(common::instance("svc", "a", 4001))
        .await
        .unwrap();
    drop(registration);
    common::wait_until(Duration::from_secs(5), "the deregistration", || async {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path() == "/v1/agent/service/deregister/a")
    })
    .await;
}

#[tokio::test]
async fn registers_again_when_the_agent_forgot_the_check() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/register"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2..)
        .mount(&server)
        .await;
    // The first pass (at registration) succeeds, the heartbeat's finds no check (agent restart).
    Mock::given(method("PUT"))
        .and(path("/v1/agent/check/pass/service:a"))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/check/pass/service:a"))
        .respond_with(ResponseTemplate::new(404).set_body_string("Unknown check ID \"service:a\""))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/check/pass/service:a"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let registry = registry(&server);
    let registration = registry
        .register(common::instance("svc", "a", 4001))
        .await
        .unwrap();
    common::wait_until(Duration::from_secs(5), "a second registration", || async {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/v1/agent/service/register")
            .count()
            >= 2
    })
    .await;
    registration.abandon();
}

#[tokio::test]
async fn discovers_passing_instances() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/health/service/svc"))
        .and(query_param("passing", "true"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-consul-index", "7")
                .set_body_json(json!([entry("b", 4002), entry("a", 4001)])),
        )
        .mount(&server)
        .await;
    let found = registry(&server).discover("svc").await.unwrap();
    assert_eq!(
        found,
        [
            common::instance("svc", "a", 4001),
            common::instance("svc", "b", 4002)
        ]
    );
    assert!(matches!(
        registry(&server).discover("a/b").await,
        Err(DiscoveryError::InvalidInstance { field: "name", .. })
    ));
}

#[tokio::test]
async fn watch_uses_blocking_queries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/health/service/svc"))
        .and(query_param("index", "5"))
        .and(query_param("wait", "5s"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-consul-index", "6")
                .set_body_json(json!([entry("a", 4001), entry("b", 4002)])),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/health/service/svc"))
        .and(query_param("index", "6"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-consul-index", "6")
                .set_body_json(json!([entry("a", 4001), entry("b", 4002)]))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    // The first read (no index).
    Mock::given(method("GET"))
        .and(path("/v1/health/service/svc"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-consul-index", "5")
                .set_body_json(json!([entry("a", 4001)])),
        )
        .mount(&server)
        .await;
    let mut watch = registry(&server).watch("svc");
    let ids =
        |v: Vec<forten_discovery::ServiceInstance>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(watch.next().await.unwrap()), ["a"]);
    assert_eq!(ids(watch.next().await.unwrap()), ["a", "b"]);
}

#[tokio::test]
async fn invalid_instances_are_refused_before_any_call() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let mut bad = common::instance("svc", "a", 4001);
    bad.port = 0;
    assert!(matches!(
        registry(&server).register(bad).await,
        Err(DiscoveryError::InvalidInstance { field: "port", .. })
    ));
}

#[tokio::test]
async fn agent_errors_are_backend_errors() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/register"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&server)
        .await;
    let err = registry(&server)
        .register(common::instance("svc", "a", 4001))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::Backend {
                backend: "consul",
                ..
            }
        ),
        "{err:?}"
    );
}

//! Discovery mode: instances from forten-discovery's MemoryRegistry,
//! wiremock upstreams (real sockets, real time, bounded waits).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{constant_retry, eventually, received};
use forten_client::{ClientBuildError, ClientError, ServiceClient};
use forten_core::circuit::{CircuitBreaker, CircuitState};
use forten_discovery::{DiscoveryClient, LoadBalancer, MemoryRegistry, Registry, ServiceInstance};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn instance(id: &str, server: &MockServer) -> ServiceInstance {
    let address = server.address();
    ServiceInstance::builder("events", address.ip().to_string(), address.port())
        .id(id)
        .build()
        .unwrap()
}

#[tokio::test]
async fn discovered_instances_share_the_load_and_a_failing_one_is_routed_around() {
    let failing = MockServer::start().await;
    let healthy = MockServer::start().await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&failing)
        .await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&healthy)
        .await;
    let registry = MemoryRegistry::new();
    let _a = registry.register(instance("a", &failing)).await.unwrap();
    let _b = registry.register(instance("b", &healthy)).await.unwrap();
    let discovery = DiscoveryClient::builder(registry)
        .load_balancer(LoadBalancer::RoundRobin)
        .build();
    let client = ServiceClient::builder("events")
        .discovery(discovery)
        .retry(constant_retry(Duration::from_millis(1), 2))
        .circuit_breaker(
            CircuitBreaker::builder("events")
                .count_window(4)
                .minimum_calls(4)
                .wait_duration(Duration::from_secs(60))
                .config()
                .unwrap(),
        )
        .build()
        .unwrap();

    for _ in 0..20 {
        let response = client.get("/events").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(received(&failing).await, 4);
    assert!(received(&healthy).await >= 20);
    assert_eq!(client.circuit_state("a"), Some(CircuitState::Open));
    assert_eq!(client.circuit_state("b"), Some(CircuitState::Closed));
    assert_eq!(client.instances(), ["a", "b"]);
}

#[tokio::test]
async fn instances_joining_later_receive_traffic() {
    let first = MockServer::start().await;
    let second = MockServer::start().await;
    for server in [&first, &second] {
        Mock::given(path("/x"))
            .respond_with(ResponseTemplate::new(200))
            .mount(server)
            .await;
    }
    let registry = MemoryRegistry::new();
    let _a = registry.register(instance("a", &first)).await.unwrap();
    let client = ServiceClient::builder("events")
        .discovery(DiscoveryClient::new(registry.clone()))
        .build()
        .unwrap();
    client.get("/x").send().await.unwrap();
    assert_eq!(received(&first).await, 1);

    let _b = registry.register(instance("b", &second)).await.unwrap();
    eventually("the new instance gets a call", || {
        let client = client.clone();
        let second = &second;
        async move {
            client.get("/x").send().await.unwrap();
            received(second).await > 0
        }
    })
    .await;
}

#[tokio::test]
async fn a_service_without_instances_fails_with_upstream_unavailable() {
    let client = ServiceClient::builder("nobody")
        .discovery(DiscoveryClient::new(MemoryRegistry::new()))
        .retry(constant_retry(Duration::from_millis(1), 1))
        .build()
        .unwrap();
    let err = client.get("/x").send().await.unwrap_err();
    let found = forten_core::Error::find(&err).expect("a forten error in the chain");
    assert_eq!(found.code(), "UPSTREAM_UNAVAILABLE", "{err}");
    assert!(matches!(err, ClientError::Resilience(_)));
}

#[test]
fn the_builder_wants_exactly_one_upstream() {
    let both = ServiceClient::builder("events")
        .base_url("http://127.0.0.1:1")
        .discovery(DiscoveryClient::new(MemoryRegistry::new()))
        .build()
        .unwrap_err();
    assert_eq!(both, ClientBuildError::BothUpstreams("events".into()));
    let none = ServiceClient::builder("events").build().unwrap_err();
    assert_eq!(none, ClientBuildError::NoUpstream("events".into()));
}

/// A registry that never answers.
struct Hanging;

impl Registry for Hanging {
    async fn register(
        &self,
        _instance: ServiceInstance,
    ) -> Result<forten_discovery::Registration, forten_discovery::DiscoveryError> {
        std::future::pending().await
    }
    async fn deregister(
        &self,
        _name: &str,
        _id: &str,
    ) -> Result<(), forten_discovery::DiscoveryError> {
        std::future::pending().await
    }
    async fn discover(
        &self,
        _name: &str,
    ) -> Result<Vec<ServiceInstance>, forten_discovery::DiscoveryError> {
        std::future::pending().await
    }
    fn watch(&self, _name: &str) -> forten_discovery::InstanceStream {
        Box::pin(futures::stream::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_registry_that_never_answers_costs_at_most_the_total_timeout() {
    let client = ServiceClient::builder("events")
        .discovery(DiscoveryClient::new(Hanging))
        .timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = client.get("/x").send().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(err.status(), 504, "{err:?}");
}

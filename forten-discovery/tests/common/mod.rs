//! The behaviour suite every backend runs (memory, HTTP, etcd).
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use forten_discovery::{DiscoveryClient, DiscoveryError, Registry, ServiceInstance};
use futures::StreamExt;

/// Polls `cond` every 20 ms until it holds, at most `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let result = tokio::time::timeout(limit, async {
        loop {
            if cond().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "timed out after {limit:?} waiting for {what}"
    );
}

pub fn instance(service: &str, id: &str, port: u16) -> ServiceInstance {
    ServiceInstance::builder(service, "127.0.0.1", port)
        .id(id)
        .version("1.0.0")
        .metadata("zone", "a")
        .build()
        .unwrap()
}

fn ids(instances: &[ServiceInstance]) -> Vec<&str> {
    instances.iter().map(|i| i.id.as_str()).collect()
}

/// Register two instances, discover both (sorted by id, fields intact), deregister one by the
/// handle and one through the registry.
pub async fn register_discover_deregister(registry: &impl Registry, service: &str) {
    assert!(registry.discover(service).await.unwrap().is_empty());
    let a = registry
        .register(instance(service, "a", 4001))
        .await
        .unwrap();
    let b = registry
        .register(instance(service, "b", 4002))
        .await
        .unwrap();
    assert_eq!(a.id(), "a");
    let found = registry.discover(service).await.unwrap();
    assert_eq!(ids(&found), ["a", "b"]);
    assert_eq!(found[0], instance(service, "a", 4001));
    a.deregister().await.unwrap();
    assert_eq!(ids(&registry.discover(service).await.unwrap()), ["b"]);
    registry.deregister(service, "b").await.unwrap();
    b.abandon();
    assert!(registry.discover(service).await.unwrap().is_empty());
    // Deregistering an unknown instance is not an error.
    registry.deregister(service, "nobody").await.unwrap();
}

/// A registration that stops heartbeating disappears after its lease; one that keeps
/// heartbeating stays well past its TTL.
pub async fn lease_expiry(registry: &impl Registry, service: &str, ttl: Duration) {
    let alive = registry
        .register(instance(service, "alive", 4001))
        .await
        .unwrap();
    let crashed = registry
        .register(instance(service, "crashed", 4002))
        .await
        .unwrap();
    assert_eq!(registry.discover(service).await.unwrap().len(), 2);
    crashed.abandon();
    wait_until(
        ttl * 4 + Duration::from_secs(2),
        "the lapsed lease to drop",
        || async { ids(&registry.discover(service).await.unwrap()) == ["alive"] },
    )
    .await;
    // The heartbeating one survives several TTLs.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(ids(&registry.discover(service).await.unwrap()), ["alive"]);
    assert!(alive.is_active());
    alive.deregister().await.unwrap();
}

/// The watch gives the current set first, then each addition and removal.
pub async fn watch_add_remove(registry: &impl Registry, service: &str) {
    let mut watch = registry.watch(service);
    assert!(next(&mut watch).await.is_empty());
    let a = registry
        .register(instance(service, "a", 4001))
        .await
        .unwrap();
    assert_eq!(ids(&next(&mut watch).await), ["a"]);
    let b = registry
        .register(instance(service, "b", 4002))
        .await
        .unwrap();
    assert_eq!(ids(&next(&mut watch).await), ["a", "b"]);
    a.deregister().await.unwrap();
    assert_eq!(ids(&next(&mut watch).await), ["b"]);
    b.deregister().await.unwrap();
    assert!(next(&mut watch).await.is_empty());
}

async fn next(w: &mut forten_discovery::InstanceStream) -> Vec<ServiceInstance> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a snapshot within 10 s")
        .expect("the watch does not end")
}

/// Invalid instances are refused before anything is stored.
pub async fn invalid_instance_is_refused(registry: &impl Registry, service: &str) {
    let mut bad = instance(service, "bad", 4001);
    bad.port = 0;
    match registry.register(bad).await {
        Err(DiscoveryError::InvalidInstance { field: "port", .. }) => {}
        other => panic!("expected an invalid port, got {other:?}"),
    }
    assert!(registry.discover(service).await.unwrap().is_empty());
}

/// A DiscoveryClient over the registry sees instances come and go through its watch.
pub async fn client_follows_changes(registry: impl Registry + Clone, service: &str) {
    let client = DiscoveryClient::new(registry.clone());
    assert!(matches!(
        client.get_service_url(service).await,
        Err(DiscoveryError::NoInstances { .. })
    ));
    let a = registry
        .register(instance(service, "a", 4001))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "the client to see a", || async {
        client.get_service_url(service).await.ok().as_deref() == Some("http://127.0.0.1:4001")
    })
    .await;
    let b = registry
        .register(instance(service, "b", 4002))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "the client to see b", || async {
        client.instances(service).await.unwrap().len() == 2
    })
    .await;
    a.deregister().await.unwrap();
    wait_until(Duration::from_secs(10), "the client to lose a", || async {
        ids(&client.instances(service).await.unwrap()) == ["b"]
    })
    .await;
    assert_eq!(
        client.get_service_url(service).await.unwrap(),
        "http://127.0.0.1:4002"
    );
    b.deregister().await.unwrap();
}

/// Dropping a registration inside a runtime deregisters the instance (a spawned, best-effort
/// deregistration), well before its lease could lapse.
pub async fn dropping_a_registration_deregisters(
    registry: &impl Registry,
    service: &str,
    ttl: Duration,
) {
    let registration = registry
        .register(instance(service, "dropped", 4001))
        .await
        .unwrap();
    assert_eq!(ids(&registry.discover(service).await.unwrap()), ["dropped"]);
    drop(registration);
    // Well under the TTL: the lease lapsing cannot be what removes it.
    wait_until(ttl / 2, "the drop to deregister", || async {
        registry.discover(service).await.unwrap().is_empty()
    })
    .await;
}

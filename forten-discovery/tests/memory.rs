//! The behaviour suite on the embedded registry, under paused time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use forten_discovery::{MemoryRegistry, Registry};

const TTL: Duration = Duration::from_secs(3);

fn registry() -> MemoryRegistry {
    MemoryRegistry::builder().ttl(TTL).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn register_discover_deregister() {
    common::register_discover_deregister(&registry(), "svc").await;
}

#[tokio::test(start_paused = true)]
async fn lease_expiry() {
    common::lease_expiry(&registry(), "svc", TTL).await;
}

#[tokio::test(start_paused = true)]
async fn watch_add_remove() {
    common::watch_add_remove(&registry(), "svc").await;
}

#[tokio::test(start_paused = true)]
async fn invalid_instance_is_refused() {
    common::invalid_instance_is_refused(&registry(), "svc").await;
}

#[tokio::test(start_paused = true)]
async fn client_follows_changes() {
    common::client_follows_changes(registry(), "svc").await;
}

#[tokio::test(start_paused = true)]
async fn dropping_a_registration_deregisters() {
    common::dropping_a_registration_deregisters(&registry(), "svc", TTL).await;
}

#[test]
fn dropping_a_registration_outside_a_runtime_does_not_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = registry();
    let registration = runtime
        .block_on(registry.register(common::instance("svc", "a", 1)))
        .unwrap();
    drop(runtime);
    // No runtime to deregister on: the handle just goes (the lease lapses).
    drop(registration);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_is_taken_again_by_the_heartbeat() {
    // What a registry restart looks like to the memory backend: the entry is gone.
    let registry = registry();
    let r = registry
        .register(common::instance("svc", "a", 1))
        .await
        .unwrap();
    assert!(registry.remove("svc", "a"));
    common::wait_until(Duration::from_secs(5), "re-registration", || async {
        registry.discover("svc").await.unwrap().len() == 1
    })
    .await;
    r.deregister().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn services_lists_every_service_with_instances() {
    let registry = registry();
    let _a = registry
        .register(common::instance("one", "a", 1))
        .await
        .unwrap();
    let _b = registry
        .register(common::instance("two", "b", 2))
        .await
        .unwrap();
    let services = registry.services();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["one", "two"]);
}

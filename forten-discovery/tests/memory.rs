//! The behaviour suite on the embedded registry, under paused time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use forten_discovery::{MemoryRegistry, Registry};

fn registry() -> MemoryRegistry {
    MemoryRegistry::builder()
        .ttl(Duration::from_secs(3))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn register_discover_deregister() {
    common::register_discover_deregister(&registry(), "svc").await;
}

#[tokio::test(start_paused = true)]
async fn lease_expiry() {
    common::lease_expiry(&registry(), "svc", Duration::from_secs(3)).await;
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
    let registry = registry();
    let r = registry
        .register(common::instance("svc", "a", 1))
        .await
        .unwrap();
    drop(r);
    common::wait_until(Duration::from_secs(1), "the drop to deregister", || async {
        registry.discover("svc").await.unwrap().is_empty()
    })
    .await;
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

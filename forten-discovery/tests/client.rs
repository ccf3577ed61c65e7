//! DiscoveryClient: balancers with feedback, try_pick, and the tower::discover adapter.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use forten_discovery::{
    DiscoveryClient, LoadBalancer, MemoryRegistry, Registration, Registry, ServiceInstance,
};
use tower::{Service, ServiceExt};

async fn three(registry: &MemoryRegistry, weights: [u32; 3]) -> Vec<Registration> {
    let mut out = Vec::new();
    for (i, w) in weights.into_iter().enumerate() {
        let instance = ServiceInstance::builder("svc", "127.0.0.1", 5000 + i as u16)
            .id(format!("i{i}"))
            .weight(w)
            .build()
            .unwrap();
        out.push(registry.register(instance).await.unwrap());
    }
    out
}

async fn counts(client: &DiscoveryClient, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts
            .entry(client.get_service_instance("svc").await.unwrap().id)
            .or_default() += 1;
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn round_robin_and_weighted() {
    let registry = MemoryRegistry::new();
    let _r = three(&registry, [1, 2, 5]).await;
    let rr = DiscoveryClient::new(registry.clone());
    let c = counts(&rr, 300).await;
    assert!(c.values().all(|&n| n == 100), "{c:?}");
    let wrr = DiscoveryClient::builder(registry.clone())
        .load_balancer(LoadBalancer::WeightedRoundRobin)
        .build();
    let c = counts(&wrr, 800).await;
    assert_eq!((c["i0"], c["i1"], c["i2"]), (100, 200, 500));
    let random = DiscoveryClient::builder(registry)
        .load_balancer(LoadBalancer::Random)
        .build();
    let c = counts(&random, 3000).await;
    assert!(c.values().all(|&n| n > 700), "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn least_outstanding_avoids_busy_instances() {
    let registry = MemoryRegistry::new();
    let _r = three(&registry, [1, 1, 1]).await;
    let client = DiscoveryClient::builder(registry)
        .load_balancer(LoadBalancer::LeastOutstanding)
        .build();
    // Three picks held: one per instance.
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| client.pick("svc"))).await;
    let mut ids: Vec<String> = held
        .iter()
        .map(|p| p.as_ref().unwrap().instance().id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["i0", "i1", "i2"]);
    // Free i1: every next pick while the others stay busy goes to it.
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let i1 = held.iter().position(|p| p.instance().id == "i1").unwrap();
    held.remove(i1).done(true);
    let p = client.pick("svc").await.unwrap();
    assert_eq!(p.instance().id, "i1");
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_prefers_the_faster_instance() {
    let registry = MemoryRegistry::new();
    let _r = three(&registry, [1, 1, 1]).await;
    let client = DiscoveryClient::builder(registry)
        .load_balancer(LoadBalancer::PeakEwma)
        .build();
    // Teach it: i2 is slow (500 ms), the others fast (1 ms).
    for _ in 0..30 {
        let p = client.pick("svc").await.unwrap();
        let latency = if p.instance().id == "i2" { 500 } else { 1 };
        tokio::time::advance(Duration::from_millis(latency)).await;
        p.done(true);
    }
    let c = counts(&client, 300).await;
    assert!(c.get("i2").copied().unwrap_or(0) < 30, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_avoids_an_instance_that_fails_fast() {
    let registry = MemoryRegistry::new();
    let _r = three(&registry, [1, 1, 1]).await;
    let client = DiscoveryClient::builder(registry)
        .load_balancer(LoadBalancer::PeakEwma)
        .build();
    // i0 answers errors at once; the others succeed in 20 ms.
    for _ in 0..30 {
        let p = client.pick("svc").await.unwrap();
        if p.instance().id == "i0" {
            p.done(false);
        } else {
            tokio::time::advance(Duration::from_millis(20)).await;
            p.done(true);
        }
    }
    let c = counts(&client, 300).await;
    assert!(c.get("i0").copied().unwrap_or(0) < 30, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn try_pick_needs_a_loaded_view() {
    let registry = MemoryRegistry::new();
    let _r = three(&registry, [1, 1, 1]).await;
    let client = DiscoveryClient::new(registry);
    assert!(client.try_pick("svc").is_none()); // starts loading in the background
    common::wait_until(Duration::from_secs(1), "the view to load", || async {
        client.try_pick("svc").is_some()
    })
    .await;
    let pick = client.try_pick("svc").unwrap().unwrap();
    assert_eq!(pick.candidates(), 3);
}

/// A service handle picks from the view its client shares: loaded on its
/// first pick, kept current by the same watch, and what the client sees.
#[tokio::test(start_paused = true)]
async fn a_service_handle_shares_its_clients_view() {
    let registry = MemoryRegistry::new();
    let mut regs = three(&registry, [1, 1, 1]).await;
    let client = DiscoveryClient::new(registry.clone());
    let svc = client.service("svc");
    assert_eq!(svc.name(), "svc");
    assert!(svc.try_pick().is_none(), "not loaded before a first pick");
    common::wait_until(Duration::from_secs(1), "the view to load", || async {
        svc.try_pick().is_some()
    })
    .await;
    assert_eq!(svc.try_pick().unwrap().unwrap().candidates(), 3);
    // the client's own picks read the view the handle loaded
    assert_eq!(client.try_pick("svc").unwrap().unwrap().candidates(), 3);

    let gone = regs.pop().unwrap();
    let gone_id = gone.id().to_owned();
    gone.deregister().await.unwrap();
    common::wait_until(Duration::from_secs(1), "the watch to drop it", || async {
        svc.instances().await.unwrap().len() == 2
    })
    .await;
    for _ in 0..20 {
        let pick = svc.pick().await.unwrap();
        assert_ne!(&**pick.instance_id(), gone_id.as_str());
        assert_eq!(pick.candidates(), 2);
    }
    // a handle on a service nobody registered: an error, not a hang
    let none = client.service("nobody");
    assert!(matches!(
        none.pick().await,
        Err(forten_discovery::DiscoveryError::NoInstances { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_pick_carries_its_id_and_authority_parsed_once() {
    let registry = MemoryRegistry::new();
    for (id, address) in [
        ("v4", "127.0.0.1"),
        ("v6", "::1"),
        ("named", "events.internal"),
    ] {
        let instance = ServiceInstance::builder(id, address, 8080)
            .id(id)
            .build()
            .unwrap();
        registry.register(instance).await.unwrap();
    }
    let client = DiscoveryClient::new(registry);
    let v4 = client.pick("v4").await.unwrap();
    assert_eq!(&**v4.instance_id(), "v4");
    assert_eq!(v4.candidates(), 1);
    assert_eq!(v4.authority().unwrap().as_str(), "127.0.0.1:8080");
    // The same shared id on every pick: no copy per request.
    let again = client.pick("v4").await.unwrap();
    assert!(std::sync::Arc::ptr_eq(
        v4.instance_id(),
        again.instance_id()
    ));
    let v6 = client.pick("v6").await.unwrap();
    assert_eq!(v6.authority().unwrap().as_str(), "[::1]:8080");
    assert_eq!(v6.base_url(), "http://[::1]:8080");
    let named = client.pick("named").await.unwrap();
    assert_eq!(named.authority().unwrap().as_str(), "events.internal:8080");
}

#[tokio::test(start_paused = true)]
async fn feeds_tower_p2c_balance() {
    let registry = MemoryRegistry::new();
    let _r = three(&registry, [1, 1, 1]).await;
    let client = DiscoveryClient::new(registry.clone());
    let discover = client.discover_service("svc", |instance: &ServiceInstance| {
        let id = instance.id.clone();
        tower::load::Constant::new(
            tower::service_fn(move |_req: ()| {
                let id = id.clone();
                async move { Ok::<_, Infallible>(id) }
            }),
            1,
        )
    });
    let mut balance = tower::balance::p2c::Balance::new(discover);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let id = balance.ready().await.unwrap().call(()).await.unwrap();
        seen.insert(id);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

//! The behaviour suite on a real etcd (3.4+) through its JSON gateway.
//!
//! `scripts/test` starts an etcd on a free port and exports `FORTEN_ETCD_URL`; the restart test
//! runs its own etcd (the `etcd` binary on PATH) so it can kill and replace it.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use forten_discovery::{DiscoveryClient, EtcdRegistry, Registry};

const TTL: Duration = Duration::from_secs(2);

fn url() -> String {
    std::env::var("FORTEN_ETCD_URL")
        .expect("FORTEN_ETCD_URL is not set: run scripts/test, which starts etcd and sets it")
}

/// A registry under a key prefix of its own, so tests do not see each other.
fn registry_at(url: &str) -> EtcdRegistry {
    EtcdRegistry::builder(url)
        .prefix(format!("/forten-test/{}", uuid::Uuid::new_v4()))
        .ttl(TTL)
        .build()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn register_discover_deregister() {
    common::register_discover_deregister(&registry_at(&url()), "svc").await;
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn dropping_a_registration_deregisters() {
    common::dropping_a_registration_deregisters(&registry_at(&url()), "svc", TTL).await;
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn lease_expiry() {
    common::lease_expiry(&registry_at(&url()), "svc", TTL).await;
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn watch_add_remove() {
    common::watch_add_remove(&registry_at(&url()), "svc").await;
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn invalid_instance_is_refused() {
    common::invalid_instance_is_refused(&registry_at(&url()), "svc").await;
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn client_follows_changes() {
    common::client_follows_changes(registry_at(&url()), "svc").await;
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn values_are_camel_case_json_under_the_prefix() {
    let registry = EtcdRegistry::builder(url())
        .prefix("/forten-test/layout")
        .ttl(TTL)
        .build()
        .unwrap();
    let r = registry
        .register(common::instance("svc", "a", 4001))
        .await
        .unwrap();
    // Read it back raw through the gateway: base64 key and value.
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({ "key": b64.encode("/forten-test/layout/svc/a") });
    let answer = raw_post(&url(), "/v3/kv/range", &body).await;
    let value = answer["kvs"][0]["value"].as_str().unwrap();
    let instance: serde_json::Value = serde_json::from_slice(&b64.decode(value).unwrap()).unwrap();
    assert_eq!(instance["name"], "svc");
    assert_eq!(instance["port"], 4001);
    assert!(
        answer["kvs"][0]["lease"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    r.deregister().await.unwrap();
    let answer = raw_post(&url(), "/v3/kv/range", &body).await;
    assert!(answer.get("kvs").is_none(), "{answer}");
}

async fn raw_post(base: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::post(format!("{base}{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// An etcd of the test's own, killed on drop.
struct Etcd {
    child: Child,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    fn start(client: u16, peer: u16) -> Etcd {
        let dir = std::env::temp_dir().join(format!("forten-etcd-{}", uuid::Uuid::new_v4()));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--name", "forten-test"])
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("forten-test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the etcd binary is on PATH (apt-get install etcd-server)");
        Etcd { child, dir }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_for_etcd(url: &str) {
    let probe = EtcdRegistry::builder(url)
        .backoff(forten_core::backoff::Constant::new(Duration::from_millis(10), 0).unwrap())
        .build()
        .unwrap();
    common::wait_until(Duration::from_secs(20), "etcd to answer", || async {
        probe.discover("probe").await.is_ok()
    })
    .await;
}

#[tokio::test]
#[ignore = "needs etcd: run scripts/test"]
async fn registration_survives_an_etcd_restart_that_lost_its_data() {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let etcd = Etcd::start(client, peer);
    wait_for_etcd(&url).await;
    let registry = registry_at(&url);
    let discovery = DiscoveryClient::new(registry.clone());
    let registration = registry
        .register(common::instance("svc", "a", 4001))
        .await
        .unwrap();
    assert_eq!(discovery.instances("svc").await.unwrap().len(), 1);

    // Replace etcd by an empty one on the same ports: the lease and the key are gone.
    drop(etcd);
    let _etcd = Etcd::start(client, peer);
    wait_for_etcd(&url).await;
    // The keepalive learns the lease is gone, grants a new one and puts the key again.
    common::wait_until(
        Duration::from_secs(20),
        "re-registration in the new etcd",
        || async { registry.discover("svc").await.is_ok_and(|i| i.len() == 1) },
    )
    .await;
    assert!(registration.is_active());
    // The client's watch reconnected too and follows changes in the new etcd.
    registration.deregister().await.unwrap();
    common::wait_until(
        Duration::from_secs(20),
        "the client to see the removal",
        || async { discovery.instances("svc").await.unwrap().is_empty() },
    )
    .await;
}

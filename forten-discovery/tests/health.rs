//! Active health checks: an instance whose healthCheckUrl fails drops out of discovery.
#![cfg(feature = "health-check")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use forten_discovery::{HealthCheckConfig, MemoryRegistry, Registry, ServiceInstance};
use futures::StreamExt;

#[tokio::test]
async fn failing_instances_drop_out_and_come_back() {
    // A service whose /health/ready we can flip.
    let healthy = Arc::new(AtomicBool::new(true));
    let app = axum::Router::new().route(
        "/health/ready",
        axum::routing::get({
            let healthy = Arc::clone(&healthy);
            move || async move {
                if healthy.load(Ordering::SeqCst) {
                    http::StatusCode::OK
                } else {
                    http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let registry = MemoryRegistry::builder()
        .health_checks(HealthCheckConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            failure_threshold: 1,
        })
        .build()
        .unwrap();
    let checked = ServiceInstance::builder("svc", "127.0.0.1", port)
        .id("checked")
        .health_check_url(format!("http://127.0.0.1:{port}/health/ready"))
        .build()
        .unwrap();
    // An instance without a URL is never checked and always counts as healthy.
    let unchecked = ServiceInstance::builder("svc", "127.0.0.1", 1)
        .id("unchecked")
        .build()
        .unwrap();
    let _a = registry.register(checked).await.unwrap();
    let _b = registry.register(unchecked).await.unwrap();
    let mut watch = registry.watch("svc");
    assert_eq!(watch.next().await.unwrap().len(), 2);

    healthy.store(false, Ordering::SeqCst);
    let ids = |v: Vec<ServiceInstance>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
    let next = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(next), ["unchecked"]);
    assert_eq!(registry.discover("svc").await.unwrap().len(), 1);

    healthy.store(true, Ordering::SeqCst);
    let next = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(next), ["checked", "unchecked"]);
}

#[test]
fn health_check_config_is_validated() {
    let zero = HealthCheckConfig {
        interval: Duration::ZERO,
        ..HealthCheckConfig::default()
    };
    assert!(
        MemoryRegistry::builder()
            .health_checks(zero)
            .build()
            .is_err()
    );
}

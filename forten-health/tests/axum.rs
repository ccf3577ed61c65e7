//! The routes plug into axum as a fallback and as a nested service.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use forten_health::HealthMonitor;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn call(app: &Router, uri: &str) -> (StatusCode, String, serde_json::Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, content_type, json)
}

#[tokio::test]
async fn as_a_fallback_service() {
    let monitor = HealthMonitor::builder("svc", "1.0.0").build().unwrap();
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .fallback_service(monitor.routes());
    let (status, content_type, json) = call(&app, "/health/ready").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/health+json")
    );
    assert_eq!(json["serviceId"], "svc");
    assert_eq!(call(&app, "/health/live").await.0, StatusCode::OK);
    assert_eq!(call(&app, "/api/hello").await.0, StatusCode::OK);
    assert_eq!(call(&app, "/nowhere").await.0, StatusCode::NOT_FOUND);

    monitor.shutting_down();
    assert_eq!(
        call(&app, "/health/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn as_a_nested_service() {
    let monitor = HealthMonitor::builder("svc", "1.0.0").build().unwrap();
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .nest_service("/health", monitor.routes().nested());
    for uri in ["/health", "/health/live", "/health/ready"] {
        let (status, content_type, json) = call(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(content_type, "application/health+json");
        assert_eq!(json["status"], "pass");
    }
    assert_eq!(call(&app, "/health/other").await.0, StatusCode::NOT_FOUND);
}

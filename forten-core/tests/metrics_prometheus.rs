//! What a service's /metrics serves, the way the README shows it: an axum
//! router with `metrics-exporter-prometheus` rendering, the server RED layer
//! labelled by matched route, and a breaker and a retry layer exercised
//! until their counters move.
#![cfg(feature = "metrics")]
#![allow(missing_docs)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::routing::get;
use forten_core::backoff::Constant;
use forten_core::circuit::CircuitBreaker;
use forten_core::metrics::{self as names, ServerMetricsLayer};
use forten_core::retry::{RetryConfig, RetryLayer};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The Prometheus text format, line by line: `# HELP`/`# TYPE` comments or
/// `name{label="value",...} number`. Returns the samples as (series, value).
fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            if name_end < series.len() {
                assert!(series.ends_with('}'), "unclosed labels in {line:?}");
            }
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

fn value(samples: &[(String, f64)], series: &str) -> Option<u64> {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v as u64)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn metrics_endpoint_parses_and_the_counters_move_in_an_outage() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    // An upstream in an outage, behind a retry layer and a breaker.
    let breaker = CircuitBreaker::builder("billing")
        .count_window(5)
        .minimum_calls(5)
        .wait_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let retry = RetryConfig::builder()
        .name("billing")
        .backoff(Constant::new(Duration::from_millis(10), 1).unwrap())
        .no_budget()
        .build()
        .unwrap();
    let upstream = ServiceBuilder::new()
        .layer(RetryLayer::new(retry))
        .layer(breaker.layer())
        .service(service_fn(|_req: Request<()>| async {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(response)
        }));

    let app = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .route(
            "/invoices/{id}",
            get(move || {
                let upstream = upstream.clone();
                async move {
                    match upstream.oneshot(Request::new(())).await {
                        Ok(r) if r.status().is_success() => StatusCode::OK,
                        _ => StatusCode::BAD_GATEWAY,
                    }
                }
            }),
        )
        .layer(ServerMetricsLayer::new().route(|parts| {
            parts
                .extensions
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned().into())
        }));

    for id in 0..4 {
        let req = Request::get(format!("/invoices/{id}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }

    let req = Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&body).unwrap();
    let samples = parse(text);

    // 4 requests of up to 2 attempts: the 5th attempt (request 3's first)
    // opened the breaker, so its retry and request 4 were rejected without
    // reaching the upstream (a rejection is not retried).
    let series = |s: &str| value(&samples, s);
    assert_eq!(
        series(r#"forten_circuit_transitions_total{breaker="billing",from="closed",to="open"}"#),
        Some(1),
        "{text}"
    );
    assert_eq!(
        series(r#"forten_circuit_state{breaker="billing"}"#),
        Some(1)
    );
    assert_eq!(
        series(r#"forten_circuit_rejected_total{breaker="billing"}"#),
        Some(2)
    );
    assert_eq!(
        series(r#"forten_retry_attempts_total{service="billing",outcome="retried"}"#),
        Some(3)
    );
    let route = r#"{route="/invoices/{id}",status="502"}"#;
    assert_eq!(
        series(&format!("{}{route}", names::SERVER_REQUESTS)),
        Some(4)
    );
    assert_eq!(
        series(&format!("{}_count{route}", names::SERVER_REQUEST_DURATION)),
        Some(4)
    );
    assert!(
        !text.contains("/invoices/1"),
        "raw paths never become labels"
    );
}

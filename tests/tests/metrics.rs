//! `/metrics` on every EventBoard service: Prometheus text that a real
//! parser reads, RED series by route template, and the breaker counters
//! moving when events-service goes down. Its own test binary: the recorder
//! is process-wide.
#![allow(missing_docs, clippy::unwrap_used)]

use forten_examples::system::{Service, SystemConfig};
use forten_system_tests::{
    ApiClient, Org, WAIT, assert_status, create_event, poll_until, send, start,
};

/// Scrapes `base`'s `/metrics` and parses it with prometheus-parse.
async fn scrape(api: &ApiClient) -> prometheus_parse::Scrape {
    let r = send(api.get("/metrics")).await;
    assert_status(&r, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    let text = std::str::from_utf8(&r.body).expect("UTF-8");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

/// The sum of `name`'s samples whose labels all match `labels`.
fn sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_metrics_that_parse_with_red_by_route_template() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let alice = Org::new().member(&api).await;
    let id = create_event(&api, &alice, "Counted").await;
    assert_status(
        &send(
            api.get(&format!("/api/v1/events/{id}"))
                .bearer(&alice.token),
        )
        .await,
        200,
    );

    for service in [
        Service::Gateway,
        Service::Auth,
        Service::Events,
        Service::Notifications,
    ] {
        let url = system.service_url(service).expect("running");
        let scrape = scrape(&ApiClient::new(&url, WAIT).unwrap()).await;
        assert!(
            scrape.docs.contains_key("forten_server_requests_total"),
            "{service:?}: # HELP for the RED counter"
        );
    }
    let scrape = scrape(&api).await;
    let routes: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "forten_server_requests_total")
        .filter_map(|s| s.labels.get("route"))
        .collect();
    assert!(!routes.is_empty(), "server requests are counted");
    assert!(
        routes.iter().all(|r| !r.contains(&id)),
        "routes are templates, never raw paths: {routes:?}"
    );
    assert!(
        sum(
            &scrape,
            "forten_server_requests_total",
            &[("status", "201")]
        ) >= 1.0,
        "the create is counted with its status: {routes:?}"
    );
    // The gateway's client calls to events-service, with their status.
    assert!(
        sum(
            &scrape,
            "forten_client_request_duration_seconds_count",
            &[("service", "events-service"), ("status", "200")]
        ) >= 1.0,
        "client durations per service and status"
    );
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_counters_move_when_events_service_goes_down() {
    let (mut system, api) = start(SystemConfig::ephemeral()).await;
    let alice = Org::new().member(&api).await;
    let before = scrape(&api).await;
    let opened_before = sum(
        &before,
        "forten_circuit_transitions_total",
        &[("to", "open")],
    );
    let rejected_before = sum(&before, "forten_circuit_rejected_total", &[]);

    system.stop_service(Service::Events).await.unwrap();
    let open = poll_until(WAIT, || async {
        let r = api
            .get("/api/v1/events")
            .bearer(&alice.token)
            .send()
            .await?;
        Ok((r.error_code().as_deref() == Some("CIRCUIT_OPEN")).then_some(r))
    })
    .await;
    assert!(open.is_some(), "the circuit opens");

    let after = scrape(&api).await;
    assert!(
        sum(
            &after,
            "forten_circuit_transitions_total",
            &[("to", "open")]
        ) > opened_before,
        "an opening is counted"
    );
    assert!(
        sum(&after, "forten_circuit_rejected_total", &[]) > rejected_before,
        "the rejected call is counted"
    );
    let open_breakers: Vec<&str> = after
        .samples
        .iter()
        .filter(|s| s.metric == "forten_circuit_state" && (sum_value(s) - 1.0).abs() < 0.5)
        .filter_map(|s| s.labels.get("breaker"))
        .collect();
    assert!(
        open_breakers.iter().any(|b| b.contains("events-service")),
        "events-service's breaker is open in the state gauge: {open_breakers:?}"
    );

    system.restart_service(Service::Events).await.unwrap();
    // The half-open probes succeed (as many as the breaker admits), then it closes.
    let closed = poll_until(WAIT, || async {
        let r = api
            .get("/api/v1/events")
            .bearer(&alice.token)
            .send()
            .await?;
        let scrape = scrape(&api).await;
        let closed = sum(
            &scrape,
            "forten_circuit_transitions_total",
            &[("to", "closed")],
        );
        Ok((r.status.is_success() && closed >= 1.0).then_some(scrape))
    })
    .await
    .expect("events-service is back and its breaker closes");
    assert!(
        sum(
            &closed,
            "forten_circuit_state",
            &[("breaker", "events-service")]
        ) == 0.0,
        "the state gauge says closed again"
    );
    system.shutdown().await.unwrap();
}

fn sum_value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

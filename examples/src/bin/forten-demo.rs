//! `forten-demo`: forten's layers at work across real HTTP hops on loopback.
//!
//! Starts an `api-gateway` and an `events-service` (axum, on ephemeral
//! loopback ports), then drives a short scripted walkthrough against them and
//! prints what each hop saw: one correlation id and trace id across both
//! services, a fresh span (parent) id per hop, a deadline that shrinks on its
//! way down, and a JSON:API 504 document when the budget runs out. The full
//! EventBoard system (auth, events, notifications, the bus and discovery)
//! grows on the same skeleton.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use forten_core::correlation::{CorrelationContext, CorrelationLayer, PropagateCorrelationLayer};
use forten_core::deadline::{Deadline, DeadlineLayer, TimeoutLayer};
use forten_core::error::ErrorResponseLayer;
use forten_core::{BoxError, Error};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::{Layer, ServiceBuilder, ServiceExt};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What a handler saw of its request's context.
fn context_json(service: &str) -> Value {
    let ctx = CorrelationContext::current();
    json!({
        "service": service,
        "correlationId": ctx.as_ref().map(|c| c.correlation_id().to_string()),
        "traceId": ctx.as_ref().map(|c| c.trace_parent().trace_id().to_string()),
        "spanId": ctx.as_ref().map(|c| c.trace_parent().parent_id().to_string()),
        "budgetMs": Deadline::current().map(|d| d.remaining().as_millis() as u64),
    })
}

/// Wraps a router in the server-side stack every forten service uses. One
/// `ServiceBuilder` layer, because axum wants every layer it is given to be
/// infallible: `ErrorResponseLayer` turns the deadline's errors into documents.
fn serve_with_forten(router: Router, max: Duration) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(CorrelationLayer::new())
            .layer(ErrorResponseLayer::new())
            .layer(DeadlineLayer::new(max)),
    )
}

async fn events_list(Query(q): Query<std::collections::HashMap<String, u64>>) -> impl IntoResponse {
    // Simulated work, so the walkthrough can show a deadline running out.
    let work = Duration::from_millis(q.get("work_ms").copied().unwrap_or(20));
    tokio::time::sleep(work).await;
    axum::Json(json!({ "seenBy": context_json("events-service"), "events": ["launch", "retro"] }))
}

#[derive(Clone)]
struct Gateway {
    client: HttpClient,
    events: SocketAddr,
}

async fn gateway_events(
    State(gw): State<Gateway>,
    Query(q): Query<std::collections::HashMap<String, u64>>,
) -> Result<Response, GatewayError> {
    // What this hop saw on arrival, before spending any of its budget.
    let seen = context_json("api-gateway");
    let work = q.get("work_ms").copied().unwrap_or(20);
    let uri = format!("http://{}/events?work_ms={work}", gw.events);
    let request = http::Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| GatewayError(e.into()))?;
    // The client side: the same context on the next hop, and at most 2 s or
    // what is left of this request's deadline, whichever is less.
    let client = TimeoutLayer::new(Duration::from_secs(2))
        .layer(PropagateCorrelationLayer::new().layer(gw.client.clone()));
    let response = client.oneshot(request).await.map_err(GatewayError)?;
    let status = response.status();
    let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| GatewayError(e.into()))?
        .to_bytes();
    if !status.is_success() {
        // An upstream error document passes through with its status: whichever
        // hop's deadline fires first, the caller sees the same 504 TIMEOUT.
        let mut passed = (status, body).into_response();
        if let Some(v) = content_type {
            passed.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        return Ok(passed);
    }
    let upstream: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = json!({ "seenBy": seen, "upstreamStatus": status.as_u16(), "upstream": upstream });
    Ok(axum::Json(answer).into_response())
}

/// An upstream failure, rendered as the JSON:API document of DESIGN 4.3.
struct GatewayError(BoxError);

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let request_id = CorrelationContext::current().map(|c| c.correlation_id().to_string());
        Error::render(self.0.as_ref(), request_id.as_deref()).into_response()
    }
}

async fn spawn(router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok(addr)
}

async fn call(
    client: &HttpClient,
    uri: String,
    headers: &[(&str, &str)],
) -> Result<(u16, Value), BoxError> {
    let mut request = http::Request::get(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

fn show(title: &str, result: &(u16, Value)) {
    println!("\n== {title}\nHTTP {}", result.0);
    println!(
        "{}",
        serde_json::to_string_pretty(&result.1).unwrap_or_default()
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let events = spawn(serve_with_forten(
        Router::new().route("/events", get(events_list)),
        Duration::from_secs(5),
    ))
    .await?;
    let gateway = spawn(serve_with_forten(
        Router::new()
            .route("/api/v1/events", get(gateway_events))
            .with_state(Gateway {
                client: client.clone(),
                events,
            }),
        Duration::from_secs(10),
    ))
    .await?;
    println!("api-gateway on http://{gateway}, events-service on http://{events}");

    let ok = call(
        &client,
        format!("http://{gateway}/api/v1/events?work_ms=20"),
        &[
            ("x-correlation-id", "demo-1"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("x-request-timeout-ms", "1500"),
        ],
    )
    .await?;
    show(
        "1. one correlation id and trace id across two hops; the budget shrinks",
        &ok,
    );

    let slow = call(
        &client,
        format!("http://{gateway}/api/v1/events?work_ms=500"),
        &[
            ("x-correlation-id", "demo-2"),
            ("x-request-timeout-ms", "200"),
        ],
    )
    .await?;
    show(
        "2. a 200 ms budget for 500 ms of work: a JSON:API 504, never a hang",
        &slow,
    );

    let same_trace = ok.1["seenBy"]["traceId"] == ok.1["upstream"]["seenBy"]["traceId"];
    let fresh_span = ok.1["seenBy"]["spanId"] != ok.1["upstream"]["seenBy"]["spanId"];
    println!("\nsame trace on both hops: {same_trace}; fresh span id per hop: {fresh_span}");
    if !(same_trace && fresh_span && ok.0 == 200 && slow.0 == 504) {
        return Err("the walkthrough did not go as expected".into());
    }
    Ok(())
}

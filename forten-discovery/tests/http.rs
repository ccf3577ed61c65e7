//! The behaviour suite on RegistryServer (mounted in axum on loopback) + HttpRegistry, and the
//! server's HTTP contract (DESIGN 4.9).
#![cfg(all(feature = "server", feature = "http-client"))]
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use forten_discovery::{HttpRegistry, MemoryRegistry, Registry, RegistryServer};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

const TTL: Duration = Duration::from_secs(2);

struct Running {
    addr: SocketAddr,
    registry: MemoryRegistry,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

/// A gateway-like axum app with the registry nested under /registry.
fn serve(listener: TcpListener) -> Running {
    let registry = MemoryRegistry::builder().ttl(TTL).build().unwrap();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi" }))
        .nest_service("/registry", RegistryServer::new(registry.clone()));
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        registry,
        stop: Some(stop),
        task,
    }
}

async fn start() -> (Running, HttpRegistry) {
    let running = serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let client = HttpRegistry::builder(format!("http://{}", running.addr))
        .watch_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    (running, client)
}

#[tokio::test]
async fn register_discover_deregister() {
    let (_server, registry) = start().await;
    common::register_discover_deregister(&registry, "svc").await;
}

#[tokio::test]
async fn lease_expiry() {
    let (_server, registry) = start().await;
    common::lease_expiry(&registry, "svc", TTL).await;
}

#[tokio::test]
async fn watch_add_remove() {
    let (_server, registry) = start().await;
    common::watch_add_remove(&registry, "svc").await;
}

#[tokio::test]
async fn invalid_instance_is_refused() {
    let (_server, registry) = start().await;
    common::invalid_instance_is_refused(&registry, "svc").await;
}

#[tokio::test]
async fn client_follows_changes() {
    let (_server, registry) = start().await;
    common::client_follows_changes(registry, "svc").await;
}

#[tokio::test]
async fn registration_survives_a_registry_restart() {
    let (server, registry) = start().await;
    let addr = server.addr;
    let registration = registry
        .register(common::instance("svc", "a", 4001))
        .await
        .unwrap();
    let mut watch = registry.watch("svc");
    assert_eq!(futures::StreamExt::next(&mut watch).await.unwrap().len(), 1);
    server.stop().await;

    // A new registry on the same port: it knows nothing until the heartbeat re-registers.
    let restarted = serve(TcpListener::bind(addr).await.unwrap());
    common::wait_until(
        Duration::from_secs(10),
        "re-registration after the restart",
        || async {
            restarted
                .registry
                .services()
                .get("svc")
                .is_some_and(|i| i.len() == 1)
        },
    )
    .await;
    assert_eq!(registry.discover("svc").await.unwrap()[0].id, "a");
    assert!(registration.is_active());
    // The watch followed the restart (its index went backwards) and still reports changes.
    registration.deregister().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let snapshot = futures::StreamExt::next(&mut watch).await.unwrap();
            if snapshot.is_empty() {
                return;
            }
        }
    })
    .await;
    assert!(
        next.is_ok(),
        "the watch did not see the removal after the restart"
    );
}

#[tokio::test]
async fn calls_fail_with_a_backend_error_when_the_server_is_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let registry = HttpRegistry::builder(format!("http://{addr}"))
        .backoff(forten_core::backoff::Constant::new(Duration::from_millis(10), 2).unwrap())
        .build()
        .unwrap();
    let err = registry.discover("svc").await.unwrap_err();
    assert!(
        matches!(
            err,
            forten_discovery::DiscoveryError::Backend {
                backend: "http",
                ..
            }
        ),
        "{err:?}"
    );
}

// ---- the HTTP contract, straight through the tower Service ----

async fn call(
    server: &RegistryServer,
    method: &str,
    uri: &str,
    body: &str,
) -> (u16, http::HeaderMap, serde_json::Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-correlation-id", "req-1")
        .body(body.to_owned())
        .unwrap();
    let response = server.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, json)
}

fn server() -> RegistryServer {
    RegistryServer::builder(
        MemoryRegistry::builder()
            .ttl(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .body_limit(1024)
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn bad_payloads_get_400_json_api() {
    let server = server();
    for (body, pointer) in [
        ("not json", None),
        (r#"{"name":"svc","address":"127.0.0.1"}"#, Some("/port")),
        (
            r#"{"name":"svc","address":"127.0.0.1","port":0}"#,
            Some("/port"),
        ),
        (r#"{"name":"svc","address":"127.0.0.1","port":70000}"#, None),
        (
            r#"{"name":"","address":"127.0.0.1","port":1}"#,
            Some("/name"),
        ),
        (
            r#"{"name":"a/b","address":"127.0.0.1","port":1}"#,
            Some("/name"),
        ),
        (
            r#"{"name":"svc","address":"127.0.0.1","port":1,"healthCheckUrl":"nope"}"#,
            Some("/healthCheckUrl"),
        ),
        (
            r#"{"name":"svc","address":"127.0.0.1","port":1,"weight":0}"#,
            Some("/weight"),
        ),
    ] {
        let (status, headers, json) = call(&server, "POST", "/registry/services", body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(headers["content-type"], "application/vnd.api+json");
        let error = &json["errors"][0];
        assert_eq!(error["code"], "VALIDATION_ERROR", "{body}");
        assert_eq!(error["meta"]["requestId"], "req-1");
        if let Some(pointer) = pointer {
            assert_eq!(error["source"]["pointer"], pointer, "{body}");
        }
    }
    assert!(server.registry().services().is_empty());
    // Too large: 413.
    let big = format!(
        r#"{{"name":"svc","address":"127.0.0.1","port":1,"version":"{}"}}"#,
        "x".repeat(2000)
    );
    let (status, _, json) = call(&server, "POST", "/registry/services", &big).await;
    assert_eq!(status, 413);
    assert_eq!(json["errors"][0]["code"], "PAYLOAD_TOO_LARGE");
    // Bad long-poll parameters.
    let (status, _, _) = call(&server, "GET", "/registry/services/svc?index=x", "").await;
    assert_eq!(status, 400);
    let (status, _, _) = call(
        &server,
        "GET",
        "/registry/services/svc?index=1&wait=forever",
        "",
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(start_paused = true)]
async fn the_api_of_design_4_9() {
    let server = server();
    let body = r#"{"name":"svc","address":"127.0.0.1","port":3002,"version":"1.0","metadata":{"zone":"a"}}"#;
    let (status, _, lease) = call(&server, "POST", "/registry/services", body).await;
    assert_eq!(status, 201);
    assert_eq!(lease["ttlSeconds"], 5);
    let id = lease["instanceId"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());

    // Both with and without the /registry prefix (axum's nest_service strips it).
    let (status, headers, listing) = call(&server, "GET", "/services/svc", "").await;
    assert_eq!(status, 200);
    assert_eq!(listing["instances"][0]["metadata"]["zone"], "a");
    assert_eq!(listing["instances"][0]["weight"], 1);
    let index = listing["index"].as_u64().unwrap();
    assert_eq!(headers["x-registry-index"], index.to_string().as_str());

    let (status, _, all) = call(&server, "GET", "/registry/services", "").await;
    assert_eq!(status, 200);
    assert_eq!(all["services"]["svc"][0]["id"], id.as_str());

    let heartbeat = format!("/registry/services/svc/instances/{id}/heartbeat");
    assert_eq!(call(&server, "PUT", &heartbeat, "").await.0, 200);
    assert_eq!(
        call(
            &server,
            "PUT",
            "/registry/services/svc/instances/nobody/heartbeat",
            ""
        )
        .await
        .0,
        404
    );

    // Long poll: blocks until the set changes.
    let poll = {
        let server = server.clone();
        let uri = format!("/registry/services/svc?index={index}&wait=30s");
        tokio::spawn(async move { call(&server, "GET", &uri, "").await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!poll.is_finished());
    let (status, _, _) = call(
        &server,
        "DELETE",
        &format!("/registry/services/svc/instances/{id}"),
        "",
    )
    .await;
    assert_eq!(status, 204);
    let (_, _, listing) = poll.await.unwrap();
    assert_eq!(listing["instances"], serde_json::json!([]));
    assert!(listing["index"].as_u64().unwrap() > index);

    // Without a change, the poll ends after `wait` with the same index.
    let index = listing["index"].as_u64().unwrap();
    let started = tokio::time::Instant::now();
    let (_, _, listing) = call(
        &server,
        "GET",
        &format!("/registry/services/svc?index={index}&wait=3s"),
        "",
    )
    .await;
    assert_eq!(listing["index"].as_u64().unwrap(), index);
    assert!(started.elapsed() >= Duration::from_secs(3));
    // An index ahead of the registry (it restarted) answers at once.
    let started = tokio::time::Instant::now();
    call(
        &server,
        "GET",
        "/registry/services/svc?index=999999&wait=30s",
        "",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));

    assert_eq!(call(&server, "GET", "/elsewhere", "").await.0, 404);
    assert_eq!(
        call(&server, "PATCH", "/registry/services", "").await.0,
        404
    );
}

#[tokio::test(start_paused = true)]
async fn leases_lapse_without_heartbeats() {
    let server = server();
    let body = r#"{"id":"a","name":"svc","address":"127.0.0.1","port":3002}"#;
    assert_eq!(
        call(&server, "POST", "/registry/services", body).await.0,
        201
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        call(
            &server,
            "PUT",
            "/registry/services/svc/instances/a/heartbeat",
            ""
        )
        .await
        .0,
        200
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(server.registry().services()["svc"].len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(server.registry().services().is_empty());
    assert_eq!(
        call(
            &server,
            "PUT",
            "/registry/services/svc/instances/a/heartbeat",
            ""
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn configured_headers_go_with_every_call() {
    // A gateway that wants a key before it lets anything register.
    let registry = MemoryRegistry::builder().ttl(TTL).build().unwrap();
    let guarded = axum::Router::new()
        .nest_service("/registry", RegistryServer::new(registry.clone()))
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if req
                    .headers()
                    .get("x-internal-auth")
                    .map(http::HeaderValue::as_bytes)
                    == Some(b"key-123")
                {
                    next.run(req).await
                } else {
                    axum::response::IntoResponse::into_response(http::StatusCode::UNAUTHORIZED)
                }
            },
        ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, guarded).await });
    let instance = || {
        forten_discovery::ServiceInstance::builder("svc", "127.0.0.1", 9)
            .build()
            .unwrap()
    };

    let without = HttpRegistry::new(&url).unwrap();
    assert!(without.register(instance()).await.is_err());
    let with = HttpRegistry::builder(&url)
        .header("x-internal-auth", "key-123")
        .build()
        .unwrap();
    let registration = with.register(instance()).await.unwrap();
    assert_eq!(registry.discover("svc").await.unwrap().len(), 1);
    registration.deregister().await.unwrap();
    assert!(registry.discover("svc").await.unwrap().is_empty());

    let bad = HttpRegistry::builder(&url).header("bad name", "v").build();
    assert!(bad.unwrap_err().to_string().contains("header name"));
    server.abort();
}

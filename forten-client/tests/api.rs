//! The builder's validation, request building, typed errors and their
//! mapping, body limits, h2c and the tower `Service` impl.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::no_retry;
use forten_client::{ClientBuildError, ClientError, Fallback, ServiceClient};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[test]
fn the_builder_refuses_unusable_settings() {
    let err = |b: forten_client::ServiceClientBuilder| b.build().unwrap_err();
    let base = || ServiceClient::builder("events").base_url("http://127.0.0.1:3002");

    assert_eq!(
        err(ServiceClient::builder(" ").base_url("http://x:1")),
        ClientBuildError::EmptyServiceName
    );
    assert!(matches!(
        err(ServiceClient::builder("e").base_url("https://x:1")),
        ClientBuildError::InvalidBaseUrl { .. }
    ));
    assert!(matches!(
        err(ServiceClient::builder("e").base_url("127.0.0.1:3002")),
        ClientBuildError::InvalidBaseUrl { .. }
    ));
    assert!(matches!(
        err(ServiceClient::builder("e").base_url("http://x:1/?a=b")),
        ClientBuildError::InvalidBaseUrl { .. }
    ));
    assert_eq!(
        err(base().timeout(Duration::ZERO)),
        ClientBuildError::ZeroTimeout("the per-attempt timeout")
    );
    assert_eq!(
        err(base()
            .timeout(Duration::from_secs(5))
            .total_timeout(Duration::from_secs(2))),
        ClientBuildError::AttemptLongerThanTotal {
            attempt: Duration::from_secs(5),
            total: Duration::from_secs(2)
        }
    );
    assert!(matches!(
        err(base().max_response_body(0)),
        ClientBuildError::ZeroLimit(_)
    ));
    assert!(matches!(
        err(base().default_header("bad header", "x")),
        ClientBuildError::InvalidHeader(_)
    ));
    assert_eq!(
        err(base().fallback(Fallback::stale_cache(Duration::ZERO))),
        ClientBuildError::InvalidFallback
    );
    // the message says what to do
    let message = err(ServiceClient::builder("events")).to_string();
    assert!(message.contains(".base_url("), "{message}");

    let ok = base()
        .no_total_timeout()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(ok.service(), "events");
    assert_eq!(ok.instances(), ["http://127.0.0.1:3002"]);
}

#[tokio::test]
async fn requests_carry_method_path_prefix_query_headers_and_json() {
    let upstream = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/api/v1/events/7"))
        .and(query_param("notify", "true"))
        .and(query_param("by", "ann lee"))
        .and(header("x-tenant", "acme"))
        .and(header("user-agent", "forten-test"))
        .and(header("content-type", "application/json"))
        .and(body_json(serde_json::json!({"title": "Launch"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": 7})))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(format!("{}/api/v1/", upstream.uri()))
        .default_header("user-agent", "forten-test")
        .build()
        .unwrap();
    let updated: serde_json::Value = client
        .put("/events/7?notify=true")
        .query(&[("by", "ann lee")])
        .header("x-tenant", "acme")
        .json(&serde_json::json!({"title": "Launch"}))
        .unwrap()
        .send_json()
        .await
        .unwrap();
    assert_eq!(updated["id"], 7);

    // the other verbs
    Mock::given(path("/api/v1/any"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&upstream)
        .await;
    for request in [
        client.get("/any"),
        client.post("/any"),
        client.patch("/any"),
        client.delete("/any"),
        client.request(http::Method::OPTIONS, "/any"),
    ] {
        assert_eq!(request.send().await.unwrap().status(), 204);
    }
}

#[tokio::test]
async fn invalid_requests_fail_before_anything_is_sent() {
    let client = ServiceClient::builder("events")
        .base_url("http://127.0.0.1:9")
        .max_request_body(4)
        .build()
        .unwrap();
    let invalid = |r: Result<_, ClientError>| matches!(r, Err(ClientError::InvalidRequest { .. }));
    assert!(invalid(client.get("no-slash").send().await));
    assert!(invalid(
        client.get("/x").header("bad name", "v").send().await
    ));
    assert!(invalid(
        client.get("/x").header("x", "bad\nvalue").send().await
    ));
    assert!(invalid(client.get("/a b").send().await));
    let big = client.post("/x").body("12345").send().await.unwrap_err();
    assert!(matches!(big, ClientError::RequestTooLarge { limit: 4 }));
    assert_eq!(big.status(), 413);
}

#[tokio::test]
async fn a_non_2xx_keeps_its_status_and_json_api_document() {
    let upstream = MockServer::start().await;
    let sent = serde_json::json!({"errors": [{
        "id": "e1", "status": "422", "code": "VALIDATION_ERROR", "title": "Unprocessable entity",
        "detail": "title is required", "source": {"pointer": "/data/attributes/title"},
        "meta": {"timestamp": "2026-11-22T00:00:00Z", "requestId": "r-1"}}]});
    Mock::given(path("/events"))
        .respond_with(
            ResponseTemplate::new(422).set_body_raw(sent.to_string(), "application/vnd.api+json"),
        )
        .mount(&upstream)
        .await;
    Mock::given(path("/plain"))
        .respond_with(ResponseTemplate::new(404).set_body_string("not here"))
        .mount(&upstream)
        .await;
    Mock::given(path("/garbage"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{not json"))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events-service")
        .base_url(upstream.uri())
        .build()
        .unwrap();

    let err = client
        .post("/events")
        .json(&serde_json::json!({}))
        .unwrap()
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    let ClientError::Status {
        status, document, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*status, 422);
    let doc = document.as_ref().unwrap();
    assert_eq!(doc.errors[0].detail, "title is required");
    assert!(err.to_string().contains("title is required"));

    // a gateway passes it through as it came
    let passed = err.to_response(Some("gw-1"));
    assert_eq!(passed.status(), 422);
    assert_eq!(passed.headers()["content-type"], "application/vnd.api+json");
    let body = passed.into_body().collect().await.unwrap().to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed, sent);
    // or maps it into forten-core's model
    let core: forten_core::Error = err.into();
    assert!(matches!(
        &core,
        forten_core::Error::Validation { detail, pointer: Some(p) }
            if detail == "title is required" && p == "/data/attributes/title"
    ));

    let err = client
        .get("/plain")
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert!(err.document().is_none());
    assert_eq!(err.status(), 404);
    let core: forten_core::Error = err.into();
    assert_eq!(core.code(), "NOT_FOUND");

    let err = client
        .get("/garbage")
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }));
    assert_eq!(forten_core::Error::from(err).status(), 502);
}

#[tokio::test]
async fn resilience_and_transport_failures_render_as_json_api_documents() {
    // nothing listens on port 9 of loopback (discard): connection refused
    let client = ServiceClient::builder("events-service")
        .base_url("http://127.0.0.1:9")
        .retry(common::constant_retry(Duration::from_millis(1), 2))
        .build()
        .unwrap();
    let err = client.get("/events").send().await.unwrap_err();
    let ClientError::Resilience(forten_core::Error::RetriesExhausted { attempts, .. }) = &err
    else {
        panic!("a refused connection is retried, then reported: {err:?}")
    };
    assert_eq!(*attempts, 3);
    let response = err.to_response(Some("req-9"));
    assert_eq!(response.status(), 502);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let doc = forten_core::error::ErrorDocument::from_slice(&body).unwrap();
    assert_eq!(doc.errors[0].code, "UPSTREAM_UNAVAILABLE");
    assert_eq!(doc.errors[0].meta.request_id.as_deref(), Some("req-9"));
}

#[tokio::test]
async fn a_response_over_the_limit_is_refused() {
    let upstream = MockServer::start().await;
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 2048]))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .max_response_body(1024)
        .retry(no_retry())
        .build()
        .unwrap();
    let err = client.get("/big").send().await.unwrap_err();
    assert!(
        matches!(err, ClientError::ResponseTooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), 502);
}

/// A raw HTTP/1.1 upstream answering each request with `chunks` as a
/// chunked body (no content-length), each chunk written on its own.
async fn chunked_upstream(chunks: &'static [&'static str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let start =
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if socket.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in chunks {
                    let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                    if socket.write_all(frame.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = socket.flush().await;
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_chunked_response_is_read_whole_and_bounded() {
    const CHUNKS: &[&str] = &["hello ", "chunked ", "world"];
    let client = |limit: usize, url: String| {
        ServiceClient::builder("events")
            .base_url(url)
            .max_response_body(limit)
            .retry(no_retry())
            .build()
            .unwrap()
    };
    let url = chunked_upstream(CHUNKS).await;
    let whole = client(1024, url.clone()).get("/any").send().await.unwrap();
    assert_eq!(whole.body().as_ref(), b"hello chunked world");
    // no content-length to refuse it by: the limit stops the reading
    let err = client(8, url).get("/any").send().await.unwrap_err();
    assert!(
        matches!(err, ClientError::ResponseTooLarge { limit: 8, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let upstream = MockServer::start().await;
    Mock::given(path("/h2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client.get("/h2").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn the_client_is_a_tower_service_under_layers_of_your_own() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/echo"))
        .respond_with(|req: &wiremock::Request| {
            ResponseTemplate::new(200).set_body_bytes(req.body.clone())
        })
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("echo")
        .base_url(upstream.uri())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .concurrency_limit(4)
        .map_request(|mut req: http::Request<Full<Bytes>>| {
            req.headers_mut()
                .insert("x-layer", http::HeaderValue::from_static("mine"));
            req
        })
        .service(client);
    let request = http::Request::post("/echo")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.body(), "hello");
    assert_eq!(
        upstream.received_requests().await.unwrap()[0].headers["x-layer"],
        "mine"
    );
}

#[tokio::test]
async fn the_client_rate_limit_refuses_calls_over_the_quota_without_sending() {
    let upstream = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let policy =
        forten_core::ratelimit::RateLimitPolicy::new("events", 2, Duration::from_secs(60)).unwrap();
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .rate_limit(policy)
        .build()
        .unwrap();
    client.get("/x").send().await.unwrap();
    client.get("/x").send().await.unwrap();
    let err = client.get("/x").send().await.unwrap_err();
    assert_eq!(err.status(), 429);
    assert!(err.retry_after().is_some());
    assert_eq!(common::received(&upstream).await, 2);
}

#[test]
fn the_client_and_its_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>(_: &T) {}
    send_sync::<ServiceClient>();
    send_sync::<ClientError>();
    let client = ServiceClient::builder("x")
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    send(&client.execute(http::Request::new(Full::new(Bytes::new()))));
    send(&async move { client.get("/").send().await });
}

#[tokio::test]
async fn max_in_flight_queues_attempts_beyond_the_limit() {
    let upstream = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(150)))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .max_in_flight(1)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(client.get("/slow").send(), client.get("/slow").send());
    assert_eq!(a.unwrap().status(), 200);
    assert_eq!(b.unwrap().status(), 200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "ran side by side: {took:?}"
    );
}

#[tokio::test]
async fn waiting_for_an_in_flight_slot_counts_against_the_attempt_timeout() {
    let upstream = MockServer::start().await;
    Mock::given(path("/hang"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .max_in_flight(1)
        .timeout(Duration::from_millis(300))
        .total_timeout(Duration::from_secs(3))
        .retry(no_retry())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(client.get("/hang").send(), client.get("/hang").send());
    assert_eq!(a.unwrap_err().status(), 504);
    assert_eq!(b.unwrap_err().status(), 504);
    let took = started.elapsed();
    // the second waited for the slot within its own 300 ms, not after them
    assert!(took < Duration::from_millis(550), "{took:?}");
}

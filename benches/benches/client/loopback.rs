//! The loopback server and the clients the `client` benchmark and its
//! callgrind example (`benches/examples/client_calls.rs`) both measure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use forten_client::ServiceClient;
use forten_core::backoff::Constant;
use forten_core::retry::RetryConfig;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// hyper-util's pooled client with no layers.
pub(crate) type PlainClient = Client<HttpConnector, Full<Bytes>>;

/// A loopback HTTP/1.1 server answering every request with a 2-byte 200.
pub(crate) async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The peer: hyper-util's legacy client, pooled, nodelay.
pub(crate) fn plain_client() -> PlainClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// `ServiceClient` with its whole default stack, on `base` (call inside a runtime).
pub(crate) fn forten_client(base: &str) -> ServiceClient {
    ServiceClient::builder("bench")
        .base_url(base)
        .build()
        .expect("client")
}

/// The same stack with retries off (no request copy per call).
pub(crate) fn no_retry_client(base: &str) -> ServiceClient {
    ServiceClient::builder("bench")
        .base_url(base)
        .retry(
            RetryConfig::builder()
                .backoff(Constant::new(Duration::from_millis(1), 0).expect("backoff"))
                .no_budget()
                .build()
                .expect("retry"),
        )
        .build()
        .expect("client")
}

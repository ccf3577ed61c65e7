//! Makes `N` sequential GETs of the `client` benchmark (benches/benches/client.rs)
//! against a loopback hyper server on one current-thread runtime, for
//! instruction counts under callgrind: `benches/callgrind-client` runs it with
//! `N` and `2 N` calls and prints the difference per call (client and server
//! side together; the server's share is the same for every id).
//!
//! ```text
//! cargo run --profile bench -p forten-benches --example client_calls -- <id> <N> [allocs]
//! ```
//!
//! Ids: `plain` (hyper-util's client, no layers), `forten` (`ServiceClient`'s
//! whole default stack), `no_retry` (the same with retries off). With
//! `allocs`, it prints the heap allocations per call instead (run it outside
//! valgrind).
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use forten_client::ServiceClient;
use forten_core::backoff::Constant;
use forten_core::retry::RetryConfig;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// A loopback HTTP/1.1 server answering every request with a 2-byte 200.
async fn serve() -> SocketAddr {
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

enum Peer {
    Plain(Client<HttpConnector, Full<Bytes>>, http::Uri),
    Forten(ServiceClient),
}

impl Peer {
    async fn get(&self) -> Bytes {
        match self {
            Peer::Plain(client, uri) => client
                .get(uri.clone())
                .await
                .expect("plain GET")
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes(),
            Peer::Forten(client) => client
                .get("/")
                .send()
                .await
                .expect("forten GET")
                .into_body(),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(id), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: client_calls <plain|forten|no_retry> <N> [allocs]");
        return ExitCode::FAILURE;
    };
    let allocs = args.get(2).is_some_and(|a| a == "allocs");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(serve());
    let base = format!("http://{addr}");
    let peer = {
        let _guard = rt.enter();
        match id.as_str() {
            "plain" => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .build(connector);
                Peer::Plain(client, format!("{base}/").parse().expect("uri"))
            }
            "forten" => Peer::Forten(
                ServiceClient::builder("bench")
                    .base_url(base)
                    .build()
                    .expect("client"),
            ),
            "no_retry" => Peer::Forten(
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
                    .expect("client"),
            ),
            other => {
                eprintln!("unknown id {other}");
                return ExitCode::FAILURE;
            }
        }
    };
    rt.block_on(async {
        // the connection, the pool and lazily initialised state first
        for _ in 0..100 {
            black_box(peer.get().await);
        }
    });
    if allocs {
        let info = allocation_counter::measure(|| {
            rt.block_on(async {
                for _ in 0..n {
                    black_box(peer.get().await);
                }
            });
        });
        println!(
            "{id}: {:.2} allocations per call ({:.0} bytes per call)",
            info.count_total as f64 / n as f64,
            info.bytes_total as f64 / n as f64,
        );
    } else {
        rt.block_on(async {
            for _ in 0..n {
                black_box(peer.get().await);
            }
        });
    }
    ExitCode::SUCCESS
}

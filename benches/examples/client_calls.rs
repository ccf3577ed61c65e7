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
//! Ids: `plain` (hyper-util's client, no layers), `plain_headers` (the same
//! sending the three headers the stack adds on the wire: what the wire
//! contract alone costs, both ends), `forten` (`ServiceClient`'s whole
//! default stack), `no_retry` (the same with retries off). With
//! `allocs`, it prints the heap allocations per call instead (run it outside
//! valgrind).
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::ExitCode;

use bytes::Bytes;
use forten_client::ServiceClient;
use http_body_util::BodyExt;

#[path = "../benches/client/loopback.rs"]
mod loopback;

use loopback::{PlainClient, forten_client, no_retry_client, plain_client, serve};

enum Peer {
    Plain(PlainClient, http::Uri),
    /// Plain, sending the stack's propagation headers (made up front).
    PlainHeaders(PlainClient, http::Uri),
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
            Peer::PlainHeaders(client, uri) => {
                // static names and values: no allocation to build them,
                // as the stack's own (its values share one buffer)
                use http::{HeaderName, HeaderValue};
                let req = http::Request::get(uri.clone())
                    .header(
                        HeaderName::from_static("x-correlation-id"),
                        HeaderValue::from_static("6f1c2c43-6a5e-4d1e-9c1e-2f0e5b9d8a71"),
                    )
                    .header(
                        HeaderName::from_static("traceparent"),
                        HeaderValue::from_static(
                            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                        ),
                    )
                    .header(
                        HeaderName::from_static("x-request-timeout-ms"),
                        HeaderValue::from_static("10000"),
                    )
                    .body(http_body_util::Full::new(Bytes::new()))
                    .expect("request");
                client
                    .request(req)
                    .await
                    .expect("plain GET")
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
            }
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
        eprintln!("usage: client_calls <plain|plain_headers|forten|no_retry> <N> [allocs]");
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
            "plain" => Peer::Plain(plain_client(), format!("{base}/").parse().expect("uri")),
            "plain_headers" => {
                Peer::PlainHeaders(plain_client(), format!("{base}/").parse().expect("uri"))
            }
            "forten" => Peer::Forten(forten_client(&base)),
            "no_retry" => Peer::Forten(no_retry_client(&base)),
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

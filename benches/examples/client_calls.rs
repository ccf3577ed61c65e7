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
use forten_benches::{PROPAGATION_HEADERS, static_headers};
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
        let response = match self {
            Peer::Plain(client, uri) => client.get(uri.clone()).await,
            Peer::PlainHeaders(client, uri) => {
                let mut req = http::Request::get(uri.clone());
                for (name, value) in static_headers(&PROPAGATION_HEADERS) {
                    req = req.header(name, value);
                }
                let req = req
                    .body(http_body_util::Full::new(Bytes::new()))
                    .expect("request");
                client.request(req).await
            }
            Peer::Forten(client) => {
                return client
                    .get("/")
                    .send()
                    .await
                    .expect("forten GET")
                    .into_body();
            }
        };
        response
            .expect("plain GET")
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
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

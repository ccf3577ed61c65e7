//! forten-client over loopback beside a plain hyper-util client (criterion
//! group `client`), both calling the same local hyper server in the same run:
//!
//! - `client/peer_plain_hyper`: hyper-util's pooled legacy client, a GET and
//!   its body collected, nothing else;
//! - `client/loopback_get`: `ServiceClient` with its whole default stack
//!   (correlation, deadlines, retry with budget, keyed breaker, per-attempt
//!   timeout, pooled transport), `get("/").send()`.
//!
//! Client and server share one current-thread runtime, so the figure is the
//! CPU cost of a round trip on one core, not parallel throughput. After the
//! criterion runs, both are also measured call by call (alternating
//! batches) to print req/s, p50 and p99 (DESIGN 6 budget: the stack adds <= 15 % at p50 on loopback).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use counting::report_allocations;
use criterion::{Criterion, criterion_group, criterion_main};
use forten_benches::{PROPAGATION_HEADERS, static_headers};
use forten_client::ServiceClient;
use forten_core::correlation::CorrelationContext;
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::runtime::Runtime;

#[path = "counting.rs"]
mod counting;
#[path = "client/loopback.rs"]
mod loopback;

use loopback::{PlainClient, forten_client, no_retry_client, plain_client, serve};

struct Peers {
    plain: PlainClient,
    uri: http::Uri,
    forten: ServiceClient,
    /// the same stack with retries off (no request copy per call)
    no_retry: ServiceClient,
}

impl Peers {
    fn new(rt: &Runtime) -> Self {
        let addr = rt.block_on(serve());
        let plain = plain_client();
        let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
        let (forten, no_retry) = {
            let _guard = rt.enter();
            let base = format!("http://{addr}");
            (forten_client(&base), no_retry_client(&base))
        };
        Peers {
            plain,
            uri,
            forten,
            no_retry,
        }
    }

    async fn plain_get(&self) -> Bytes {
        let response = self.plain.get(self.uri.clone()).await.expect("plain GET");
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
    }

    /// The plain client sending the headers the stack adds on the wire
    /// (correlation id, traceparent, x-request-timeout-ms), made up front.
    async fn plain_get_with_headers(&self) -> Bytes {
        let mut req = Request::get(self.uri.clone());
        for (name, value) in static_headers(&PROPAGATION_HEADERS) {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let response = self.plain.request(req).await.expect("plain GET");
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
    }

    async fn forten_get(&self) -> Bytes {
        Self::get(&self.forten).await
    }

    async fn get(client: &ServiceClient) -> Bytes {
        client
            .get("/")
            .send()
            .await
            .expect("forten GET")
            .into_body()
    }
}

/// Per-call latencies of both peers, measured in alternating batches of
/// 1,000 sequential calls so that load changes on the machine hit both alike.
fn latency_report(rt: &Runtime, peers: &Peers, batches: usize) -> (Duration, Duration) {
    rt.block_on(async {
        for _ in 0..1_000 {
            black_box(peers.plain_get().await);
            black_box(peers.forten_get().await);
        }
        let mut plain = Vec::with_capacity(batches * 1_000);
        let mut forten = Vec::with_capacity(batches * 1_000);
        let (mut plain_total, mut forten_total) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..batches {
            let started = Instant::now();
            for _ in 0..1_000 {
                let t = Instant::now();
                black_box(peers.plain_get().await);
                plain.push(t.elapsed());
            }
            plain_total += started.elapsed();
            let started = Instant::now();
            for _ in 0..1_000 {
                let t = Instant::now();
                black_box(peers.forten_get().await);
                forten.push(t.elapsed());
            }
            forten_total += started.elapsed();
        }
        let report = |id: &str, samples: &mut Vec<Duration>, total: Duration| {
            samples.sort_unstable();
            let n = samples.len();
            let (p50, p99) = (samples[n / 2], samples[n * 99 / 100]);
            println!(
                "latency/{id}: {:.0} req/s, p50 {:.1} us, p99 {:.1} us ({n} sequential calls)",
                n as f64 / total.as_secs_f64(),
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
            );
            p50
        };
        (
            report("client/peer_plain_hyper", &mut plain, plain_total),
            report("client/loopback_get", &mut forten, forten_total),
        )
    })
}

/// Where the stack's time goes, roughly: p50 of the full stack, of the stack
/// with retries off, of calls made inside a correlation context (no new root
/// id per call), of plain hyper, and of plain hyper sending the three headers
/// the stack adds (the server on the same thread parses them too), in
/// alternating batches.
fn breakdown(rt: &Runtime, peers: &Peers) {
    rt.block_on(async {
        let ctx = CorrelationContext::new_root();
        let mut samples: [Vec<Duration>; 5] = Default::default();
        for _ in 0..10 {
            for (i, samples) in samples.iter_mut().enumerate() {
                for _ in 0..1_000 {
                    let t = Instant::now();
                    match i {
                        0 => black_box(peers.forten_get().await),
                        1 => black_box(Peers::get(&peers.no_retry).await),
                        2 => black_box(ctx.clone().scope(peers.forten_get()).await),
                        3 => black_box(peers.plain_get().await),
                        _ => black_box(peers.plain_get_with_headers().await),
                    };
                    samples.push(t.elapsed());
                }
            }
        }
        for (name, samples) in [
            "full stack",
            "retries off",
            "inside a context",
            "plain hyper",
            "plain hyper sending the stack's 3 headers",
        ]
        .iter()
        .zip(samples.iter_mut())
        {
            samples.sort_unstable();
            println!(
                "latency/client/breakdown: {name}: p50 {:.1} us",
                samples[samples.len() / 2].as_secs_f64() * 1e6
            );
        }
    });
}

fn client(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let peers = Peers::new(&rt);

    let mut g = c.benchmark_group("client");
    g.bench_function("peer_plain_hyper", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peers.plain_get().await) });
    });
    g.bench_function("loopback_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peers.forten_get().await) });
    });
    g.finish();

    let (plain, forten) = latency_report(&rt, &peers, 20);
    breakdown(&rt, &peers);
    for (id, forten) in [
        ("client/peer_plain_hyper", false),
        ("client/loopback_get", true),
    ] {
        report_allocations(id, 1_000, || {
            rt.block_on(async {
                if forten {
                    black_box(peers.forten_get().await);
                } else {
                    black_box(peers.plain_get().await);
                }
            });
        });
    }
    println!(
        "latency/client: the full stack adds {:+.1} % ({:+.1} us) at p50 (budget <= 15 %)",
        (forten.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0,
        (forten.as_secs_f64() - plain.as_secs_f64()) * 1e6,
    );
}

criterion_group!(benches, client);
criterion_main!(benches);

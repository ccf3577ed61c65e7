//! forten-core idempotency and rate-limit layers: `idempotency_passthrough`
//! (GET, no key), `idempotency_replay` (keyed POST answered from the memory
//! store), `rate_limit` (governor backend, allowed).

use std::convert::Infallible;
use std::time::Duration;

use super::counting::bench_counted;
use bytes::Bytes;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use forten_benches::call_ready;
use forten_core::idempotency::{IdempotencyLayer, MemoryStore};
use forten_core::ratelimit::{GovernorBackend, KeyExtractor, RateLimitLayer, RateLimitPolicy};
use http::{Request, Response};
use http_body_util::{Either, Full};
use tower::{Layer, service_fn};

type Body = Full<Bytes>;

type Keyed = Request<Either<Body, Body>>;
type Answer = std::future::Ready<Result<Response<Body>, Infallible>>;

/// The handler every benchmark wraps: answers at once with a small JSON body.
fn handle(_req: Keyed) -> Answer {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"id\":1}",
    )))))
}

fn handler() -> tower::util::ServiceFn<fn(Keyed) -> Answer> {
    service_fn(handle as fn(Keyed) -> Answer)
}

fn get() -> Request<Body> {
    Request::get("/orders")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn keyed_post() -> Request<Body> {
    Request::post("/orders")
        .header(
            "idempotency-key",
            "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
        )
        .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))
        .expect("request")
}

pub(crate) fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
    // the handler alone with the same requests: what the layer adds is the difference
    let mut bare = handler();
    bench_counted(g, "idempotency_passthrough/bare", || {
        call_ready(&mut bare, get().map(Either::Left)).ok()
    });
    bench_counted(g, "idempotency_replay/bare", || {
        call_ready(&mut bare, keyed_post().map(Either::Left)).ok()
    });

    let mut passthrough = IdempotencyLayer::new(MemoryStore::new()).layer(handler());
    bench_counted(g, "idempotency_passthrough", || {
        call_ready(&mut passthrough, get()).ok()
    });

    let mut replay = IdempotencyLayer::new(MemoryStore::new()).layer(handler());
    // the first call stores the response; every later one is a replay
    let first = call_ready(&mut replay, keyed_post()).expect("stored");
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let again = call_ready(&mut replay, keyed_post()).expect("replayed");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    bench_counted(g, "idempotency_replay", || {
        call_ready(&mut replay, keyed_post()).ok()
    });

    // a budget no benchmark loop can spend: one request per nanosecond
    let policy =
        RateLimitPolicy::new("bench", 1_000_000_000, Duration::from_secs(1)).expect("policy");
    let ok =
        service_fn(|_req: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(()))));
    let mut limited =
        RateLimitLayer::keyed(GovernorBackend::new(policy), KeyExtractor::global()).layer(ok);
    bench_counted(g, "rate_limit", || {
        call_ready(&mut limited, Request::new(())).ok()
    });
}

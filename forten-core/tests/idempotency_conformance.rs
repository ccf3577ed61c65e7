//! Conformance suite of the idempotency layer (DESIGN 4.4): the same cases run
//! against every store. The memory store runs on paused time; the Redis store
//! talks to a real Redis on loopback (`--include-ignored`).
#![allow(missing_docs)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use forten_core::BoxError;
use forten_core::error::ErrorDocument;
use forten_core::idempotency::{ClientIdentity, IdempotencyLayer, IdempotencyStore, MemoryStore};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt, service_fn};

type InBody = Either<Full<Bytes>, Full<Bytes>>;

/// A store under test and how time passes for it.
struct Env<St> {
    store: Arc<St>,
    paused: bool,
}

impl<St> Env<St> {
    /// Lets `d` pass on paused time; on real time (a server's clock) the
    /// caller then waits for the effect with [`eventually`].
    async fn pass(&self, d: Duration) {
        if self.paused {
            tokio::time::advance(d).await;
        }
    }
}

/// The handler: counts runs; answers the status in `x-status` (default 201)
/// with `run <n>: <body>`; waits for a permit when `x-wait` is set; panics on
/// `x-panic`; fails with `Err` on `x-fail`.
#[derive(Clone)]
struct Handler {
    runs: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Handler {
    fn new() -> Self {
        Handler {
            runs: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<InBody>,
        Response = Response<Full<Bytes>>,
        Error = BoxError,
        Future: Send,
    > + Clone
    + Send
    + 'static {
        let this = self.clone();
        service_fn(move |req: Request<InBody>| {
            let this = this.clone();
            async move {
                let h = req.headers().clone();
                if h.contains_key("x-fail") {
                    return Err::<Response<Full<Bytes>>, BoxError>(
                        "rejected before the handler".into(),
                    );
                }
                let n = this.runs.fetch_add(1, Ordering::SeqCst) + 1;
                if h.contains_key("x-wait") {
                    this.gate.acquire().await.map_err(Box::new)?.forget();
                }
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                assert!(!h.contains_key("x-panic"), "handler panicked");
                let status = h
                    .get("x-status")
                    .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
                    .unwrap_or(201);
                let body = req.into_body().collect().await?.to_bytes();
                let mut res = Response::new(Full::new(Bytes::from(format!(
                    "run {n}: {}",
                    String::from_utf8_lossy(&body)
                ))));
                *res.status_mut() = StatusCode::from_u16(status)?;
                res.headers_mut().insert("x-run", n.into());
                Ok(res)
            }
        })
    }
}

fn layer<St: IdempotencyStore>(env: &Env<St>) -> IdempotencyLayer<St> {
    IdempotencyLayer::builder_shared(env.store.clone())
        .ttl(Duration::from_secs(2))
        .lock_ttl(Duration::from_secs(1))
        .max_body_bytes(64)
        .build()
        .unwrap()
}

fn post(key: &str) -> http::request::Builder {
    Request::post("/orders").header("idempotency-key", key)
}

fn req(key: &str, body: &'static str) -> Request<Full<Bytes>> {
    post(key)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    fn code(&self) -> String {
        assert_eq!(self.headers["content-type"], "application/vnd.api+json");
        let doc = ErrorDocument::from_slice(&self.body).expect("a JSON:API error document");
        doc.errors[0].code.clone()
    }
}

async fn send<S, B>(svc: &S, req: Request<Full<Bytes>>) -> Result<Answer, BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = BoxError> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let res = svc.clone().oneshot(req).await?;
    let (parts, body) = res.into_parts();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.map_err(Into::into)?.to_bytes(),
    })
}

/// Waits (bounded) until `check` holds; stores with background I/O need it.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in time");
}

mod cases {
    use super::*;

    pub(super) async fn replays_completed<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        let first = send(&svc, req("\"k1\"", "a")).await.unwrap();
        assert_eq!(first.status, 201);
        assert!(!first.replayed());
        let again = send(&svc, req("\"k1\"", "a")).await.unwrap();
        assert_eq!(again.status, 201);
        assert!(again.replayed());
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers["x-run"], "1");
        // bare token form names the same key
        let bare = send(&svc, req("k1", "a")).await.unwrap();
        assert!(bare.replayed());
        assert_eq!(h.runs(), 1);
    }

    pub(super) async fn replays_stored_errors<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        for status in ["409", "500"] {
            let key = format!("\"err-{status}\"");
            let make = || {
                post(&key)
                    .header("x-status", status)
                    .body(Full::new(Bytes::from_static(b"x")))
                    .unwrap()
            };
            let first = send(&svc, make()).await.unwrap();
            let again = send(&svc, make()).await.unwrap();
            assert_eq!(first.status.as_str(), status);
            assert_eq!(again.status.as_str(), status);
            assert!(again.replayed());
            assert_eq!(again.body, first.body);
        }
        assert_eq!(h.runs(), 2);
    }

    pub(super) async fn in_flight_conflicts<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        let waiting = || {
            post("\"slow\"")
                .header("x-wait", "1")
                .body(Full::new(Bytes::from_static(b"a")))
                .unwrap()
        };
        let first = tokio::spawn({
            let svc = svc.clone();
            let r = waiting();
            async move { send(&svc, r).await.unwrap() }
        });
        eventually(|| async { h.runs() == 1 }).await;
        let second = send(&svc, waiting()).await.unwrap();
        assert_eq!(second.status, 409);
        assert_eq!(second.code(), "IDEMPOTENCY_CONFLICT");
        h.gate.add_permits(1);
        let first = first.await.unwrap();
        assert_eq!(first.status, 201);
        assert_eq!(h.runs(), 1);
        let third = send(&svc, waiting()).await.unwrap();
        assert!(third.replayed());
        assert_eq!(h.runs(), 1);
    }

    pub(super) async fn different_payload_is_422<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        assert_eq!(send(&svc, req("\"p\"", "a")).await.unwrap().status, 201);
        let other = send(&svc, req("\"p\"", "b")).await.unwrap();
        assert_eq!(other.status, 422);
        assert_eq!(other.code(), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(h.runs(), 1);
    }

    pub(super) async fn invalid_key_is_400<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        let long = format!("\"{}\"", "k".repeat(256));
        for bad in ["\"\"", "\"unterminated", "two words", long.as_str()] {
            let res = send(&svc, req(bad, "a")).await.unwrap();
            assert_eq!(res.status, 400, "{bad}");
            assert_eq!(res.code(), "VALIDATION_ERROR");
        }
        let two = Request::post("/orders")
            .header("idempotency-key", "\"a\"")
            .header("idempotency-key", "\"b\"")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&svc, two).await.unwrap().status, 400);
        assert_eq!(h.runs(), 0);
    }

    pub(super) async fn missing_key<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let optional = layer(&env).layer(h.service());
        let unkeyed = || {
            Request::post("/orders")
                .body(Full::new(Bytes::from_static(b"a")))
                .unwrap()
        };
        assert_eq!(send(&optional, unkeyed()).await.unwrap().status, 201);
        assert_eq!(send(&optional, unkeyed()).await.unwrap().status, 201);
        assert_eq!(h.runs(), 2);
        let required = IdempotencyLayer::builder_shared(env.store.clone())
            .required(true)
            .build()
            .unwrap()
            .layer(h.service());
        let res = send(&required, unkeyed()).await.unwrap();
        assert_eq!(res.status, 400);
        assert_eq!(res.code(), "IDEMPOTENCY_KEY_MISSING");
        // methods outside the set pass through, keyed or not
        let get = Request::get("/orders")
            .header("idempotency-key", "\"g\"")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&required, get).await.unwrap().status, 201);
        assert_eq!(h.runs(), 3);
    }

    pub(super) async fn failure_before_handler_stores_nothing<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        // too large (limit 64 bytes): 413, then the corrected request runs
        let big = post("\"fix\"")
            .body(Full::new(Bytes::from(vec![b'x'; 65])))
            .unwrap();
        let res = send(&svc, big).await.unwrap();
        assert_eq!(res.status, 413);
        assert_eq!(res.code(), "PAYLOAD_TOO_LARGE");
        assert_eq!(send(&svc, req("\"fix\"", "ok")).await.unwrap().status, 201);
        // the stack below fails with Err (e.g. auth): nothing stored, a retry runs
        let failing = post("\"fail\"")
            .header("x-fail", "1")
            .body(Full::new(Bytes::from_static(b"a")))
            .unwrap();
        assert!(send(&svc, failing).await.is_err());
        eventually(|| async { send(&svc, req("\"fail\"", "a")).await.unwrap().status == 201 })
            .await;
        assert_eq!(h.runs(), 2);
    }

    pub(super) async fn dropped_request_releases<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        let waiting = post("\"drop\"")
            .header("x-wait", "1")
            .body(Full::new(Bytes::from_static(b"a")))
            .unwrap();
        let task = tokio::spawn({
            let svc = svc.clone();
            async move { send(&svc, waiting).await }
        });
        eventually(|| async { h.runs() == 1 }).await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        eventually(|| async { send(&svc, req("\"drop\"", "a")).await.unwrap().status == 201 })
            .await;
        assert_eq!(h.runs(), 2);
    }

    pub(super) async fn panicked_request_releases<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        let panicking = post("\"panic\"")
            .header("x-panic", "1")
            .body(Full::new(Bytes::from_static(b"a")))
            .unwrap();
        let task = tokio::spawn({
            let svc = svc.clone();
            async move { send(&svc, panicking).await }
        });
        assert!(task.await.unwrap_err().is_panic());
        eventually(|| async { send(&svc, req("\"panic\"", "a")).await.unwrap().status == 201 })
            .await;
        assert_eq!(h.runs(), 2);
    }

    pub(super) async fn entries_expire<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        assert!(!send(&svc, req("\"exp\"", "a")).await.unwrap().replayed());
        assert!(send(&svc, req("\"exp\"", "a")).await.unwrap().replayed());
        env.pass(Duration::from_millis(2100)).await;
        eventually(|| async { !send(&svc, req("\"exp\"", "a")).await.unwrap().replayed() }).await;
        assert_eq!(h.runs(), 2);
        // an abandoned lock expires too (lock_ttl 1 s): no permanent 409
        let store = env.store.clone();
        let scope = forten_core::idempotency::scope_key(
            "",
            &http::Method::POST,
            "/orders",
            &"lost".parse().unwrap(),
        );
        let fp = forten_core::idempotency::fingerprint(&http::Method::POST, "/orders", b"a");
        assert!(matches!(
            store
                .begin(&scope, &fp, Duration::from_secs(1))
                .await
                .unwrap(),
            forten_core::idempotency::Begin::Acquired(_)
        ));
        assert_eq!(send(&svc, req("\"lost\"", "a")).await.unwrap().status, 409);
        env.pass(Duration::from_millis(1100)).await;
        eventually(|| async { send(&svc, req("\"lost\"", "a")).await.unwrap().status == 201 })
            .await;
    }

    pub(super) async fn concurrent_identical_requests<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { send(&svc, req("\"burst\"", "same")).await.unwrap() })
            })
            .collect();
        let (mut fresh, mut replays, mut conflicts) = (0, 0, 0);
        for t in tasks {
            let a = t.await.unwrap();
            match a.status.as_u16() {
                201 if a.replayed() => replays += 1,
                201 => fresh += 1,
                409 => conflicts += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(h.runs(), 1);
        assert_eq!(fresh, 1);
        assert_eq!(replays + conflicts, 199);
    }

    pub(super) async fn clients_are_independent<St: IdempotencyStore>(env: Env<St>) {
        let h = Handler::new();
        let svc = layer(&env).layer(h.service());
        let as_client = |who: &'static str, body: &'static str| {
            let mut r = req("\"shared\"", body);
            r.extensions_mut().insert(ClientIdentity::new(who));
            r
        };
        let alice = send(&svc, as_client("alice", "a")).await.unwrap();
        let bob = send(&svc, as_client("bob", "b")).await.unwrap();
        assert!(!alice.replayed() && !bob.replayed());
        assert_eq!(bob.body, "run 2: b");
        assert!(
            send(&svc, as_client("alice", "a"))
                .await
                .unwrap()
                .replayed()
        );
        assert!(send(&svc, as_client("bob", "b")).await.unwrap().replayed());
        assert_eq!(h.runs(), 2);
        // the identity function scopes unauthenticated callers
        let by_header = IdempotencyLayer::builder_shared(env.store.clone())
            .identity_fn(|p| p.headers.get("x-tenant")?.to_str().ok().map(str::to_owned))
            .build()
            .unwrap()
            .layer(h.service());
        let tenant = |t: &str| {
            post("\"t\"")
                .header("x-tenant", t)
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap()
        };
        assert!(!send(&by_header, tenant("t1")).await.unwrap().replayed());
        assert!(!send(&by_header, tenant("t2")).await.unwrap().replayed());
        assert!(send(&by_header, tenant("t1")).await.unwrap().replayed());
        assert_eq!(h.runs(), 4);
    }
}

macro_rules! all_cases {
    ($each:ident) => {
        $each!(
            replays_completed,
            replays_stored_errors,
            in_flight_conflicts,
            different_payload_is_422,
            invalid_key_is_400,
            missing_key,
            failure_before_handler_stores_nothing,
            dropped_request_releases,
            panicked_request_releases,
            entries_expire,
            concurrent_identical_requests,
            clients_are_independent
        );
    };
}

mod memory {
    use super::*;

    fn env() -> Env<MemoryStore> {
        Env {
            store: Arc::new(MemoryStore::new()),
            paused: true,
        }
    }

    macro_rules! memory_cases {
        ($($case:ident),*) => {$(
            #[tokio::test(start_paused = true)]
            async fn $case() {
                cases::$case(env()).await;
            }
        )*};
    }

    all_cases!(memory_cases);
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use forten_core::idempotency::RedisStore;

    async fn env(case: &str) -> Env<RedisStore> {
        let prefix = format!("forten-test:idem:{case}:{}:", uuid::Uuid::new_v4());
        let store = RedisStore::connect("redis://127.0.0.1:6379")
            .await
            .unwrap()
            .with_prefix(prefix);
        Env {
            store: Arc::new(store),
            paused: false,
        }
    }

    macro_rules! redis_cases {
        ($($case:ident),*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs Redis: run scripts/test"]
            async fn $case() {
                cases::$case(env(stringify!($case)).await).await;
            }
        )*};
    }

    all_cases!(redis_cases);
}

/// In a real stack: the correlation id of the retry lands in the error
/// documents and on replays, and hop-by-hop fields are not replayed.
#[tokio::test(start_paused = true)]
async fn inside_the_correlation_layer() {
    use forten_core::correlation::CorrelationLayer;

    let handler = service_fn(|_req: Request<InBody>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"made")));
        res.headers_mut()
            .insert("transfer-encoding", "chunked".parse().unwrap());
        res.headers_mut()
            .insert("x-made-by", "handler".parse().unwrap());
        Ok::<_, BoxError>(res)
    });
    let svc =
        CorrelationLayer::new().layer(IdempotencyLayer::new(MemoryStore::new()).layer(handler));
    let with_id = |id: &str, key: &str| {
        Request::post("/orders")
            .header("x-correlation-id", id)
            .header("idempotency-key", key)
            .body(Full::new(Bytes::from_static(b"a")))
            .unwrap()
    };
    let bad = send(&svc, with_id("corr-1", "\"\"")).await.unwrap();
    assert_eq!(bad.status, 400);
    let doc = ErrorDocument::from_slice(&bad.body).unwrap();
    assert_eq!(doc.errors[0].meta.request_id.as_deref(), Some("corr-1"));

    let first = send(&svc, with_id("corr-2", "\"k\"")).await.unwrap();
    assert!(first.headers.contains_key("transfer-encoding"));
    let replay = send(&svc, with_id("corr-3", "\"k\"")).await.unwrap();
    assert!(replay.replayed());
    assert_eq!(replay.headers["x-correlation-id"], "corr-3");
    assert_eq!(replay.headers["x-made-by"], "handler");
    assert!(!replay.headers.contains_key("transfer-encoding"));
}

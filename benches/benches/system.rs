//! The EventBoard gateway over loopback beside a bare axum proxy (criterion
//! group `system`), both in the same run and the same runtime:
//!
//! - `system/gateway_get_event`: `GET /api/v1/events/{id}` through the whole
//!   system (`RunningSystem` on ephemeral ports, in-memory bus): the gateway's
//!   stack (correlation, deadline, user JWT, rate limit, idempotency pass,
//!   discovery, per-instance breaker, retry) and forten-client to
//!   events-service, which checks the service token and the user token again
//!   and reads the event;
//! - `system/peer_bare_proxy_events`: the same route served by an axum
//!   router that forwards with a plain hyper-util client to the same
//!   events-service, as the gateway calls it (the gateway's service token in
//!   `Authorization`, the caller's token in `x-user-token`), with no forten
//!   layer in the proxy: the peer the budget compares with, since both hops
//!   then do the same upstream work and differ only in the gateway's stack;
//! - `system/breakdown/bare_proxy_events_contract`: the bare proxy to
//!   events-service speaking the gateway's wire contract: it sends
//!   `x-correlation-id`, `traceparent` and `x-request-timeout-ms` upstream
//!   (DESIGN 4.1, 4.2) and answers `x-correlation-id`, `RateLimit` and
//!   `RateLimit-Policy` to its caller, all static values: what carrying
//!   those headers costs both ends (and events-service parsing them),
//!   without anything that makes them. The gap between it and the gateway
//!   is the gateway's implementation; the gap between it and the peer, the
//!   contract's;
//! - `system/peer_bare_proxy`: a bare proxy like the one above whose upstream
//!   is an axum handler answering the same event document from a map: no
//!   forten layer anywhere, not even in events-service (the lower bound of
//!   the whole system's cost, for the breakdown).
//!
//! Everything runs in one process, so two rules keep the comparison about the
//! proxies' own work and not about which of them happens to share machine
//! code with the rest of the process (a function that another part runs on
//! every request too is warm in the instruction cache for free):
//!
//! - every proxy, the gateway and the bare ones alike, is served by the
//!   accept loop the EventBoard services run
//!   ([`spawn_router`](forten_examples::runtime::spawn_router)), so each
//!   shares its server code with events-service equally (they used
//!   `axum::serve`, the gateway did not);
//! - the load generator's HTTP client is an instance of hyper-util's client
//!   of its own ([`LoadClient`], `Empty` bodies): it used the very type the
//!   bare proxies forward with, so their client code ran warm on the load's
//!   account, while the gateway's (forten-client's, compiled in that crate)
//!   was a second copy. Measured: the gateway's path ran 45.6k distinct
//!   instructions per request, the bare proxy's 32.5k, about 2.5k of the
//!   difference in that duplicated hyper-util code.
//!
//! Each criterion iteration is one request, sent by [`CONCURRENCY`] callers
//! at once (criterion's `iter_custom`), so the figure is throughput under
//! concurrent load on loopback: req/s = 1 / time per iteration. After the
//! criterion runs, both are measured again in alternating rounds to print
//! req/s, p50 and p99 from recorded latencies, and the ratios (DESIGN 6: the
//! gateway keeps >= 85 % of the bare proxy's req/s, the proxy to the same
//! events-service), with a breakdown line:
//! events-service called straight (its service token and the user token, as
//! the gateway sends them), i.e. the system without the gateway hop. Server and load share
//! the machine's cores: the figures are relative, not a capacity. The
//! gateway's share is also given per round (median and range), since each
//! round's pair ran close together. Each round starts one target later than
//! the one before, so every target runs in every position equally often (in
//! a fixed order the gateway always ran right after its peer);
//! `FORTEN_SYSTEM_ROUNDS` sets how many rounds (default 10, of 4,000
//! requests per target).
//!
//! The ratio depends on the machine (both paths make the same system calls,
//! so cheap loopback lowers the gateway's share); `benches/callgrind-system`
//! counts the user-space instructions per request of each path instead,
//! which do not.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forten_benches::{PROPAGATION_HEADERS, static_headers};
use forten_examples::runtime::auth::USER_TOKEN_HEADER;
use forten_examples::runtime::{names, spawn_router};
use forten_examples::system::{RunningSystem, Service, SystemConfig};
use forten_examples::walkthrough::{ApiClient, signup_and_login};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Requests in flight at once.
const CONCURRENCY: usize = 32;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The load generator's client: bodies are `Empty`, so its code is its own
/// instance of hyper-util's client, not the machine code of the bare
/// proxies' (`Full` bodies, this crate), which would then run warm in the
/// instruction cache on every request for free.
type LoadClient = Client<HttpConnector, Empty<Bytes>>;

fn http_client<B>() -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    spawn_router(listener, router);
    addr
}

/// The bare events handler: the stored document of an event, by id.
async fn bare_event(
    State(events): State<Arc<HashMap<String, Bytes>>>,
    Path(id): Path<String>,
) -> Response {
    match events.get(&id) {
        Some(doc) => (
            [(http::header::CONTENT_TYPE, "application/json")],
            doc.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Clone)]
struct BareProxy {
    client: HttpClient,
    upstream: SocketAddr,
    /// For events-service: the gateway's service token (`Authorization`
    /// value); the caller's bearer token then goes on in `x-user-token`.
    service_auth: Option<http::HeaderValue>,
    /// Speaks the gateway's wire contract (static header values).
    contract: bool,
}

/// The headers the gateway answers its callers with, as static values
/// (the correlation id echoed is the one sent upstream).
const CONTRACT_DOWNSTREAM: [(&str, &str); 3] = [
    PROPAGATION_HEADERS[0],
    ("ratelimit", "\"per-user\";r=9999999;t=0"),
    ("ratelimit-policy", "\"per-user\";q=10000000;w=1"),
];

/// The bare gateway route: forwards to the events handler, answers its
/// status, content type and body.
async fn bare_proxy(
    State(proxy): State<BareProxy>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
) -> Response {
    let uri = format!("http://{}/events/{id}", proxy.upstream);
    let mut request = Request::get(uri);
    if let Some(auth) = &proxy.service_auth {
        request = request.header(http::header::AUTHORIZATION, auth.clone());
        let user = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(user) = user {
            request = request.header(http::HeaderName::from_static(USER_TOKEN_HEADER), user);
        }
    }
    if proxy.contract {
        for (name, value) in static_headers(&PROPAGATION_HEADERS) {
            request = request.header(name, value);
        }
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    let Ok(response) = proxy.client.request(request).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = body.collect().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut answer = (parts.status, body.to_bytes()).into_response();
    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        answer
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, ct.clone());
    }
    if proxy.contract {
        for (name, value) in static_headers(&CONTRACT_DOWNSTREAM) {
            answer.headers_mut().insert(name, value);
        }
    }
    answer
}

/// One target: a URI and the token to send (the bare proxy ignores it).
#[derive(Clone)]
struct Target {
    client: LoadClient,
    uri: Uri,
    authorization: String,
    /// The user token, for a call straight to events-service.
    user_token: Option<String>,
}

impl Target {
    async fn get(&self) -> usize {
        let mut request = Request::get(self.uri.clone())
            .header(http::header::AUTHORIZATION, self.authorization.as_str());
        if let Some(token) = &self.user_token {
            request = request.header(USER_TOKEN_HEADER, token.as_str());
        }
        let request = request.body(Empty::new()).expect("request");
        let response = self.client.request(request).await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{}", self.uri);
        let body = response.into_body().collect().await.expect("body");
        body.to_bytes().len()
    }

    /// `n` requests by [`CONCURRENCY`] callers; each latency goes to `latencies` when given.
    async fn load(&self, n: u64, latencies: Option<&mut Vec<Duration>>) -> Duration {
        let callers = CONCURRENCY.min(n as usize).max(1);
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|i| {
                let target = self.clone();
                let share = n / callers as u64 + u64::from((i as u64) < n % callers as u64);
                tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(share as usize);
                    for _ in 0..share {
                        let t = Instant::now();
                        black_box(target.get().await);
                        samples.push(t.elapsed());
                    }
                    samples
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("caller"));
        }
        let elapsed = started.elapsed();
        if let Some(latencies) = latencies {
            latencies.extend(all);
        }
        elapsed
    }
}

struct Peers {
    gateway: Target,
    /// The bare proxy to events-service: the budget's peer.
    bare_events: Target,
    /// The bare proxy to events-service speaking the wire contract.
    bare_contract: Target,
    /// The bare proxy to a map-lookup upstream.
    bare: Target,
    /// events-service alone (no gateway hop): the breakdown line.
    direct: Target,
    _system: RunningSystem,
}

impl Peers {
    async fn start() -> Self {
        let config = SystemConfig::ephemeral().rate_limit_per_user(10_000_000, 10_000_000);
        let system = RunningSystem::start(config).await.expect("system");
        let api = ApiClient::new(&system.gateway_url(), Duration::from_secs(30)).expect("api");
        let user = signup_and_login(&api, "bench@bench.test", "member", "bench")
            .await
            .expect("signup");
        let created = api
            .post("/api/v1/events")
            .bearer(&user.token)
            .json(&serde_json::json!({"title": "Benchmark", "description": "one event, read many times"}))
            .send()
            .await
            .expect("create");
        assert_eq!(created.status, StatusCode::CREATED);
        let id = created.data()["id"].as_str().expect("id").to_owned();
        // The bare handler answers the very document the system answers.
        let doc = api
            .get(&format!("/api/v1/events/{id}"))
            .bearer(&user.token)
            .send()
            .await
            .expect("get");
        assert_eq!(doc.status, StatusCode::OK);

        let events = Arc::new(HashMap::from([(id.clone(), doc.body.clone())]));
        let upstream = serve(
            Router::new()
                .route("/events/{id}", get(bare_event))
                .with_state(events),
        )
        .await;
        let proxy = serve(
            Router::new()
                .route("/api/v1/events/{id}", get(bare_proxy))
                .with_state(BareProxy {
                    client: http_client(),
                    upstream,
                    service_auth: None,
                    contract: false,
                }),
        )
        .await;
        let authorization = format!("Bearer {}", user.token);
        let target = |base: String| Target {
            client: http_client(),
            uri: format!("{base}/api/v1/events/{id}").parse().expect("uri"),
            authorization: authorization.clone(),
            user_token: None,
        };
        // Straight to events-service, as the gateway calls it: its service
        // token in Authorization, the user's token in x-user-token.
        let service_token = system
            .keys()
            .service_auth(names::GATEWAY)
            .and_then(|a| a.token_for(names::EVENTS))
            .expect("service token");
        let events_url = system.service_url(Service::Events).expect("events url");
        let events_addr: SocketAddr = events_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("events-service address");
        let service_auth: http::HeaderValue = format!("Bearer {service_token}")
            .parse()
            .expect("service token header");
        let proxy_to_events = |contract| {
            Router::new()
                .route("/api/v1/events/{id}", get(bare_proxy))
                .with_state(BareProxy {
                    client: http_client(),
                    upstream: events_addr,
                    service_auth: Some(service_auth.clone()),
                    contract,
                })
        };
        let proxy_events = serve(proxy_to_events(false)).await;
        let proxy_contract = serve(proxy_to_events(true)).await;
        let direct = Target {
            client: http_client(),
            uri: format!("{events_url}/events/{id}").parse().expect("uri"),
            authorization: format!("Bearer {service_token}"),
            user_token: Some(user.token.clone()),
        };
        Peers {
            gateway: target(system.gateway_url()),
            bare_events: target(format!("http://{proxy_events}")),
            bare_contract: target(format!("http://{proxy_contract}")),
            bare: target(format!("http://{proxy}")),
            direct,
            _system: system,
        }
    }
}

/// CPU time the process has used (user + system), from `/proc/self/stat`
/// (clock ticks of 10 ms: measure thousands of requests at a time).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// `FORTEN_SYSTEM_ONLY`: one target alone, for a profiler.
fn load_only(rt: &Runtime, peers: &Peers, which: &str) {
    let target = match which {
        "gateway" => &peers.gateway,
        "bare_events" => &peers.bare_events,
        "bare_contract" => &peers.bare_contract,
        "bare" => &peers.bare,
        "direct" => &peers.direct,
        other => panic!(
            "FORTEN_SYSTEM_ONLY={other}: gateway, bare_events, bare_contract, bare or direct"
        ),
    };
    let n: u64 = std::env::var("FORTEN_SYSTEM_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    rt.block_on(async {
        let cpu = cpu_time();
        let elapsed = target.load(n, None).await;
        let cpu = cpu_time().saturating_sub(cpu);
        println!(
            "only/{which}: {n} requests, {:.0} req/s, CPU {:.1} us/request",
            n as f64 / elapsed.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / n as f64,
        );
    });
}

/// How many targets [`load_report`] measures.
const TARGETS: usize = 5;

/// Every target in alternating rounds of `per_round` requests: req/s, p50, p99.
fn load_report(rt: &Runtime, peers: &Peers, rounds: usize, per_round: u64) {
    let targets: [(&str, &Target); TARGETS] = [
        ("system/peer_bare_proxy_events", &peers.bare_events),
        ("system/gateway_get_event", &peers.gateway),
        ("system/peer_bare_proxy", &peers.bare),
        ("system/breakdown/events_service_direct", &peers.direct),
        (
            "system/breakdown/bare_proxy_events_contract",
            &peers.bare_contract,
        ),
    ];
    rt.block_on(async {
        let mut samples: [Vec<Duration>; TARGETS] = Default::default();
        let mut totals = [Duration::ZERO; TARGETS];
        let mut cpu = [Duration::ZERO; TARGETS];
        // The gateway's share of its peer in each round: the two ran
        // close together (back to back in four rounds of five), so the
        // VM's speed drifts less between them than across the whole run.
        let mut shares = Vec::with_capacity(rounds);
        for r in 0..rounds {
            let mut round = [Duration::ZERO; TARGETS];
            // Each round starts one target later, so every target runs in
            // every position (first after the previous round's last, right
            // after its own peer, ...) equally often.
            for k in 0..TARGETS {
                let i = (r + k) % TARGETS;
                let target = targets[i].1;
                let before = cpu_time();
                round[i] = target.load(per_round, Some(&mut samples[i])).await;
                totals[i] += round[i];
                cpu[i] += cpu_time().saturating_sub(before);
            }
            shares.push(round[0].as_secs_f64() / round[1].as_secs_f64() * 100.0);
        }
        shares.sort_by(f64::total_cmp);
        let mut rates = [0.0; TARGETS];
        for (i, (id, _)) in targets.iter().enumerate() {
            let s = &mut samples[i];
            s.sort_unstable();
            let n = s.len();
            rates[i] = n as f64 / totals[i].as_secs_f64();
            println!(
                "load/{id}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, CPU {:.0} us/request ({n} requests, {CONCURRENCY} concurrent)",
                rates[i],
                s[n / 2].as_secs_f64() * 1e3,
                s[n * 99 / 100].as_secs_f64() * 1e3,
                cpu[i].as_secs_f64() * 1e6 / n as f64,
            );
        }
        println!(
            "load/system: the gateway keeps {:.1} % of the req/s of a bare proxy to the same events-service (budget >= 85 %)",
            rates[1] / rates[0] * 100.0
        );
        println!(
            "load/system: per round of {per_round} requests: median {:.1} %, lowest {:.1} %, highest {:.1} % ({rounds} rounds)",
            shares[shares.len() / 2],
            shares[0],
            shares[shares.len() - 1],
        );
        println!(
            "load/system: and {:.1} % of a bare proxy to a map lookup (no forten anywhere; breakdown)",
            rates[1] / rates[2] * 100.0
        );
        println!(
            "load/system: and {:.1} % of a bare proxy to events-service speaking the same wire contract, which keeps {:.1} % of the peer (breakdown: the contract's share and the implementation's)",
            rates[1] / rates[4] * 100.0,
            rates[4] / rates[0] * 100.0
        );
    });
}

fn system(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let peers = rt.block_on(Peers::start());
    // Warm both pools and caches.
    rt.block_on(async {
        peers.gateway.load(2_000, None).await;
        peers.bare_events.load(2_000, None).await;
        peers.bare.load(2_000, None).await;
        peers.direct.load(2_000, None).await;
        peers.bare_contract.load(2_000, None).await;
    });
    if let Ok(which) = std::env::var("FORTEN_SYSTEM_ONLY") {
        load_only(&rt, &peers, &which);
        return;
    }

    let mut g = c.benchmark_group("system");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("peer_bare_proxy_events", |b| {
        let bare = &peers.bare_events;
        b.to_async(&rt)
            .iter_custom(|iters| async move { bare.load(iters, None).await });
    });
    g.bench_function("peer_bare_proxy", |b| {
        let bare = &peers.bare;
        b.to_async(&rt)
            .iter_custom(|iters| async move { bare.load(iters, None).await });
    });
    g.bench_function("gateway_get_event", |b| {
        let gateway = &peers.gateway;
        b.to_async(&rt)
            .iter_custom(|iters| async move { gateway.load(iters, None).await });
    });
    g.finish();

    // `cargo test --benches` (no --bench flag) runs everything once, quickly.
    if std::env::args().any(|a| a == "--bench") {
        let rounds = std::env::var("FORTEN_SYSTEM_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&r| r > 0)
            .unwrap_or(10);
        load_report(&rt, &peers, rounds, 4_000);
    } else {
        load_report(&rt, &peers, 1, 200);
    }
}

criterion_group!(benches, system);
criterion_main!(benches);

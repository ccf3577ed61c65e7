//! forten-auth: verifying a service token per request (HS256, EdDSA), and
//! the cached token mint a caller pays per outbound request.

use super::counting::bench_counted;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use forten_auth::jsonwebtoken::{self, Algorithm, DecodingKey, Validation};
use forten_auth::{KeySet, ServiceAuth, ServiceAuthLayer, SigningKey};
use forten_benches::call_ready;
use http::{HeaderValue, Request, header::AUTHORIZATION};
use tower::Layer;

use super::baseline;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
// a fixed Ed25519 PKCS#8 v1 key (benchmark only)
const ED25519_PEM: &[u8] = b"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDc/7CxpvNhlb3PA8WObS7hONrL/SR/VYoOfjRMBhX5C
-----END PRIVATE KEY-----
";

fn request(auth: &HeaderValue) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut().insert(AUTHORIZATION, auth.clone());
    req
}

macro_rules! bench_fn {
    ($g:expr, $id:expr, $body:expr) => {{
        bench_counted($g, $id, || $body);
    }};
}

pub(crate) fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
    let hs = SigningKey::hs256(SECRET).expect("key").with_kid("hs");
    let ed = SigningKey::ed25519_pem(ED25519_PEM)
        .expect("key")
        .with_kid("ed");
    let keys = KeySet::new([
        hs.verifying_key().expect("public"),
        ed.verifying_key().expect("public"),
    ]);
    let server = ServiceAuthLayer::builder("events", keys)
        .allow_callers(["orders"])
        .require_scopes(["events:read"])
        .build()
        .expect("layer");

    // the request alone (building it with its header), to read the figures against
    let probe = HeaderValue::from_static("Bearer x");
    let mut bare = baseline();
    bench_fn!(
        g,
        "service_auth_verify/baseline_with_header",
        call_ready(&mut bare, request(&probe)).ok()
    );

    for (id, key) in [
        ("service_auth_verify/hs256", hs.clone()),
        ("service_auth_verify/eddsa", ed),
    ] {
        let caller = ServiceAuth::builder("orders")
            .signing_key(key)
            .scopes(["events:read"])
            .build()
            .expect("caller");
        let header = caller.auth_header("events").expect("token");
        let mut svc = server.layer(baseline());
        assert_eq!(
            call_ready(&mut svc, request(&header)).expect("ok").status(),
            200
        );
        bench_fn!(g, id, call_ready(&mut svc, request(&header)).ok());
    }

    // peer: jsonwebtoken's own decode of the same HS256 token, no tower, no key lookup
    let caller = ServiceAuth::builder("orders")
        .signing_key(hs)
        .scopes(["events:read"])
        .build()
        .expect("caller");
    let token = caller.token_for("events").expect("token");
    let key = DecodingKey::from_secret(SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["events"]);
    validation.set_issuer(&["orders"]);
    bench_fn!(
        g,
        "peer/jsonwebtoken_decode_hs256",
        jsonwebtoken::decode::<serde_json::Value>(&*token, &key, &validation).is_ok()
    );

    bench_fn!(
        g,
        "service_auth_mint_cached",
        caller.auth_header("events").ok()
    );
}

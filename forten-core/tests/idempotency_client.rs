//! The client side: `IdempotencyKeyLayer` keys unkeyed POST/PATCH requests once.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use forten_core::idempotency::{IdempotencyKey, IdempotencyKeyLayer};

type Seen = Arc<Mutex<Vec<Option<String>>>>;
use http::{Method, Request};
use tower::{Layer, Service, ServiceExt, service_fn};

fn recorder() -> (
    Seen,
    impl tower::Service<Request<()>, Response = (), Error = Infallible> + Clone,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = service_fn(move |req: Request<()>| {
        let key = req
            .headers()
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned());
        log.lock().unwrap().push(key);
        async { Ok::<_, Infallible>(()) }
    });
    (seen, svc)
}

#[tokio::test]
async fn keys_unkeyed_posts_and_patches_only() {
    let (seen, inner) = recorder();
    let svc = IdempotencyKeyLayer::new().layer(inner);
    for method in [
        Method::POST,
        Method::PATCH,
        Method::GET,
        Method::PUT,
        Method::POST,
    ] {
        let req = Request::builder().method(method).body(()).unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].is_some() && seen[1].is_some() && seen[4].is_some());
    assert!(seen[2].is_none() && seen[3].is_none());
    assert_ne!(seen[0], seen[4], "each logical request gets its own key");
    // a generated key is a valid sf-string
    let key: IdempotencyKey = seen[0].as_deref().unwrap().parse().unwrap();
    assert_eq!(key.as_str().len(), 36);
}

#[tokio::test]
async fn keeps_the_callers_key_and_every_retry_reuses_it() {
    let (seen, inner) = recorder();
    // a retry layer *inside* the key layer resends clones of the keyed request
    let retrying = service_fn(move |req: Request<()>| {
        let mut inner = inner.clone();
        async move {
            for _ in 0..3 {
                let mut attempt = Request::new(());
                *attempt.method_mut() = req.method().clone();
                *attempt.headers_mut() = req.headers().clone();
                inner.ready().await?.call(attempt).await?;
            }
            Ok::<_, Infallible>(())
        }
    });
    let svc = IdempotencyKeyLayer::new().layer(retrying);
    svc.clone()
        .oneshot(Request::post("/x").body(()).unwrap())
        .await
        .unwrap();
    let keyed = Request::post("/x")
        .header("idempotency-key", "\"mine\"")
        .body(())
        .unwrap();
    svc.oneshot(keyed).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    assert!(seen[0].is_some());
    assert!(
        seen[..3].iter().all(|k| *k == seen[0]),
        "one key for every attempt"
    );
    assert!(seen[3..].iter().all(|k| k.as_deref() == Some("\"mine\"")));
}

#[tokio::test]
async fn methods_are_configurable() {
    let (seen, inner) = recorder();
    let svc = IdempotencyKeyLayer::methods([Method::PUT]).layer(inner);
    svc.clone()
        .oneshot(Request::put("/x").body(()).unwrap())
        .await
        .unwrap();
    svc.oneshot(Request::post("/x").body(()).unwrap())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].is_some() && seen[1].is_none());
}

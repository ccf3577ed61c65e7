//! Bulkheads: a concurrency limit that answers 503 OVERLOADED at once.
//!
//! tower already has both halves, so forten adds no type of its own:
//! [`ConcurrencyLimit`](https://docs.rs/tower/latest/tower/limit/struct.ConcurrencyLimitLayer.html)
//! bounds the requests in flight and reports not-ready when full, and
//! [`LoadShed`](https://docs.rs/tower/latest/tower/load_shed/struct.LoadShedLayer.html)
//! turns "not ready" into an immediate `Overloaded` error instead of a wait.
//! [`ErrorResponseLayer`](crate::error::ErrorResponseLayer) (or
//! [`Error::render`](crate::Error::render)) maps that error to the 503
//! OVERLOADED JSON:API document of DESIGN 4.3. Order matters: load shedding
//! must sit *outside* the limit, and the error layer outside both.
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use forten_core::error::ErrorResponseLayer;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (tx, rx) = tokio::sync::oneshot::channel::<()>();
//! let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
//! let svc = ServiceBuilder::new()
//!     .layer(ErrorResponseLayer::new()) // Err(Overloaded) -> 503 OVERLOADED
//!     .load_shed()                      // full -> fail at once
//!     .concurrency_limit(1)             // at most one in flight
//!     .service(service_fn(move |_req: http::Request<()>| {
//!         let rx = rx.clone();
//!         async move {
//!             if let Some(rx) = rx.lock().await.take() { let _ = rx.await; }
//!             Ok::<_, forten_core::BoxError>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
//!         }
//!     }));
//!
//! let mut busy = svc.clone();
//! let busy = tokio::spawn(async move { busy.ready().await.unwrap().call(http::Request::new(())).await });
//! tokio::task::yield_now().await; // the first request now holds the only permit
//! # for _ in 0..10 { tokio::task::yield_now().await; }
//! let shed = svc.clone().oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(shed.status(), 503);
//! tx.send(()).unwrap();
//! assert_eq!(busy.await.unwrap().unwrap().status(), 200);
//! # });
//! ```

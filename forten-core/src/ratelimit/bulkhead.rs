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
//! use std::sync::Arc;
//! use tokio::sync::Semaphore;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use forten_core::error::ErrorResponseLayer;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let gate = Arc::new(Semaphore::new(0)); // holds the handler until we open it
//! let handler = {
//!     let gate = gate.clone();
//!     service_fn(move |_req: http::Request<()>| {
//!         let gate = gate.clone();
//!         async move {
//!             gate.acquire().await?.forget();
//!             Ok::<_, forten_core::BoxError>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
//!         }
//!     })
//! };
//! let svc = ServiceBuilder::new()
//!     .layer(ErrorResponseLayer::new()) // Err(Overloaded) -> 503 OVERLOADED document
//!     .load_shed()                      // no permit -> fail at once, never queue
//!     .concurrency_limit(1)             // at most one request in flight
//!     .service(handler);
//!
//! let mut first = svc.clone();
//! first.ready().await.unwrap();                            // takes the only permit
//! let running = tokio::spawn(first.call(http::Request::new(())));
//! let shed = svc.clone().oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(shed.status(), 503);
//! gate.add_permits(1);
//! assert_eq!(running.await.unwrap().unwrap().status(), 200);
//! # });
//! ```

//! The accept loop: axum's router on hyper-util's server, with a graceful
//! stop (stop accepting, let every accepted connection finish its requests)
//! and a kill (drop the listener and every connection at once, as a crash
//! would). `axum::serve` has the first but not the second: its connection
//! tasks outlive the serve future.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower::Layer;

/// How a server ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stops {
    /// Stop accepting; finish what was accepted.
    pub(crate) graceful: CancellationToken,
    /// Drop everything now.
    pub(crate) kill: CancellationToken,
}

/// Serves `router` on `listener` until one of `stops` fires. Each request
/// carries the peer address as axum's `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve(listener: TcpListener, router: Router, stops: Stops) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stops.graceful.cancelled() => break,
            () = stops.kill.cancelled() => {
                connections.abort_all();
                return;
            }
        };
        while connections.try_join_next().is_some() {}
        // Around the router, not `Router::layer`: that would re-wrap every
        // route per connection and add a boxed level to every request.
        let service = axum::Extension(ConnectInfo::<SocketAddr>(peer)).layer(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let watched = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = stops.kill.cancelled() => connections.abort_all(),
    }
}

/// Serves `router` on `listener` with the accept loop every EventBoard
/// service runs (hyper-util's HTTP/1 and HTTP/2 server, the peer address as
/// axum's `ConnectInfo<SocketAddr>` in each request) in a task of its own,
/// until the task is aborted; dropping the handle leaves it serving.
///
/// For a router that is not a whole service (no registration, health or
/// graceful stop: [`RunningService`](super::RunningService) has those), such
/// as a benchmark's peer that should run on the same server code as the
/// services it is compared with.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let router = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let server = forten_examples::runtime::spawn_router(listener, router);
/// server.abort();
/// # Ok(())
/// # }
/// ```
pub fn spawn_router(listener: TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(serve(listener, router, Stops::default()))
}

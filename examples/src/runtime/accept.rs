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
use tokio::task::JoinSet;
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

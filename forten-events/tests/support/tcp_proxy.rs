//! A TCP proxy on loopback whose live connections can be cut at will: the
//! way to break a client's connection to a real server (RabbitMQ) without
//! touching the server. Shared by forten-events' fault tests and the system
//! tests (`#[path]`-included there), so there is one of it.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy from an ephemeral loopback port to `target`.
pub(crate) struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`
    /// (`"127.0.0.1:5672"`).
    pub(crate) async fn start(target: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let c2 = conns.clone();
        let target = target.to_owned();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = c2.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        })
        .abort_handle();
        Ok(Proxy {
            port,
            conns,
            accept,
        })
    }

    /// Drops every live connection (both sockets close at once); returns how
    /// many were live. New connections are accepted again right away.
    pub(crate) fn cut(&self) -> usize {
        let conns: Vec<_> = self
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        let n = conns.iter().filter(|c| !c.is_finished()).count();
        for c in conns {
            c.abort();
        }
        n
    }

    /// An AMQP URI to the broker through the proxy (guest/guest, vhost `/`,
    /// 2 s heartbeats so a dead connection is noticed quickly).
    pub(crate) fn amqp_uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f?heartbeat=2", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

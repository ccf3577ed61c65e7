//! TCP connect check.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::check::{Check, CheckResult, Probe, ProbeFuture};
use crate::report::ComponentType;

struct TcpProbe {
    address: Arc<str>,
}

impl Probe for TcpProbe {
    fn probe(&self) -> ProbeFuture {
        let address = Arc::clone(&self.address);
        Box::pin(async move {
            let start = Instant::now();
            match TcpStream::connect(&*address).await {
                Ok(_) => CheckResult::pass().with_latency(start.elapsed()),
                Err(e) => CheckResult::fail(format!("connect to {address} failed: {e}")),
            }
        })
    }
}

impl Check {
    /// Passes when a TCP connection to `address` (`host:port`) opens; observes the connect
    /// time in ms. The name is resolved on every run, so DNS changes are followed.
    ///
    /// ```
    /// use forten_health::Check;
    /// let check = Check::tcp("rabbitmq:connect", "127.0.0.1:5672");
    /// ```
    pub fn tcp(name: impl Into<String>, address: impl AsRef<str>) -> Self {
        let name = name.into();
        let probe = super::validate_address(&name, address.as_ref()).map(|address| {
            Arc::new(TcpProbe {
                address: address.into(),
            }) as Arc<dyn Probe>
        });
        Check::from_parts(name, ComponentType::Component, probe)
    }
}

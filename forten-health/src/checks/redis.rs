//! Redis PING check, spoken in RESP over a plain TCP connection (no client library).

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::check::{Check, CheckResult, Probe, ProbeFuture};
use crate::report::ComponentType;

/// The longest reply line read from the server.
const MAX_REPLY: u64 = 512;

struct RedisProbe {
    address: Arc<str>,
    /// A ready-made `AUTH` command, when a password is configured.
    auth: Option<Arc<[u8]>>,
}

fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

fn auth_command(username: Option<&str>, password: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let args: Vec<&[u8]> = match username {
        Some(user) => vec![b"AUTH", user.as_bytes(), password.as_bytes()],
        None => vec![b"AUTH", password.as_bytes()],
    };
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        bulk(&mut out, arg);
    }
    out
}

async fn read_reply<R: AsyncRead + Unpin>(reader: &mut R) -> Result<String, String> {
    let mut line = String::new();
    let mut limited = BufReader::new(reader.take(MAX_REPLY));
    limited
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading the reply failed: {e}"))?;
    if line.is_empty() {
        return Err("the server closed the connection".to_owned());
    }
    Ok(line.trim_end().to_owned())
}

async fn ping(address: &str, auth: Option<&[u8]>) -> Result<(), String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect to {address} failed: {e}"))?;
    if let Some(auth) = auth {
        stream
            .write_all(auth)
            .await
            .map_err(|e| format!("sending AUTH failed: {e}"))?;
        let reply = read_reply(&mut stream).await?;
        if reply != "+OK" {
            return Err(format!("AUTH was refused: {reply}"));
        }
    }
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .await
        .map_err(|e| format!("sending PING failed: {e}"))?;
    let reply = read_reply(&mut stream).await?;
    if reply == "+PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {reply:?}, expected +PONG"))
    }
}

impl Probe for RedisProbe {
    fn probe(&self) -> ProbeFuture {
        let address = Arc::clone(&self.address);
        let auth = self.auth.clone();
        Box::pin(async move {
            let start = Instant::now();
            match ping(&address, auth.as_deref()).await {
                Ok(()) => CheckResult::pass().with_latency(start.elapsed()),
                Err(e) => CheckResult::fail(e),
            }
        })
    }
}

impl Check {
    /// Passes when the Redis server at `address` (`host:port`) answers `PING` with `PONG`;
    /// observes the round trip in ms. Component type `datastore`. (Feature `redis`.)
    ///
    /// Spoken in RESP over a fresh TCP connection, so it needs no Redis client library.
    /// TLS (`rediss://`) is not supported: wrap your own client in [`Check::from_fn`] for that.
    ///
    /// ```
    /// use forten_health::Check;
    /// let check = Check::redis("redis:ping", "127.0.0.1:6379");
    /// ```
    pub fn redis(name: impl Into<String>, address: impl AsRef<str>) -> Self {
        Self::redis_inner(name.into(), address.as_ref(), None)
    }

    /// Like [`Check::redis`], authenticating first with `AUTH [username] password`.
    pub fn redis_with_auth(
        name: impl Into<String>,
        address: impl AsRef<str>,
        username: Option<&str>,
        password: &str,
    ) -> Self {
        let auth = auth_command(username, password);
        Self::redis_inner(name.into(), address.as_ref(), Some(auth.into()))
    }

    fn redis_inner(name: String, address: &str, auth: Option<Arc<[u8]>>) -> Self {
        let probe = super::validate_address(&name, address).map(|address| {
            Arc::new(RedisProbe {
                address: address.into(),
                auth,
            }) as Arc<dyn Probe>
        });
        Check::from_parts(name, ComponentType::Datastore, probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_encoding() {
        assert_eq!(
            auth_command(None, "pw"),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n".to_vec()
        );
        assert_eq!(
            auth_command(Some("u"), "pw"),
            b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n".to_vec()
        );
    }
}

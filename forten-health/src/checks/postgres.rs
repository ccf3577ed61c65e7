//! Postgres readiness, the way `pg_isready` asks: a startup message and the server's first reply
//! (wire protocol 3.0 over plain TCP, no client library).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::check::{Check, CheckResult, Probe, ProbeFuture};
use crate::report::ComponentType;

/// The largest first reply read (an ErrorResponse is a few hundred bytes).
const MAX_MESSAGE: usize = 8 * 1024;
/// SQLSTATE `cannot_connect_now`: starting up, shutting down, or in recovery without hot standby.
const CANNOT_CONNECT_NOW: &str = "57P03";
/// SQLSTATE `too_many_connections`.
const TOO_MANY_CONNECTIONS: &str = "53300";

struct PostgresProbe {
    address: Arc<str>,
    startup: Arc<[u8]>,
}

fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes()); // protocol 3.0
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The fields of an ErrorResponse body: (code, message).
fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let (mut code, mut message) = (None, None);
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match field {
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    (code, message)
}

/// Judges the server's first message after the startup message.
fn judge(tag: u8, body: &[u8]) -> CheckResult {
    match tag {
        // An authentication request (or AuthenticationOk): the server accepts connections.
        b'R' => CheckResult::pass(),
        b'E' => {
            let (code, message) = error_fields(body);
            let message = message.unwrap_or_else(|| "error".to_owned());
            match code.as_deref() {
                Some(CANNOT_CONNECT_NOW) => {
                    CheckResult::fail(format!("rejecting connections: {message}"))
                }
                Some(TOO_MANY_CONNECTIONS) => CheckResult::warn(message),
                // Any other error (unknown role, no such database, pg_hba rule) comes from a
                // server that is up and accepting connections, as pg_isready reports it.
                _ => CheckResult::pass(),
            }
        }
        other => CheckResult::fail(format!(
            "unexpected reply {:?}: is this a Postgres server?",
            char::from(other)
        )),
    }
}

async fn ping(address: &str, startup: &[u8]) -> Result<CheckResult, String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect to {address} failed: {e}"))?;
    stream
        .write_all(startup)
        .await
        .map_err(|e| format!("sending the startup message failed: {e}"))?;
    let mut header = [0u8; 5];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("reading the reply failed: {e}"))?;
    let [tag, len @ ..] = header;
    let len = (u32::from_be_bytes(len) as usize).saturating_sub(4);
    if len > MAX_MESSAGE {
        return Ok(CheckResult::fail(format!(
            "reply of {len} bytes: is this a Postgres server?"
        )));
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("reading the reply failed: {e}"))?;
    // Terminate ('X'), so the server does not log a lost connection; best effort.
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
    Ok(judge(tag, &body))
}

impl Probe for PostgresProbe {
    fn probe(&self) -> ProbeFuture {
        let address = Arc::clone(&self.address);
        let startup = Arc::clone(&self.startup);
        Box::pin(async move {
            let start = Instant::now();
            match ping(&address, &startup).await {
                Ok(result) => result.with_latency(start.elapsed()),
                Err(e) => CheckResult::fail(e),
            }
        })
    }
}

impl Check {
    /// Passes when the Postgres server at `address` (`host:port`) accepts connections, judged
    /// like `pg_isready`: it sends a startup message (user `postgres`, database `postgres`) and
    /// reads the first reply, without authenticating. Fails while the server is starting up,
    /// shutting down or in recovery; warns on "too many connections". Observes the round trip in
    /// ms; component type `datastore`. (Feature `postgres`.)
    ///
    /// It proves the server is up, not that your credentials work: to check your own pool, wrap
    /// it in [`Check::from_fn`]. TLS-only servers still answer (with an error), which counts as up.
    ///
    /// ```
    /// use forten_health::Check;
    /// let check = Check::postgres("postgres:ready", "127.0.0.1:5432");
    /// ```
    pub fn postgres(name: impl Into<String>, address: impl AsRef<str>) -> Self {
        Self::postgres_with_user(name, address, "postgres", "postgres")
    }

    /// Like [`Check::postgres`], naming the user and database in the startup message (what the
    /// server logs; nothing is authenticated).
    pub fn postgres_with_user(
        name: impl Into<String>,
        address: impl AsRef<str>,
        user: &str,
        database: &str,
    ) -> Self {
        let name = name.into();
        let startup: Arc<[u8]> = startup_message(user, database).into();
        let probe = super::validate_address(&name, address.as_ref()).map(|address| {
            Arc::new(PostgresProbe {
                address: address.into(),
                startup,
            }) as Arc<dyn Probe>
        });
        Check::from_parts(name, ComponentType::Datastore, probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn startup_encoding() {
        let m = startup_message("u", "d");
        assert_eq!(&m[..4], &(m.len() as u32).to_be_bytes());
        assert_eq!(&m[4..8], &[0, 3, 0, 0]);
        assert_eq!(&m[8..], b"user\0u\0database\0d\0\0");
    }

    #[test]
    fn judgement() {
        assert_eq!(judge(b'R', &[0, 0, 0, 10]).status, Status::Pass);
        let starting = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0";
        let r = judge(b'E', starting);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.output.as_deref(),
            Some("rejecting connections: the database system is starting up")
        );
        let full = b"SFATAL\0C53300\0Msorry, too many clients already\0\0";
        assert_eq!(judge(b'E', full).status, Status::Warn);
        let no_role = b"SFATAL\0C28000\0Mrole \"x\" does not exist\0\0";
        assert_eq!(judge(b'E', no_role).status, Status::Pass);
        assert_eq!(judge(b'H', b"").status, Status::Fail);
        // Truncated fields never panic.
        assert_eq!(judge(b'E', b"C57P0").status, Status::Pass);
        assert_eq!(judge(b'E', b"").status, Status::Pass);
    }

    proptest::proptest! {
        #[test]
        fn any_reply_is_judged_without_panicking(tag: u8, body: Vec<u8>) {
            let r = judge(tag, &body);
            proptest::prop_assert!(r.status == Status::Pass || r.output.is_some());
        }
    }
}

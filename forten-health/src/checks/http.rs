//! HTTP GET check and the gateway's upstream readiness check (hyper-util's legacy client).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::check::{Check, CheckResult, Probe, ProbeFuture};
use crate::error::Error;
use crate::report::{ComponentType, HealthReport, Status};

/// The most of a response body read (an upstream's health document is far smaller).
const MAX_BODY: usize = 64 * 1024;

/// How a response is judged.
#[derive(Clone, Copy)]
enum Mode {
    /// 2xx/3xx pass, anything else fails.
    Status,
    /// The body is a peer's health document: its status is the result.
    Upstream,
}

struct HttpProbe<C> {
    client: Client<C, Empty<Bytes>>,
    uri: Uri,
    mode: Mode,
    /// For upstream checks: the peer's name, used as `componentId` when its document has none.
    service: Option<Arc<str>>,
}

fn default_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build_http()
}

fn parse_uri(name: &str, url: &str, require_http: bool) -> Result<Uri, Error> {
    let invalid = |reason: String| Error::InvalidUrl {
        name: name.to_owned(),
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
    if uri.authority().is_none() {
        return Err(invalid(
            "it has no host; use an absolute URL like http://host:port/path".to_owned(),
        ));
    }
    match uri.scheme_str() {
        Some("http") => Ok(uri),
        Some("https") if !require_http => Ok(uri),
        Some("https") => Err(invalid(
            "https needs a TLS connector: build a hyper-util Client with one and use Check::http_with_client"
                .to_owned(),
        )),
        _ => Err(invalid("the scheme must be http".to_owned())),
    }
}

/// Judges a peer's health document.
fn judge_upstream(status: http::StatusCode, body: &[u8], service: Option<&str>) -> CheckResult {
    match serde_json::from_slice::<HealthReport>(body) {
        Ok(report) => {
            let mut result = match report.status {
                Status::Pass if status.is_success() => CheckResult::pass(),
                Status::Pass | Status::Warn if status.is_success() => {
                    CheckResult::warn(upstream_output(&report))
                }
                _ => CheckResult::fail(upstream_output(&report)),
            };
            result.component_id = report.service_id.or_else(|| service.map(str::to_owned));
            result
        }
        Err(_) if status.is_success() => CheckResult::pass(),
        Err(_) => CheckResult::fail(format!("HTTP {status}")),
    }
}

/// The output of a peer that is not `pass`: its own output, else its checks that are not `pass`.
fn upstream_output(report: &HealthReport) -> String {
    if let Some(output) = &report.output {
        return output.clone();
    }
    let bad: Vec<String> = report
        .checks
        .iter()
        .filter_map(|(name, observations)| {
            let worst = observations.iter().map(|o| o.status).max()?;
            (worst != Status::Pass).then(|| format!("{name} {worst}"))
        })
        .collect();
    if bad.is_empty() {
        format!("status {}", report.status)
    } else {
        bad.join(", ")
    }
}

/// Formats an error and its sources: `outer: inner: innermost`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl<C> Probe for HttpProbe<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn probe(&self) -> ProbeFuture {
        let uri = self.uri.clone();
        let response = self.client.get(uri.clone());
        let mode = self.mode;
        let service = self.service.clone();
        Box::pin(async move {
            let start = Instant::now();
            let response = match response.await {
                Ok(r) => r,
                Err(e) => {
                    return CheckResult::fail(format!("GET {uri} failed: {}", error_chain(&e)));
                }
            };
            let status = response.status();
            // Reading the body lets the connection go back to the pool.
            let body = Limited::new(response.into_body(), MAX_BODY).collect().await;
            let elapsed = start.elapsed();
            let result = match mode {
                Mode::Status if status.is_success() || status.is_redirection() => {
                    CheckResult::pass()
                }
                Mode::Status => CheckResult::fail(format!("GET {uri} answered {status}")),
                Mode::Upstream => match body {
                    Ok(body) => judge_upstream(status, &body.to_bytes(), service.as_deref()),
                    Err(e) => CheckResult::fail(format!("reading {uri} failed: {e}")),
                },
            };
            result.with_latency(elapsed)
        })
    }
}

impl Check {
    /// Passes when `GET url` answers 2xx or 3xx (redirects are not followed); observes the
    /// response time in ms. Plain `http` only; for `https` use [`Check::http_with_client`].
    /// (Feature `http-check`.)
    ///
    /// ```
    /// use forten_health::Check;
    /// let check = Check::http("payments-api:responseTime", "http://127.0.0.1:8080/ping");
    /// ```
    pub fn http(name: impl Into<String>, url: impl AsRef<str>) -> Self {
        let name = name.into();
        let probe = parse_uri(&name, url.as_ref(), true).map(|uri| {
            Arc::new(HttpProbe {
                client: default_client(),
                uri,
                mode: Mode::Status,
                service: None,
            }) as Arc<dyn Probe>
        });
        Check::from_parts(name, ComponentType::Component, probe)
    }

    /// Like [`Check::http`] with your own hyper-util client, e.g. one with a TLS connector.
    pub fn http_with_client<C>(
        name: impl Into<String>,
        client: Client<C, Empty<Bytes>>,
        url: impl AsRef<str>,
    ) -> Self
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let name = name.into();
        let probe = parse_uri(&name, url.as_ref(), false).map(|uri| {
            Arc::new(HttpProbe {
                client,
                uri,
                mode: Mode::Status,
                service: None,
            }) as Arc<dyn Probe>
        });
        Check::from_parts(name, ComponentType::Component, probe)
    }

    /// The gateway's aggregate check: polls another service's `/health/ready` and reports it as
    /// the component `<service>:ready`, with that service's own status (`pass`, `warn`, `fail`),
    /// its output (or its failing checks) and its `serviceId` as `componentId`.
    /// A body that is not a health document counts by HTTP status (2xx pass, else fail).
    ///
    /// Defaults to non-critical (a peer down degrades the gateway to `warn`, it keeps serving);
    /// call `.critical(true)` where the gateway cannot work without the peer.
    /// (Feature `http-check`.)
    ///
    /// ```
    /// use forten_health::{Check, HealthMonitor};
    /// let peers = [("auth-service", "http://127.0.0.1:3001"), ("events-service", "http://127.0.0.1:3002")];
    /// let mut builder = HealthMonitor::builder("api-gateway", "1.0.0");
    /// for (service, base) in peers {
    ///     builder = builder.check(Check::upstream(service, format!("{base}/health/ready")));
    /// }
    /// let monitor = builder.build().unwrap();
    /// # let _ = monitor;
    /// ```
    pub fn upstream(service: impl AsRef<str>, ready_url: impl AsRef<str>) -> Self {
        let service = service.as_ref();
        let name = format!("{service}:ready");
        let probe = parse_uri(&name, ready_url.as_ref(), true).map(|uri| {
            Arc::new(HttpProbe {
                client: default_client(),
                uri,
                mode: Mode::Upstream,
                service: Some(service.into()),
            }) as Arc<dyn Probe>
        });
        Check::from_parts(name, ComponentType::Component, probe).non_critical()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_uri("a", "http://127.0.0.1:1/x", true).is_ok());
        assert!(parse_uri("a", "/relative", true).is_err());
        assert!(parse_uri("a", "https://h/x", true).is_err());
        assert!(parse_uri("a", "https://h/x", false).is_ok());
        assert!(parse_uri("a", "ftp://h/x", false).is_err());
    }

    #[test]
    fn upstream_judgement() {
        let ok = http::StatusCode::OK;
        let down = http::StatusCode::SERVICE_UNAVAILABLE;
        let r = judge_upstream(ok, br#"{"status":"pass","serviceId":"auth"}"#, Some("x"));
        assert_eq!(
            (r.status, r.component_id.as_deref()),
            (Status::Pass, Some("auth"))
        );
        let r = judge_upstream(
            ok,
            br#"{"status":"warn","checks":{"redis:ping":[{"status":"warn"}]}}"#,
            Some("x"),
        );
        assert_eq!(r.status, Status::Warn);
        assert_eq!(r.output.as_deref(), Some("redis:ping warn"));
        assert_eq!(r.component_id.as_deref(), Some("x"));
        let r = judge_upstream(down, br#"{"status":"fail","output":"shutting down"}"#, None);
        assert_eq!(
            (r.status, r.output.as_deref()),
            (Status::Fail, Some("shutting down"))
        );
        assert_eq!(judge_upstream(ok, b"OK", None).status, Status::Pass);
        assert_eq!(judge_upstream(down, b"", None).status, Status::Fail);
    }

    proptest::proptest! {
        #[test]
        fn any_upstream_body_is_judged_without_panicking(code in 100u16..600, body: Vec<u8>) {
            let status = http::StatusCode::from_u16(code).unwrap();
            let r = judge_upstream(status, &body, Some("peer"));
            proptest::prop_assert!(r.status == Status::Pass || r.output.is_some());
        }
    }
}

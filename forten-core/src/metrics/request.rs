//! [`RequestMetrics`]: a request counter and duration histogram per label set,
//! with the handles kept so a request costs a read lock and a hash lookup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::{Method, StatusCode};
use metrics::{Counter, Histogram, Key, Label, SharedString};

use super::{CLIENT_REQUEST_DURATION, SERVER_REQUEST_DURATION, SERVER_REQUESTS};

/// Most label sets one [`RequestMetrics`] keeps handles for; past it each
/// request resolves its handles again (and a route function that returns
/// unbounded values shows up as a slowdown, not only as series).
const MAX_CACHED: usize = 1024;

/// The label value of a request method: the standard ones by name, any
/// other `OTHER` (methods are client-chosen: never an unbounded label).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// FNV-1a: the keys are a route label the application chose and a status
/// code, short and not attacker-controlled, so SipHash's flood resistance
/// buys nothing and costs a tenth of a request's metric time.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Cache = HashMap<(SharedString, u16), Handles, BuildHasherDefault<Fnv>>;

#[derive(Clone)]
struct Handles {
    requests: Option<Counter>,
    duration: Histogram,
}

impl Handles {
    #[inline]
    fn record(&self, seconds: f64) {
        if let Some(requests) = &self.requests {
            requests.increment(1);
        }
        self.duration.record(seconds);
    }
}

/// Records requests by `(first label, status)`: the server's
/// `forten_server_requests_total` and `forten_server_request_duration_seconds`
/// by `{route, status}`, or a client's `forten_client_request_duration_seconds`
/// by `{service, method, status}`.
///
/// Handles are resolved against the recorder in force the first time a label
/// set is seen, then reused.
pub struct RequestMetrics {
    requests: Option<&'static str>,
    duration: &'static str,
    first: &'static str,
    fixed: Vec<Label>,
    handles: RwLock<Cache>,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("duration", &self.duration)
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

impl RequestMetrics {
    /// A server's RED metrics; the first label is `route`.
    pub fn server() -> Self {
        Self::new(
            Some(SERVER_REQUESTS),
            SERVER_REQUEST_DURATION,
            "route",
            Vec::new(),
        )
    }

    /// A client's call durations to `service`; the first label is `method`.
    pub fn client(service: Arc<str>) -> Self {
        Self::new(
            None,
            CLIENT_REQUEST_DURATION,
            "method",
            vec![Label::new("service", service)],
        )
    }

    fn new(
        requests: Option<&'static str>,
        duration: &'static str,
        first: &'static str,
        fixed: Vec<Label>,
    ) -> Self {
        RequestMetrics {
            requests,
            duration,
            first,
            fixed,
            handles: RwLock::new(Cache::default()),
        }
    }

    /// Records one request labelled `first` (the route or the method) that
    /// ended with `status` (`None`: no response, labelled `error`) after `elapsed`.
    pub fn record(&self, first: SharedString, status: Option<StatusCode>, elapsed: Duration) {
        let code = status.map_or(0, |s| s.as_u16());
        let key = (first, code);
        let seconds = elapsed.as_secs_f64();
        {
            let map = self.handles.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(handles) = map.get(&key) {
                handles.record(seconds);
                return;
            }
        }
        self.resolve(key, status).record(seconds);
    }

    #[cold]
    fn resolve(&self, key: (SharedString, u16), status: Option<StatusCode>) -> Handles {
        let status: SharedString = match status {
            Some(s) => s.as_str().to_owned().into(),
            None => SharedString::const_str("error"),
        };
        let mut labels = self.fixed.clone();
        labels.push(Label::new(self.first, key.0.clone()));
        labels.push(Label::new("status", status));
        let handles = metrics::with_recorder(|recorder| {
            let metadata =
                metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
            Handles {
                requests: self.requests.map(|name| {
                    recorder.register_counter(&Key::from_parts(name, labels.clone()), &metadata)
                }),
                duration: recorder
                    .register_histogram(&Key::from_parts(self.duration, labels), &metadata),
            }
        });
        let mut map = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() < MAX_CACHED {
            map.insert(key, handles.clone());
        }
        handles
    }
}

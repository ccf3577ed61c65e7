//! Metrics: one Prometheus recorder per process and the `/metrics` route
//! every service serves (README "Metrics" lists the names).
//!
//! forten resolves its metric handles when a breaker, client or bus is
//! built, so [`install`] runs first: at the top of
//! [`RunningSystem::start`](crate::system::RunningSystem::start) and of
//! `forten-demo`'s one-service mode. The recorder is process-wide: in the
//! all-in-one demo the four services share one process, so each service's
//! `/metrics` shows the same registry (the gateway's breakers and client
//! calls, every service's server requests by `route`, the bus).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use forten_core::metrics::ServerMetricsLayer;
use metrics::SharedString;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus text exposition format's content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often the recorder's upkeep runs, scraped or not (the exporter's own
/// default): it drains the samples the histograms buffer, which otherwise
/// pile up with every request for as long as nobody scrapes `/metrics`.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The name of the thread that runs the upkeep (short enough to be whole in
/// `/proc/<pid>/task/<tid>/comm`, which keeps 15 bytes).
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

/// The buckets (seconds) of every histogram the recorder exports (forten's
/// are all durations): Prometheus's default buckets with 1 ms and 2.5 ms in
/// front, since a hop on one machine takes well under 5 ms.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process's Prometheus recorder, once; later calls return the
/// same handle. `None` when another recorder was installed first (by the
/// application embedding these services): then that recorder gets the
/// metrics and `/metrics` answers 404.
///
/// Histograms are exported with [`DURATION_BUCKETS`] (`_bucket{le=...}`
/// series), not as the exporter's default summaries: buckets add up across
/// the replicas of a service (`histogram_quantile` over their sum), a
/// summary's quantiles do not, and a sample costs a bucket count instead
/// of an insert into a rolling sketch.
///
/// Also starts the recorder's upkeep, every [`UPKEEP_INTERVAL`] on a thread
/// of its own (the recorder is the process's, not one runtime's): the
/// exporter's `install_recorder` leaves that to its caller, and without it a
/// service nobody scrapes keeps every histogram sample it ever recorded.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(start_recorder).as_ref()
}

/// [`install`]'s work, done once.
fn start_recorder() -> Option<PrometheusHandle> {
    let installed = PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder);
    let handle = match installed {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "no Prometheus recorder (another one is installed?): /metrics is off");
            return None;
        }
    };
    forten_core::metrics::describe();
    let upkeep = handle.clone();
    let started = std::thread::Builder::new()
        .name(UPKEEP_THREAD.to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "no metrics upkeep thread: histograms drain only when /metrics is scraped");
    }
    Some(handle)
}

/// `GET /metrics`: the process's metrics in Prometheus text format.
pub async fn render() -> axum::response::Response {
    match install() {
        Some(handle) => {
            // Histograms and idle series are kept tidy on scrape, as the
            // exporter's own HTTP listener would.
            handle.run_upkeep();
            ([(CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], handle.render()).into_response()
        }
        None => super::input::no_route().await.into_response(),
    }
}

/// RED metrics per route template (axum's [`MatchedPath`], `unmatched` for
/// the fallback): never the raw path, which would make one series per URL.
pub fn server_metrics() -> ServerMetricsLayer {
    ServerMetricsLayer::new().route(|parts| {
        parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| route_label(p.as_str()))
    })
}

/// Route templates seen so far, kept for the process's life: a label per
/// request then costs a lookup instead of a fresh copy of the string.
static ROUTES: RwLock<Option<HashSet<&'static str>>> = RwLock::new(None);

thread_local! {
    /// This thread's view of [`ROUTES`], by where the template's string
    /// lives (axum keeps one per route for the router's life): the
    /// per-request lookup takes no lock shared with other threads and hashes
    /// two words, not the template. A hit is checked against the template's
    /// text, so a string freed and its memory reused is a miss, not a wrong
    /// label.
    static SEEN: RefCell<HashMap<(usize, usize), &'static str, BuildHasherDefault<WordHash>>> =
        RefCell::new(HashMap::default());
}

/// A hash of [`SEEN`]'s keys (addresses and lengths, not chosen by a
/// client): a multiply per word.
#[derive(Default)]
struct WordHash(u64);

impl Hasher for WordHash {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// At most this many templates are kept (a router has a few dozen); any
/// beyond are copied per request, as before.
const MAX_ROUTES: usize = 1024;

/// The label of route template `route`.
fn route_label(route: &str) -> SharedString {
    let at = (route.as_ptr() as usize, route.len());
    let hit = SEEN.with(|seen| seen.borrow().get(&at).copied());
    if let Some(kept) = hit.filter(|kept| *kept == route) {
        return SharedString::const_str(kept);
    }
    match keep(route) {
        Some(kept) => {
            SEEN.with(|seen| {
                let mut seen = seen.borrow_mut();
                // routers built and dropped again (tests) leave stale
                // addresses: start over rather than grow without bound
                if seen.len() >= 4 * MAX_ROUTES {
                    seen.clear();
                }
                seen.insert(at, kept);
            });
            SharedString::const_str(kept)
        }
        None => route.to_owned().into(),
    }
}

/// The process's kept copy of `route`, made on first sight; `None` once
/// [`MAX_ROUTES`] are kept.
fn keep(route: &str) -> Option<&'static str> {
    let mut known = ROUTES.write().unwrap_or_else(PoisonError::into_inner);
    let set = known.get_or_insert_with(HashSet::new);
    if let Some(r) = set.get(route) {
        return Some(r);
    }
    if set.len() >= MAX_ROUTES {
        return None;
    }
    let kept: &'static str = Box::leak(route.into());
    set.insert(kept);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of this process's threads, from `/proc/self/task`.
    #[cfg(target_os = "linux")]
    fn thread_names() -> Vec<String> {
        let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    #[test]
    fn durations_are_exported_as_histograms_with_buckets() {
        let handle = install().expect("no other recorder in this test binary");
        metrics::histogram!(
            forten_core::metrics::SERVER_REQUEST_DURATION,
            "route" => "/bucket-test",
            "status" => "200"
        )
        .record(0.003);
        let text = handle.render();
        let series = |line: &str| text.lines().any(|l| l == line);
        assert!(
            series(
                r#"forten_server_request_duration_seconds_bucket{route="/bucket-test",status="200",le="0.0025"} 0"#
            ) && series(
                r#"forten_server_request_duration_seconds_bucket{route="/bucket-test",status="200",le="0.005"} 1"#
            ) && series(
                r#"forten_server_request_duration_seconds_count{route="/bucket-test",status="200"} 1"#
            ),
            "a 3 ms sample in the 5 ms bucket, not the 2.5 ms one:\n{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn installing_the_recorder_starts_one_upkeep_thread() {
        assert!(install().is_some(), "no other recorder in this test binary");
        assert!(
            install().is_some(),
            "a second install returns the same handle"
        );
        // The thread names itself once it runs: wait for that, bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let upkeep = loop {
            let names = thread_names();
            let upkeep = names.iter().filter(|n| *n == UPKEEP_THREAD).count();
            if upkeep > 0 || std::time::Instant::now() > deadline {
                break upkeep;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(upkeep, 1, "one upkeep thread: {:?}", thread_names());
    }

    #[test]
    fn a_route_label_is_kept_once_and_reused() {
        let a = route_label("/events/{id}/approve");
        let b = route_label(&String::from("/events/{id}/approve"));
        assert_eq!(a, b);
        assert_eq!(&*a, "/events/{id}/approve");
        let set = ROUTES.read().unwrap();
        let kept = set.as_ref().unwrap().get("/events/{id}/approve").unwrap();
        assert!(
            std::ptr::eq(kept.as_ptr(), (*b).as_ptr()),
            "the same kept copy"
        );
    }

    #[test]
    fn another_template_at_a_reused_address_gets_its_own_label() {
        let mut route = String::from("/first/{id}");
        assert_eq!(&*route_label(&route), "/first/{id}");
        // same buffer, same length, other text: what a freed and reused
        // string looks like to the by-address lookup
        route.replace_range(.., "/other/{id}");
        assert_eq!(&*route_label(&route), "/other/{id}");
        assert_eq!(&*route_label("/first/{id}"), "/first/{id}");
    }
}

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
use std::collections::HashSet;
use std::sync::{OnceLock, PoisonError, RwLock};

use axum::extract::MatchedPath;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use forten_core::metrics::ServerMetricsLayer;
use metrics::SharedString;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus text exposition format's content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder, once; later calls return the
/// same handle. `None` when another recorder was installed first (by the
/// application embedding these services): then that recorder gets the
/// metrics and `/metrics` answers 404.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                forten_core::metrics::describe();
                Some(handle)
            }
            Err(error) => {
                tracing::warn!(%error, "a metrics recorder is already installed: /metrics is off");
                None
            }
        })
        .as_ref()
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
    /// This thread's view of [`ROUTES`]: the per-request lookup takes no
    /// lock shared with other threads.
    static SEEN: RefCell<HashSet<&'static str>> = RefCell::new(HashSet::new());
}

/// At most this many templates are kept (a router has a few dozen); any
/// beyond are copied per request, as before.
const MAX_ROUTES: usize = 1024;

/// The label of route template `route`.
fn route_label(route: &str) -> SharedString {
    if let Some(kept) = SEEN.with(|seen| seen.borrow().get(route).copied()) {
        return SharedString::const_str(kept);
    }
    match keep(route) {
        Some(kept) => {
            SEEN.with(|seen| seen.borrow_mut().insert(kept));
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
}

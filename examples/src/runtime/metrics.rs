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

use std::sync::OnceLock;

use axum::extract::MatchedPath;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use forten_core::metrics::ServerMetricsLayer;
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
            .map(|p| p.as_str().to_owned().into())
    })
}

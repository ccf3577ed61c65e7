//! Every log line inside a request carries the correlation id.
//!
//! Alone in its own test binary on purpose: tracing caches each callsite's
//! interest process-wide, and a test on another thread hitting the same
//! callsites with no subscriber while this one installs its thread-scoped
//! subscriber can cache them as disabled.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};

use forten_core::correlation::CorrelationLayer;
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_log_line_inside_a_request_carries_the_correlation_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let handler = service_fn(|_req: Request<()>| async {
        tracing::info!("handling the order");
        tokio::task::yield_now().await;
        tracing::warn!("still handling it");
        Ok::<_, Infallible>(Response::new(()))
    });
    let svc = CorrelationLayer::new().layer(handler);
    let req = Request::builder()
        .header("x-correlation-id", "log-me-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("handling")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in lines {
        assert!(line.contains("correlation_id=log-me-1"), "{line}");
        assert!(
            line.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
            "{line}"
        );
    }
}

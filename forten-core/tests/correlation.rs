//! W3C Trace Context and correlation-id behaviour of the correlation layers.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use forten_core::correlation::{
    CorrelationContext, CorrelationLayer, PropagateCorrelationLayer, TraceParent, TraceState,
};
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Runs one request through `CorrelationLayer` and returns the context the
/// handler saw (task-local and extension agree) and the response.
async fn handle(req: Request<()>) -> (CorrelationContext, Response<()>) {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let handler = service_fn(move |req: Request<()>| {
        let s = s.clone();
        async move {
            let current = CorrelationContext::current().expect("task-local set");
            assert_eq!(req.extensions().get::<CorrelationContext>(), Some(&current));
            *s.lock().unwrap() = Some(current);
            Ok::<_, Infallible>(Response::new(()))
        }
    });
    let res = CorrelationLayer::new()
        .layer(handler)
        .oneshot(req)
        .await
        .unwrap();
    let ctx = seen.lock().unwrap().take().expect("handler ran");
    (ctx, res)
}

fn req(headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

#[tokio::test]
async fn valid_traceparent_and_tracestate_are_kept() {
    let (ctx, _) = handle(req(&[
        ("traceparent", TP),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ]))
    .await;
    assert_eq!(ctx.trace_parent().to_string(), TP);
    assert_eq!(
        ctx.trace_state().map(ToString::to_string).as_deref(),
        Some("rojo=00f067aa0ba902b7")
    );
}

async fn restarts(traceparent: &str) {
    let (ctx, _) = handle(req(&[
        ("traceparent", traceparent),
        ("tracestate", "rojo=1"),
    ]))
    .await;
    assert_ne!(
        ctx.trace_parent().trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "{traceparent:?} must start a new trace"
    );
    assert!(
        ctx.trace_state().is_none(),
        "tracestate must be dropped with an invalid {traceparent:?}"
    );
}

#[tokio::test]
async fn invalid_versions_restart_the_trace() {
    restarts("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").await;
    restarts("0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").await;
    restarts("000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").await;
    restarts("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").await;
    restarts("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").await;
    // version 00 allows nothing after the flags
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").await;
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010").await;
}

#[tokio::test]
async fn higher_versions_are_parsed_from_their_first_55_characters() {
    let future =
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like";
    let (ctx, _) = handle(req(&[("traceparent", future)])).await;
    assert_eq!(
        ctx.trace_parent().to_string(),
        TP,
        "re-emitted as version 00"
    );
    let exact = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        handle(req(&[("traceparent", exact)]))
            .await
            .0
            .trace_parent()
            .to_string(),
        TP
    );
    // a higher version must still have '-' after the flags when longer
    restarts(
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like",
    )
    .await;
}

#[tokio::test]
async fn zero_ids_restart_the_trace() {
    restarts("00-00000000000000000000000000000000-00f067aa0ba902b7-01").await;
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").await;
}

#[tokio::test]
async fn bad_lengths_and_characters_restart_the_trace() {
    restarts("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01").await; // trace-id 31
    restarts("00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01").await; // trace-id 33
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01").await; // parent 15
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01").await; // parent 17
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1").await; // flags 1 char
    restarts("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01").await; // non-hex
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01").await;
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x").await;
    restarts("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01").await; // separators
    restarts("").await;
}

#[tokio::test]
async fn uppercase_hex_restarts_the_trace() {
    restarts("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").await;
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01").await;
    restarts("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A").await;
}

#[tokio::test]
async fn flags_are_propagated_unchanged() {
    for flags in ["00", "01", "02", "03", "ff", "09"] {
        let tp = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
        let (ctx, _) = handle(req(&[("traceparent", &tp)])).await;
        assert_eq!(format!("{:02x}", ctx.trace_parent().flags().bits()), flags);
        assert_eq!(
            ctx.child().trace_parent().flags(),
            ctx.trace_parent().flags()
        );
    }
    let parsed: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        .parse()
        .unwrap();
    assert!(parsed.flags().sampled() && parsed.flags().random());
}

#[tokio::test]
async fn surrounding_whitespace_is_ignored_inner_whitespace_is_not() {
    let (ctx, _) = handle(req(&[("traceparent", &format!(" \t{TP}\t "))])).await;
    assert_eq!(ctx.trace_parent().to_string(), TP);
    restarts("00- 4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").await;
    let (ctx, _) = handle(req(&[
        ("traceparent", TP),
        ("tracestate", " rojo=1 ,\tcongo=2 ,, "),
    ]))
    .await;
    assert_eq!(
        ctx.trace_state().map(TraceState::as_str),
        Some("rojo=1,congo=2")
    );
}

#[tokio::test]
async fn duplicate_traceparent_headers_restart_the_trace() {
    let (ctx, _) = handle(req(&[("traceparent", TP), ("traceparent", TP)])).await;
    assert_ne!(ctx.trace_parent().to_string(), TP);
    assert!(ctx.trace_state().is_none());
}

#[tokio::test]
async fn several_tracestate_lines_are_joined() {
    let (ctx, _) = handle(req(&[
        ("traceparent", TP),
        ("tracestate", "a=1"),
        ("tracestate", "b=2"),
    ]))
    .await;
    assert_eq!(ctx.trace_state().map(TraceState::as_str), Some("a=1,b=2"));
}

#[tokio::test]
async fn tracestate_limits_and_invalid_members_drop_it_whole() {
    let members = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (ctx, _) = handle(req(&[("traceparent", TP), ("tracestate", &members(32))])).await;
    assert_eq!(ctx.trace_state().map(TraceState::len), Some(32));
    let (ctx, _) = handle(req(&[("traceparent", TP), ("tracestate", &members(33))])).await;
    assert!(ctx.trace_state().is_none(), "33 members");
    assert_eq!(
        ctx.trace_parent().to_string(),
        TP,
        "an invalid tracestate keeps the traceparent"
    );

    let long_key = format!("a{}", "b".repeat(255));
    let too_long_key = format!("a{}", "b".repeat(256));
    let long_value = "v".repeat(256);
    let too_long_value = "v".repeat(257);
    assert!(TraceState::parse(&format!("{long_key}=1")).is_ok());
    assert!(TraceState::parse(&format!("{too_long_key}=1")).is_err());
    assert!(TraceState::parse(&format!("k={long_value}")).is_ok());
    assert!(TraceState::parse(&format!("k={too_long_value}")).is_err());
    assert!(TraceState::parse("tenant@system=1").is_ok());
    assert!(TraceState::parse("1tenant@sys=1").is_ok());

    for bad in [
        "rojo=1,Upper=2",           // uppercase key
        "rojo=1,congo",             // no '='
        "rojo=1,=2",                // empty key
        "rojo=1,congo=",            // empty value
        "rojo=1,congo=a=b",         // '=' in value
        "rojo=1,rojo=2",            // duplicate key
        "1simple=1",                // simple key must start with a letter
        "tenant@1system=1",         // system id must start with a letter
        "tenant@systemistoolong=1", // system id over 14
        "k=caf\u{e9}",              // non-ASCII value
        "k=a\tb",                   // control character in value
    ] {
        let (ctx, _) = handle(req(&[("traceparent", TP), ("tracestate", bad)])).await;
        assert!(
            ctx.trace_state().is_none(),
            "{bad:?} must drop the tracestate"
        );
    }
}

#[tokio::test]
async fn correlation_id_is_taken_validated_generated_and_echoed() {
    let (ctx, res) = handle(req(&[("x-correlation-id", "abc-123")])).await;
    assert_eq!(ctx.correlation_id().as_str(), "abc-123");
    assert_eq!(res.headers()["x-correlation-id"], "abc-123");

    let (ctx, res) = handle(req(&[("x-request-id", "from-request-id")])).await;
    assert_eq!(ctx.correlation_id().as_str(), "from-request-id");
    assert_eq!(res.headers()["x-correlation-id"], "from-request-id");

    let (ctx, _) = handle(req(&[
        ("x-correlation-id", "winner"),
        ("x-request-id", "loser"),
    ]))
    .await;
    assert_eq!(ctx.correlation_id().as_str(), "winner");

    let too_long = "x".repeat(129);
    for bad in ["has space", too_long.as_str(), ""] {
        let (ctx, res) = handle(req(&[("x-correlation-id", bad)])).await;
        let id = ctx.correlation_id().as_str();
        assert_ne!(id, bad);
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "generated id {id} is a UUID"
        );
        assert_eq!(id, id.to_lowercase());
        assert_eq!(res.headers()["x-correlation-id"], id);
    }
    let max = "y".repeat(128);
    assert_eq!(
        handle(req(&[("x-correlation-id", &max)]))
            .await
            .0
            .correlation_id()
            .as_str(),
        max
    );
}

#[tokio::test]
async fn missing_headers_start_a_new_trace_and_id() {
    let (a, res) = handle(req(&[])).await;
    let (b, _) = handle(req(&[])).await;
    assert_ne!(a.correlation_id(), b.correlation_id());
    assert_ne!(a.trace_parent().trace_id(), b.trace_parent().trace_id());
    assert!(
        a.trace_parent().flags().random(),
        "a generated trace id is marked random"
    );
    assert!(res.headers().contains_key("x-correlation-id"));
}

/// Service `n` of a chain: records the context it saw, then calls the next
/// through `PropagateCorrelationLayer`.
#[tokio::test]
async fn three_hops_keep_one_trace_id_with_three_distinct_parent_ids() {
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let record = |seen: Arc<Mutex<Vec<(String, String, String)>>>, req: &Request<()>| {
        let ctx = CorrelationContext::current().expect("inside the layer");
        assert_eq!(
            req.headers()["traceparent"].to_str().unwrap(),
            ctx.trace_parent().to_string()
        );
        seen.lock().unwrap().push((
            ctx.correlation_id().to_string(),
            ctx.trace_parent().trace_id().to_string(),
            ctx.trace_parent().parent_id().to_string(),
        ));
    };
    let s3 = seen.clone();
    let hop3 = CorrelationLayer::new().layer(service_fn(move |req: Request<()>| {
        record(s3.clone(), &req);
        async { Ok::<_, Infallible>(Response::new(())) }
    }));
    let s2 = seen.clone();
    let hop2 = CorrelationLayer::new().layer(service_fn(move |req: Request<()>| {
        record(s2.clone(), &req);
        let next = PropagateCorrelationLayer::new().layer(hop3.clone());
        async move { next.oneshot(Request::new(())).await }
    }));
    let s1 = seen.clone();
    let hop1 = CorrelationLayer::new().layer(service_fn(move |req: Request<()>| {
        record(s1.clone(), &req);
        let next = PropagateCorrelationLayer::new().layer(hop2.clone());
        async move { next.oneshot(Request::new(())).await }
    }));
    hop1.oneshot(req(&[("traceparent", TP), ("x-correlation-id", "chain-1")]))
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (id, trace, _) in &seen {
        assert_eq!(id, "chain-1");
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    let mut parents: Vec<_> = seen.iter().map(|(_, _, p)| p.clone()).collect();
    assert_eq!(parents[0], "00f067aa0ba902b7");
    parents.sort();
    parents.dedup();
    assert_eq!(parents.len(), 3, "each hop has its own parent id");
}

#[tokio::test]
async fn propagation_outside_any_context_starts_one_and_passes_tracestate_on() {
    let upstream =
        service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(req.headers().clone()) });
    let client = PropagateCorrelationLayer::new().layer(upstream);
    let headers = client.clone().oneshot(Request::new(())).await.unwrap();
    assert!(headers.contains_key("x-correlation-id"));
    assert!(TraceParent::parse(headers["traceparent"].to_str().unwrap()).is_ok());
    assert!(!headers.contains_key("tracestate"));

    let ctx = CorrelationContext::from_values(Some("c-1"), Some(TP), Some("rojo=1"));
    let headers = ctx.scope(client.oneshot(Request::new(()))).await.unwrap();
    assert_eq!(headers["x-correlation-id"], "c-1");
    assert_eq!(headers["tracestate"], "rojo=1");
    let sent = TraceParent::parse(headers["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(
        sent.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_ne!(sent.parent_id().to_string(), "00f067aa0ba902b7");
}

#[test]
fn from_values_generates_what_is_missing_or_invalid() {
    let ctx = CorrelationContext::from_values(None, Some("garbage"), Some("rojo=1"));
    assert!(uuid::Uuid::parse_str(ctx.correlation_id().as_str()).is_ok());
    assert!(ctx.trace_state().is_none());
    let ctx = CorrelationContext::from_values(Some("id"), Some(TP), Some("BAD"));
    assert_eq!(ctx.trace_parent().to_string(), TP);
    assert!(ctx.trace_state().is_none());
}

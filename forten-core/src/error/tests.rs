use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;

use super::*;

async fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).expect("error body is JSON")
}

#[test]
fn every_row_of_the_table_maps_to_its_status_and_code() {
    let cases: Vec<(Error, u16, &str)> = vec![
        (Error::Timeout { after: None }, 504, "TIMEOUT"),
        (
            Error::CircuitOpen {
                name: "x".into(),
                retry_after: Duration::from_secs(1),
            },
            503,
            "CIRCUIT_OPEN",
        ),
        (
            Error::UpstreamUnavailable {
                detail: "down".into(),
            },
            502,
            "UPSTREAM_UNAVAILABLE",
        ),
        (
            Error::RetriesExhausted {
                attempts: 3,
                source: "connection refused".into(),
            },
            502,
            "UPSTREAM_UNAVAILABLE",
        ),
        (
            Error::RetriesExhausted {
                attempts: 3,
                source: Box::new(Error::Timeout { after: None }),
            },
            504,
            "TIMEOUT",
        ),
        (
            Error::RateLimited { retry_after: None },
            429,
            "RATE_LIMITED",
        ),
        (
            Error::Overloaded {
                detail: "full".into(),
            },
            503,
            "OVERLOADED",
        ),
        (
            Error::Unauthenticated {
                detail: "no token".into(),
            },
            401,
            "UNAUTHENTICATED",
        ),
        (
            Error::Forbidden {
                detail: "no".into(),
            },
            403,
            "FORBIDDEN",
        ),
        (
            Error::BadRequest {
                detail: "bad".into(),
                pointer: None,
            },
            400,
            "VALIDATION_ERROR",
        ),
        (
            Error::Validation {
                detail: "bad".into(),
                pointer: None,
            },
            422,
            "VALIDATION_ERROR",
        ),
        (
            Error::PayloadTooLarge { limit: 10 },
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (Error::NotFound { detail: "x".into() }, 404, "NOT_FOUND"),
        (Error::Conflict { detail: "x".into() }, 409, "CONFLICT"),
        (Error::IdempotencyKeyMissing, 400, "IDEMPOTENCY_KEY_MISSING"),
        (Error::IdempotencyConflict, 409, "IDEMPOTENCY_CONFLICT"),
        (Error::IdempotencyKeyReused, 422, "IDEMPOTENCY_KEY_REUSED"),
    ];
    for (err, status, code) in cases {
        assert_eq!(err.status().as_u16(), status, "{err:?}");
        assert_eq!(err.code(), code, "{err:?}");
        let doc = err.to_document(Some("rid"));
        assert_eq!(doc.errors.len(), 1);
        assert_eq!(doc.errors[0].status, status.to_string());
        assert_eq!(doc.status().as_u16(), status);
    }
}

#[tokio::test]
async fn circuit_open_document_matches_the_design_example() {
    let err = Error::CircuitOpen {
        name: "events-service".into(),
        retry_after: Duration::from_millis(11_200),
    };
    let response = err.to_response(Some("corr-1"));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["content-type"], JSON_API_CONTENT_TYPE);
    assert_eq!(
        response.headers()["retry-after"],
        "12",
        "rounded up to whole seconds"
    );
    let json = body_json(response).await;
    let e = &json["errors"][0];
    assert_eq!(e["status"], "503");
    assert_eq!(e["code"], "CIRCUIT_OPEN");
    assert_eq!(e["title"], "Service unavailable");
    assert_eq!(
        e["detail"],
        "circuit for events-service is open; retry after 12s"
    );
    assert_eq!(e["meta"]["requestId"], "corr-1");
    assert!(uuid::Uuid::parse_str(e["id"].as_str().unwrap_or_default()).is_ok());
    let ts = e["meta"]["timestamp"].as_str().unwrap_or_default();
    assert!(
        humantime::parse_rfc3339(ts).is_ok(),
        "timestamp {ts} is RFC 3339"
    );
    assert!(ts.ends_with('Z'));
}

#[tokio::test]
async fn unauthenticated_carries_www_authenticate_and_validation_a_pointer() {
    let r = Error::Unauthenticated {
        detail: "expired".into(),
    }
    .to_response(None);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let json = body_json(r).await;
    assert!(json["errors"][0]["meta"].get("requestId").is_none());

    let r = Error::Validation {
        detail: "title is empty".into(),
        pointer: Some("/title".into()),
    }
    .to_response(None);
    let json = body_json(r).await;
    assert_eq!(json["errors"][0]["source"]["pointer"], "/title");
}

#[test]
fn rate_limited_sets_retry_after_only_when_known() {
    let r = Error::RateLimited {
        retry_after: Some(Duration::from_secs(3)),
    }
    .to_response(None);
    assert_eq!(r.headers()["retry-after"], "3");
    let r = Error::RateLimited { retry_after: None }.to_response(None);
    assert!(r.headers().get("retry-after").is_none());
}

#[test]
fn find_walks_the_source_chain() {
    #[derive(Debug)]
    struct Wrapper(Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let boxed: BoxError = Box::new(Wrapper(Error::IdempotencyKeyReused));
    assert!(matches!(
        Error::find(boxed.as_ref()),
        Some(Error::IdempotencyKeyReused)
    ));
    let plain: BoxError = "io".into();
    assert!(Error::find(plain.as_ref()).is_none());
}

#[tokio::test]
async fn unknown_errors_render_as_500_without_the_internal_message() {
    let secret: BoxError = "password=hunter2 in connection string".into();
    let r = Error::render(secret.as_ref(), Some("rid-9"));
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let json = body_json(r).await;
    let text = json.to_string();
    assert!(!text.contains("hunter2"), "internal message leaked: {text}");
    assert_eq!(json["errors"][0]["code"], "INTERNAL");
    assert_eq!(json["errors"][0]["meta"]["requestId"], "rid-9");
}

#[tokio::test]
async fn tower_timeout_and_load_shed_errors_are_recognised() {
    let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
    assert_eq!(
        Error::render(elapsed.as_ref(), None).status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    let shed: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
    let r = Error::render(shed.as_ref(), None);
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_json(r).await["errors"][0]["code"], "OVERLOADED");
}

#[test]
fn documents_round_trip_through_json() {
    let doc = Error::Conflict {
        detail: "already approved".into(),
    }
    .to_document(Some("r"));
    let parsed = ErrorDocument::from_slice(&doc.to_bytes()).expect("parses");
    assert_eq!(parsed, doc);
}

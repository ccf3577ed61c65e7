//! The foundation layers together: errors carry the correlation id as
//! `meta.requestId`, deadlines become 504 documents.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::time::Duration;

use forten_core::correlation::CorrelationLayer;
use forten_core::deadline::DeadlineLayer;
use forten_core::error::{ErrorDocument, ErrorResponseLayer, JSON_API_CONTENT_TYPE};
use forten_core::{BoxError, Error};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

async fn document<B>(res: Response<B>) -> (StatusCode, ErrorDocument)
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Debug,
{
    let status = res.status();
    assert_eq!(res.headers()["content-type"], JSON_API_CONTENT_TYPE);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, ErrorDocument::from_slice(&bytes).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_is_a_504_document_with_the_request_id() {
    let handler = service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    });
    let svc = ServiceBuilder::new()
        .layer(CorrelationLayer::new())
        .layer(ErrorResponseLayer::new())
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .service(handler);
    let req = Request::builder()
        .header("x-correlation-id", "slow-1")
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-correlation-id"], "slow-1");
    let (status, doc) = document(res).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(doc.errors[0].code, "TIMEOUT");
    assert_eq!(doc.errors[0].meta.request_id.as_deref(), Some("slow-1"));
}

#[tokio::test(start_paused = true)]
async fn the_request_id_comes_from_the_task_when_nothing_is_in_extensions() {
    let handler = service_fn(|req: Request<()>| async move {
        assert!(
            req.extensions().is_empty(),
            "no context copied into the request"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    });
    let svc = ServiceBuilder::new()
        .layer(CorrelationLayer::new().request_extension(false))
        .layer(ErrorResponseLayer::new())
        .layer(DeadlineLayer::new(Duration::from_secs(1)).request_extension(false))
        .service(handler);
    let req = Request::builder()
        .header("x-correlation-id", "task-1")
        .body(())
        .unwrap();
    let (status, doc) = document(svc.oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(doc.errors[0].meta.request_id.as_deref(), Some("task-1"));
}

#[tokio::test]
async fn handler_errors_become_documents_and_successes_pass_through() {
    let handler = service_fn(|req: Request<()>| async move {
        if req.uri().path() == "/forbidden" {
            return Err::<Response<http_body_util::Full<bytes::Bytes>>, BoxError>(
                Error::Forbidden {
                    detail: "needs events:approve".into(),
                }
                .into(),
            );
        }
        Ok(Response::new(http_body_util::Full::from("ok")))
    });
    let svc = ServiceBuilder::new()
        .layer(CorrelationLayer::new())
        .layer(ErrorResponseLayer::new())
        .service(handler);

    let res = svc
        .clone()
        .oneshot(Request::get("/forbidden").body(()).unwrap())
        .await
        .unwrap();
    let id = res.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, doc) = document(res).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(doc.errors[0].detail, "forbidden: needs events:approve");
    assert_eq!(doc.errors[0].meta.request_id.as_deref(), Some(id.as_str()));

    let res = svc
        .oneshot(Request::get("/fine").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test]
async fn a_readiness_failure_is_answered_without_calling_the_service() {
    #[derive(Clone)]
    struct Broken;
    impl tower::Service<Request<()>> for Broken {
        type Response = Response<http_body_util::Empty<bytes::Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            std::task::Poll::Ready(Err(Error::Overloaded {
                detail: "pool exhausted".into(),
            }
            .into()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            panic!("called although not ready")
        }
    }
    let res = ErrorResponseLayer::new()
        .layer(Broken)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    let (status, doc) = document(res).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc.errors[0].code, "OVERLOADED");
}

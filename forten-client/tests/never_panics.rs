//! Building clients and requests from arbitrary input never panics.
#![allow(clippy::unwrap_used)]

use forten_client::ServiceClient;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_base_url_builds_or_is_refused(url in any::<String>(), name in any::<String>()) {
        let _ = ServiceClient::builder(name).base_url(url).build();
    }

    #[test]
    fn any_path_query_and_header_builds_or_is_refused(
        path in any::<String>(),
        key in any::<String>(),
        value in any::<String>(),
        header in any::<String>(),
    ) {
        let client = ServiceClient::builder("events")
            .base_url("http://127.0.0.1:9/api")
            .build()
            .unwrap();
        let built = client
            .get(&path)
            .query(&[(key.as_str(), value.as_str())])
            .header(header.as_str(), value.as_str())
            .build();
        if let Ok((_, req)) = built {
            prop_assert!(req.uri().path().starts_with('/'));
        }
    }
}

#[tokio::test]
async fn a_per_request_timeout_shortens_the_budget_sent() {
    use std::time::Duration;
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
    let upstream = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let client = ServiceClient::builder("events")
        .base_url(upstream.uri())
        .build()
        .unwrap();
    client
        .get("/x")
        .timeout(Duration::from_millis(800))
        .send()
        .await
        .unwrap();
    let sent: u64 = upstream.received_requests().await.unwrap()[0].headers["x-request-timeout-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent <= 800 && sent > 0, "{sent}");
}

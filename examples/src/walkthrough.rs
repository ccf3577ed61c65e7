//! The scripted walkthrough `forten-demo` runs against a gateway.
//!
//! PLACEHOLDER: the e2e helper writes the real walkthrough (signup, login,
//! events and their workflow, notifications, a service stopped and the
//! dashboard degrading). Until it is merged this only checks the gateway's
//! `/health` and prints one line.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What went wrong in the walkthrough.
pub type WalkthroughError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Runs the walkthrough against the gateway at `gateway_url`.
pub async fn run(gateway_url: &str) -> Result<(), WalkthroughError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("{}/health", gateway_url.trim_end_matches('/')).parse()?;
    let response = client.get(uri).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "walkthrough (placeholder): GET {gateway_url}/health -> {status}, status {}",
        health["status"]
    );
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the gateway's /health answered {status}").into())
    }
}

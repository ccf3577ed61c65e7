//! Support for the end-to-end tests of EventBoard (the tests are in `tests/`).
//!
//! Every test starts the whole system in-process on ephemeral ports
//! ([`start`]) and drives it over real HTTP with the walkthrough's plain
//! client ([`ApiClient`]: no retries, so what the gateway answers is what a
//! test sees). Waits poll their condition with a bound ([`WAIT`]); nothing
//! sleeps and hopes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use forten_auth::jsonwebtoken::{Algorithm, EncodingKey, Header};
use forten_examples::system::{RunningSystem, SystemConfig};
pub use forten_examples::walkthrough::{
    ApiClient, ApiResponse, User, WalkthroughError, degraded, poll_until, signup_and_login,
    wait_for_notification,
};
use serde_json::{Value, json};

/// The bound of every wait on a condition, and of each request. Generous:
/// the machine running the tests may be loaded; a passing test never waits
/// for it, only a failing one does.
pub const WAIT: Duration = Duration::from_secs(20);

/// A name unique to this call: `prefix-<12 hex digits>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Starts the system with `config` and returns it with a client for its gateway.
pub async fn start(config: SystemConfig) -> (RunningSystem, ApiClient) {
    let system = RunningSystem::start(config)
        .await
        .unwrap_or_else(|e| panic!("the system did not start: {e}"));
    let api = client(&system);
    (system, api)
}

/// A client for `system`'s gateway.
pub fn client(system: &RunningSystem) -> ApiClient {
    ApiClient::new(&system.gateway_url(), WAIT)
        .unwrap_or_else(|e| panic!("gateway URL {}: {e}", system.gateway_url()))
}

/// An organization of this test run, with helpers to sign its people up.
#[derive(Debug, Clone)]
pub struct Org {
    /// Its name (unique to the test).
    pub name: String,
}

impl Org {
    /// A new organization with a unique name.
    pub fn new() -> Self {
        Self {
            name: unique("org"),
        }
    }

    /// Signs up and logs in a user with `role` ("member", "manager").
    pub async fn user(&self, api: &ApiClient, role: &str) -> User {
        let email = format!("{}@{}.test", unique(role), self.name);
        signup_and_login(api, &email, role, &self.name)
            .await
            .unwrap_or_else(|e| panic!("signup/login of {email}: {e}"))
    }

    /// A member.
    pub async fn member(&self, api: &ApiClient) -> User {
        self.user(api, "member").await
    }

    /// A manager.
    pub async fn manager(&self, api: &ApiClient) -> User {
        self.user(api, "manager").await
    }
}

impl Default for Org {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends `request` and panics with a clear message on a transport error.
pub async fn send(request: forten_examples::walkthrough::ApiRequest<'_>) -> ApiResponse {
    let what = request.describe();
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Creates an event as `user`; returns its id.
pub async fn create_event(api: &ApiClient, user: &User, title: &str) -> String {
    let r = send(
        api.post("/api/v1/events")
            .bearer(&user.token)
            .json(&json!({"title": title})),
    )
    .await;
    assert_status(&r, 201);
    r.data()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no data.id in {}", body(&r)))
        .to_owned()
}

/// The body as text, for messages.
pub fn body(r: &ApiResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Asserts the status, showing the body when it differs.
#[track_caller]
pub fn assert_status(r: &ApiResponse, status: u16) {
    assert_eq!(r.status.as_u16(), status, "body: {}", body(r));
}

/// Asserts a JSON:API error document (DESIGN 4.3) with `status` and `code`.
#[track_caller]
pub fn assert_error(r: &ApiResponse, status: u16, code: &str) {
    assert_status(r, status);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.api+json"),
        "error documents are JSON:API; body: {}",
        body(r)
    );
    let doc = r.json();
    let error = &doc["errors"][0];
    assert_eq!(error["code"], code, "body: {}", body(r));
    assert_eq!(error["status"], status.to_string(), "body: {}", body(r));
}

/// `errors[0].source.pointer` of an error document.
pub fn pointer(r: &ApiResponse) -> String {
    r.json()["errors"][0]["source"]["pointer"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The claims of a (real) token, decoded without checking anything.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Signs `claims` with HS256 and `secret`.
pub fn sign(claims: &Value, secret: &[u8]) -> String {
    forten_auth::jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_else(|e| panic!("signing test claims: {e}"))
}

/// An unsigned token (`alg: none`, empty signature) with `claims`.
pub fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

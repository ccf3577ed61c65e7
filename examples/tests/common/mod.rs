//! Helpers for the EventBoard integration tests: an HTTP client, signup and
//! login, and a bounded wait for a condition.
#![allow(dead_code, unreachable_pub)] // each test binary uses a subset

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as received.
    pub body: Bytes,
    pub json: Value,
}

impl Reply {
    /// `errors[0].code` of a JSON:API document.
    pub fn code(&self) -> &str {
        self.json["errors"][0]["code"].as_str().unwrap_or("")
    }

    /// `errors[0].source.pointer`.
    pub fn pointer(&self) -> &str {
        self.json["errors"][0]["source"]["pointer"]
            .as_str()
            .unwrap_or("")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a JSON:API error with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(
            self.header("content-type"),
            "application/vnd.api+json",
            "{}",
            self.json
        );
        assert_eq!(self.code(), code, "{}", self.json);
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    pub base: String,
}

impl Http {
    pub fn new(base: impl Into<String>) -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.into(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .expect("request");
        let res = self.client.request(req).await.expect("the server answers");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            body: bytes,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.send(Method::GET, path, &headers, None).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let bytes = body.map(|b| b.to_string());
        self.send(method, path, &headers, bytes.as_deref().map(str::as_bytes))
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }
}

/// A unique email.
pub fn email(who: &str) -> String {
    format!(
        "{who}-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Signs up (asserting 201) and logs in; returns (user, token).
pub async fn user(gw: &Http, who: &str, org: &str, role: &str) -> (Value, String) {
    let email = email(who);
    let created = gw
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": email, "password": "long enough", "name": who, "organization": org, "role": role}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json);
    let login = gw
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "long enough"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.json);
    let token = login.json["data"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    (created.json["data"].clone(), token)
}

/// Polls `check` every 25 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

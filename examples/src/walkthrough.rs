//! The scripted walkthrough of a running EventBoard system (`forten-demo walkthrough`).
//!
//! It talks to the api-gateway over plain HTTP only, like any client would,
//! and prints one line per step with what came back:
//!
//! ```text
//! [ok] signup member alice.k3x9@acme-k3x9.test -> 201
//! [ok] create event (Idempotency-Key wt-k3x9-create) -> 201, event 4f1c...
//! [ok] repeat the same create -> 201, idempotent-replayed: true, same event
//! ```
//!
//! Every step is a check: [`run`] (and [`run_with`]) returns a [`WalkthroughError`] as soon as
//! one fails (so the demo binary exits non-zero). Emails and the organization
//! carry a suffix unique to the run, so the walkthrough can run again and
//! again against the same system. Waits (a notification arriving, the
//! dashboard degrading, recovery after a restart) poll their condition with a
//! bound ([`WalkthroughOptions::wait`]); nothing sleeps and hopes.
//!
//! The stop/start steps use the demo-only controls
//! `POST /demo/services/events/{stop,start}`; a gateway that answers them
//! with 404 (not started by `forten-demo` all-in-one) gets those steps
//! reported as skipped. Around the outage it reads the gateway's
//! `/metrics` and prints how the breaker and retry counters moved.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{Value, json};

mod client;
mod metrics;
mod outage;
mod report;

pub use client::{ApiClient, ApiRequest, ApiResponse, poll_until};
pub use report::{Outcome, Report, Step, WalkthroughError};
use report::{Script, expect_status};

/// How the walkthrough runs.
#[derive(Debug, Clone)]
pub struct WalkthroughOptions {
    /// The bound of every wait on a condition (a notification arriving, the
    /// dashboard degrading, recovery after a restart), and of each request.
    pub wait: Duration,
    /// Print each step's line to stdout as it completes.
    pub print: bool,
    /// Run the steps that stop and restart events-service through the demo
    /// controls (they are skipped anyway when the gateway has no controls).
    pub outage: bool,
}

impl Default for WalkthroughOptions {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(15),
            print: true,
            outage: true,
        }
    }
}

/// A user signed up and logged in.
#[derive(Debug, Clone)]
pub struct User {
    /// Their id.
    pub id: String,
    /// Their email.
    pub email: String,
    /// Their access token.
    pub token: String,
}

/// Signs up `email` with `role` in `organization`, logs in, and returns the user.
pub async fn signup_and_login(
    api: &ApiClient,
    email: &str,
    role: &str,
    organization: &str,
) -> Result<User, WalkthroughError> {
    let mut script = Script {
        report: Report::default(),
        print: false,
    };
    signup_and_login_in(&mut script, api, email, role, organization).await
}

async fn signup_and_login_in(
    script: &mut Script,
    api: &ApiClient,
    email: &str,
    role: &str,
    organization: &str,
) -> Result<User, WalkthroughError> {
    const PASSWORD: &str = "correct horse battery";
    let name = email.split('@').next().unwrap_or(email);
    let signup = api
        .post("/api/v1/auth/signup")
        .json(&json!({"email": email, "password": PASSWORD, "name": name,
                      "organization": organization, "role": role}))
        .send()
        .await?;
    expect_status(script, &format!("signup {role} {email}"), &signup, 201)?;
    let id = signup.data()["id"].as_str().unwrap_or_default().to_owned();
    let login = api
        .post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    let token = login.data()["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let line = format!("login {email} -> {}", login.summary());
    script.check(
        login.status == StatusCode::OK && !token.is_empty() && !id.is_empty(),
        line,
        "200 with data.accessToken (and an id from signup)",
    )?;
    Ok(User {
        id,
        email: email.to_owned(),
        token,
    })
}

/// Waits until `user` has a notification of `event_type` about `subject`; returns it.
pub async fn wait_for_notification(
    api: &ApiClient,
    user: &User,
    event_type: &str,
    subject: &str,
    wait: Duration,
) -> Option<Value> {
    poll_until(wait, || async {
        let list = api
            .get("/api/v1/notifications")
            .bearer(&user.token)
            .send()
            .await?;
        let found = list.data().as_array().and_then(|all| {
            all.iter()
                .find(|n| n["eventType"] == event_type && n["subjectId"] == subject)
                .cloned()
        });
        Ok(found)
    })
    .await
}

/// `meta.degraded` of a dashboard response, as strings.
pub fn degraded(dashboard: &ApiResponse) -> Vec<String> {
    dashboard.json()["meta"]["degraded"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A suffix unique to this run (base 36 of the clock's nanoseconds).
fn run_suffix() -> String {
    let mut n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = Vec::new();
    while n > 0 {
        out.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    out.truncate(8);
    String::from_utf8(out).unwrap_or_default()
}

/// Runs the walkthrough against the gateway at `gateway_url` with the default
/// options, printing each step (what `forten-demo walkthrough` does).
pub async fn run(gateway_url: &str) -> Result<(), WalkthroughError> {
    run_with(gateway_url, &WalkthroughOptions::default())
        .await
        .map(drop)
}

/// Runs the walkthrough against the gateway at `gateway_url`; returns every step.
pub async fn run_with(
    gateway_url: &str,
    options: &WalkthroughOptions,
) -> Result<Report, WalkthroughError> {
    let api = ApiClient::new(gateway_url, options.wait)?;
    let mut script = Script {
        report: Report::default(),
        print: options.print,
    };
    let run = run_suffix();
    let org = format!("acme-{run}");
    let wait = options.wait;

    let health = api.get("/health").send().await?;
    expect_status(
        &mut script,
        &format!("gateway GET /health at {}", api.base_url()),
        &health,
        200,
    )?;

    let alice = signup_and_login_in(
        &mut script,
        &api,
        &format!("alice.{run}@{org}.test"),
        "member",
        &org,
    )
    .await?;
    let bob = signup_and_login_in(
        &mut script,
        &api,
        &format!("bob.{run}@{org}.test"),
        "manager",
        &org,
    )
    .await?;

    // Correlation: the id we send comes back, from the gateway and through it.
    let cid = format!("wt-{run}-me");
    let me = api
        .get("/api/v1/auth/me")
        .bearer(&alice.token)
        .header("x-correlation-id", cid.clone())
        .send()
        .await?;
    let echoed = me.header("x-correlation-id").unwrap_or("-").to_owned();
    script.check(
        me.status == StatusCode::OK && echoed == cid && me.data()["id"] == alice.id.as_str(),
        format!(
            "GET /api/v1/auth/me as alice, x-correlation-id {cid} -> {}, echoed {echoed}",
            me.summary()
        ),
        "200, the same user and the same x-correlation-id back",
    )?;

    let garbage = api
        .get("/api/v1/events")
        .bearer("not-a-token")
        .send()
        .await?;
    let challenge = garbage.header("www-authenticate").unwrap_or("-").to_owned();
    script.check(
        garbage.status == StatusCode::UNAUTHORIZED
            && garbage.error_code().as_deref() == Some("UNAUTHENTICATED")
            && challenge.starts_with("Bearer"),
        format!(
            "GET /api/v1/events with a garbage token -> {}, WWW-Authenticate: {challenge}",
            garbage.summary()
        ),
        "401 UNAUTHENTICATED with a Bearer challenge",
    )?;

    // Create with an Idempotency-Key, then repeat it: the stored answer is replayed.
    let key = format!("wt-{run}-create");
    let cid_create = format!("wt-{run}-create");
    let body = json!({"title": "Team offsite", "description": "two days in the mountains"});
    let create = || {
        api.post("/api/v1/events")
            .bearer(&alice.token)
            .header("idempotency-key", key.clone())
            .header("x-correlation-id", cid_create.clone())
            .json(&body)
    };
    let first = create().send().await?;
    let event_id = first.data()["id"].as_str().unwrap_or_default().to_owned();
    script.check(
        first.status == StatusCode::CREATED
            && first.data()["status"] == "draft"
            && !event_id.is_empty(),
        format!(
            "create event as alice (Idempotency-Key {key}) -> {}, event {event_id}",
            first.summary()
        ),
        "201 with a draft event",
    )?;
    let again = create().send().await?;
    let replayed = again
        .header("idempotent-replayed")
        .unwrap_or("-")
        .to_owned();
    script.check(
        again.status == StatusCode::CREATED
            && replayed == "true"
            && again.data()["id"] == event_id.as_str(),
        format!(
            "repeat the same create -> {}, idempotent-replayed: {replayed}, same event",
            again.summary()
        ),
        "201, idempotent-replayed: true and the same event id",
    )?;
    let event_path = format!("/api/v1/events/{event_id}");

    let submit = api
        .post(&format!("{event_path}/submit"))
        .bearer(&alice.token)
        .send()
        .await?;
    script.check(
        submit.status == StatusCode::OK && submit.data()["status"] == "submitted",
        format!(
            "submit as alice -> {}, status {}",
            submit.summary(),
            submit.data()["status"]
        ),
        "200, status submitted",
    )?;

    let note = wait_for_notification(&api, &bob, "event.submitted", &event_id, wait).await;
    script.check(
        note.is_some(),
        format!(
            "notification event.submitted reached bob (manager): {}",
            message(note.as_ref())
        ),
        &format!("a notification within {wait:?}"),
    )?;

    let cid_denied = format!("wt-{run}-denied");
    let denied = api
        .post(&format!("{event_path}/approve"))
        .bearer(&alice.token)
        .header("x-correlation-id", cid_denied.clone())
        .send()
        .await?;
    let request_id = denied.json()["errors"][0]["meta"]["requestId"]
        .as_str()
        .unwrap_or("-")
        .to_owned();
    script.check(
        denied.status == StatusCode::FORBIDDEN
            && denied.error_code().as_deref() == Some("FORBIDDEN")
            && request_id == cid_denied,
        format!(
            "approve as alice (member) -> {}, errors[0].meta.requestId {request_id}",
            denied.summary()
        ),
        &format!("403 FORBIDDEN carrying requestId {cid_denied}"),
    )?;

    let cid_approve = format!("wt-{run}-approve");
    let approve = api
        .post(&format!("{event_path}/approve"))
        .bearer(&bob.token)
        .header("x-correlation-id", cid_approve.clone())
        .send()
        .await?;
    script.check(
        approve.status == StatusCode::OK
            && approve.data()["status"] == "approved"
            && approve.header("x-correlation-id") == Some(cid_approve.as_str()),
        format!(
            "approve as bob (manager) -> {}, status {}",
            approve.summary(),
            approve.data()["status"]
        ),
        &format!("200, status approved, x-correlation-id {cid_approve} back"),
    )?;

    let note = wait_for_notification(&api, &alice, "event.approved", &event_id, wait).await;
    script.check(
        note.is_some(),
        format!(
            "notification event.approved reached alice: {}",
            message(note.as_ref())
        ),
        &format!("a notification within {wait:?}"),
    )?;
    // The contract does not require notifications to show the envelope's
    // correlation id; when they do, it must be the approve request's.
    match note
        .as_ref()
        .and_then(|n| n.get("correlationId"))
        .and_then(Value::as_str)
    {
        Some(carried) => script.check(
            carried == cid_approve,
            format!(
                "the notification carries correlation id {carried} (approve sent {cid_approve})"
            ),
            "the approve request's correlation id",
        )?,
        None => script.skip("notifications do not show their event's correlation id over HTTP"),
    }

    let dashboard = api
        .get("/api/v1/dashboard")
        .bearer(&alice.token)
        .send()
        .await?;
    let parts = degraded(&dashboard);
    let listed = dashboard.data()["events"]
        .as_array()
        .is_some_and(|all| all.iter().any(|e| e["id"] == event_id.as_str()));
    script.check(
        dashboard.status == StatusCode::OK && parts.is_empty() && listed,
        format!(
            "dashboard as alice -> {}, degraded {parts:?}, lists the event: {listed}",
            dashboard.summary()
        ),
        "200, nothing degraded, the event listed",
    )?;

    if options.outage {
        let before = metrics::Counters::scrape(&api).await?;
        let ran = outage::outage(&mut script, &api, &alice, wait).await?;
        metrics::report(&mut script, &api, before.as_ref(), ran).await?;
    } else {
        script.skip("events-service outage (not asked for)");
    }
    Ok(script.report)
}

fn message(note: Option<&Value>) -> String {
    note.map_or_else(
        || "none".to_owned(),
        |n| format!("{:?}", n["message"].as_str().unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused() {
        for url in ["", "localhost:3000", "https://x:1", "http://"] {
            assert!(matches!(
                ApiClient::new(url, Duration::from_secs(1)),
                Err(WalkthroughError::Url { .. })
            ));
        }
        assert!(ApiClient::new("http://127.0.0.1:3000/", Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn run_suffixes_are_short_and_lowercase() {
        let s = run_suffix();
        assert!(!s.is_empty() && s.len() <= 8);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }

    #[tokio::test]
    async fn an_unreachable_gateway_is_a_transport_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_or(1, |a| a.port());
        let options = WalkthroughOptions {
            print: false,
            ..WalkthroughOptions::default()
        };
        let err = run_with(&format!("http://127.0.0.1:{port}"), &options).await;
        assert!(
            matches!(err, Err(WalkthroughError::Transport { .. })),
            "{err:?}"
        );
    }
}

//! events-service through the gateway: CRUD scoped to the organization, the
//! workflow with its 409s and 403s, idempotent creation.

mod common;

use common::{Http, user};
use forten_examples::system::{RunningSystem, SystemConfig};
use http::Method;
use serde_json::{Value, json};

async fn system() -> (RunningSystem, Http) {
    let system = RunningSystem::start(SystemConfig::ephemeral())
        .await
        .expect("the system starts");
    let gw = Http::new(system.gateway_url());
    (system, gw)
}

async fn create(gw: &Http, token: &str, title: &str) -> Value {
    let r = gw
        .post(
            "/api/v1/events",
            Some(token),
            json!({"title": title, "description": "d"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    r.json["data"].clone()
}

fn id(event: &Value) -> String {
    event["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn the_workflow_and_its_conflicts() {
    let (system, gw) = system().await;
    let (member, m) = user(&gw, "mia", "acme", "member").await;
    let (_, boss) = user(&gw, "max", "acme", "manager").await;

    let event = create(&gw, &m, "Launch party").await;
    assert_eq!(event["status"], "draft");
    assert_eq!(event["createdBy"], member["id"]);
    assert_eq!(event["organization"], "acme");
    let path = format!("/api/v1/events/{}", id(&event));

    let edited = gw
        .call(
            Method::PATCH,
            &path,
            Some(&m),
            Some(json!({"title": "Launch party!"})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.json);
    assert_eq!(edited.json["data"]["title"], "Launch party!");

    // approving a draft: the member lacks the permission (403), the manager hits the workflow (409)
    gw.post(&format!("{path}/approve"), Some(&m), json!({}))
        .await
        .assert_error(403, "FORBIDDEN");
    gw.post(&format!("{path}/approve"), Some(&boss), json!({}))
        .await
        .assert_error(409, "CONFLICT");
    // only the creator submits
    gw.post(&format!("{path}/submit"), Some(&boss), json!({}))
        .await
        .assert_error(403, "FORBIDDEN");

    let submitted = gw
        .post(&format!("{path}/submit"), Some(&m), json!({}))
        .await;
    assert_eq!(
        submitted.json["data"]["status"], "submitted",
        "{}",
        submitted.json
    );
    gw.post(&format!("{path}/submit"), Some(&m), json!({}))
        .await
        .assert_error(409, "CONFLICT");
    gw.call(Method::PATCH, &path, Some(&m), Some(json!({"title": "x"})))
        .await
        .assert_error(409, "CONFLICT");
    gw.call(Method::DELETE, &path, Some(&m), None)
        .await
        .assert_error(409, "CONFLICT");
    gw.post(&format!("{path}/reject"), Some(&m), json!({}))
        .await
        .assert_error(403, "FORBIDDEN");

    let approved = gw
        .post(&format!("{path}/approve"), Some(&boss), json!({}))
        .await;
    assert_eq!(
        approved.json["data"]["status"], "approved",
        "{}",
        approved.json
    );
    gw.post(&format!("{path}/reject"), Some(&boss), json!({}))
        .await
        .assert_error(409, "CONFLICT");
    gw.post(&format!("{path}/approve"), Some(&boss), json!({}))
        .await
        .assert_error(409, "CONFLICT");

    // reject with a reason, and without a body at all
    let second = create(&gw, &m, "Retro").await;
    let p2 = format!("/api/v1/events/{}", id(&second));
    gw.post(&format!("{p2}/submit"), Some(&m), json!({})).await;
    let rejected = gw
        .post(
            &format!("{p2}/reject"),
            Some(&boss),
            json!({"reason": "no budget"}),
        )
        .await;
    assert_eq!(
        rejected.json["data"]["status"], "rejected",
        "{}",
        rejected.json
    );
    assert_eq!(rejected.json["data"]["rejectionReason"], "no budget");
    let third = create(&gw, &m, "Offsite").await;
    let p3 = format!("/api/v1/events/{}", id(&third));
    gw.post(&format!("{p3}/submit"), Some(&m), json!({})).await;
    let r = gw
        .send(
            Method::POST,
            &format!("{p3}/reject"),
            &[("authorization", &format!("Bearer {boss}"))],
            None,
        )
        .await;
    assert_eq!(r.json["data"]["status"], "rejected", "{}", r.json);

    // a draft can be deleted by its creator
    let fourth = create(&gw, &m, "Scratch").await;
    let p4 = format!("/api/v1/events/{}", id(&fourth));
    let deleted = gw.call(Method::DELETE, &p4, Some(&m), None).await;
    assert_eq!(deleted.status, 204);
    gw.get(&p4, Some(&m)).await.assert_error(404, "NOT_FOUND");

    let list = gw.get("/api/v1/events", Some(&boss)).await;
    let titles: Vec<&str> = list.json["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        ["Offsite", "Retro", "Launch party!"],
        "newest first"
    );
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn organizations_are_isolated_and_bad_input_is_a_document() {
    let (system, gw) = system().await;
    let (_, a) = user(&gw, "ann", "acme", "manager").await;
    let (_, b) = user(&gw, "ben", "globex", "manager").await;
    let event = create(&gw, &a, "Acme only").await;
    let path = format!("/api/v1/events/{}", id(&event));
    gw.get(&path, Some(&b)).await.assert_error(404, "NOT_FOUND");
    gw.post(&format!("{path}/submit"), Some(&b), json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(
        gw.get("/api/v1/events", Some(&b)).await.json["data"],
        json!([])
    );
    gw.get("/api/v1/events/not-an-id", Some(&a))
        .await
        .assert_error(404, "NOT_FOUND");
    gw.get("/api/v1/events/%FF%FE", Some(&a))
        .await
        .assert_error(404, "NOT_FOUND");

    let long = "x".repeat(201);
    for body in [
        json!({"title": ""}),
        json!({"title": "  "}),
        json!({"title": long}),
        json!({}),
        json!({"title": 7}),
    ] {
        let r = gw.post("/api/v1/events", Some(&a), body.clone()).await;
        r.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(r.pointer(), "/title", "{body}");
    }
    let r = gw
        .post(
            "/api/v1/events",
            Some(&a),
            json!({"title": "ok", "description": 5}),
        )
        .await;
    assert_eq!(r.pointer(), "/description");
    let auth = format!("Bearer {a}");
    let r = gw
        .send(
            Method::POST,
            "/api/v1/events",
            &[("authorization", &auth)],
            Some(b"{oops"),
        )
        .await;
    r.assert_error(400, "VALIDATION_ERROR");
    let r = gw
        .send(
            Method::PATCH,
            &path,
            &[("authorization", &auth)],
            Some(b"\"a string\""),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let r = gw
        .call(Method::PATCH, &path, Some(&a), Some(json!({"title": null})))
        .await;
    assert_eq!(r.pointer(), "/title");
    let r = gw.call(Method::PUT, "/api/v1/events", Some(&a), None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("content-type"), "application/vnd.api+json");
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn idempotent_creation_at_the_gateway() {
    let (system, gw) = system().await;
    let (_, t) = user(&gw, "ida", "acme", "member").await;
    let auth = format!("Bearer {t}");
    let headers = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "\"create-1\""),
    ];
    let body = br#"{"title":"Once"}"#;
    let first = gw
        .send(Method::POST, "/api/v1/events", &headers, Some(body))
        .await;
    assert_eq!(first.status, 201, "{}", first.json);
    let again = gw
        .send(Method::POST, "/api/v1/events", &headers, Some(body))
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.json, first.json);
    let other = gw
        .send(
            Method::POST,
            "/api/v1/events",
            &headers,
            Some(br#"{"title":"Twice"}"#),
        )
        .await;
    other.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    let list = gw.get("/api/v1/events", Some(&t)).await;
    assert_eq!(list.json["data"].as_array().map(Vec::len), Some(1));
    // another user's same key is another scope
    let (_, u) = user(&gw, "ivo", "acme", "member").await;
    let auth_u = format!("Bearer {u}");
    let theirs = gw
        .send(
            Method::POST,
            "/api/v1/events",
            &[
                ("authorization", auth_u.as_str()),
                ("idempotency-key", "\"create-1\""),
            ],
            Some(br#"{"title":"Theirs"}"#),
        )
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.json);
    assert_eq!(theirs.header("idempotent-replayed"), "");
    system.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn the_rate_limit_is_per_user() {
    let system = RunningSystem::start(SystemConfig::ephemeral().rate_limit_per_user(1, 3))
        .await
        .expect("the system starts");
    let gw = Http::new(system.gateway_url());
    // signup and login count against the client IP; a user's calls against the user
    let (_, a) = user(&gw, "rae", "acme", "member").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(gw.get("/api/v1/events", Some(&a)).await);
    }
    let limited = statuses.last().expect("four answers");
    limited.assert_error(429, "RATE_LIMITED");
    assert!(!limited.header("retry-after").is_empty());
    assert!(statuses[..3].iter().all(|r| r.status == 200));
    system.shutdown().await.expect("graceful shutdown");
}

//! Events through the gateway: the workflow and its 409s, validation,
//! organization isolation, idempotency keys, notifications and correlation.
#![allow(missing_docs, clippy::unwrap_used)]

use forten_examples::system::SystemConfig;
use forten_system_tests::{
    ApiResponse, Org, WAIT, assert_error, assert_status, body, create_event, pointer, send, start,
    unique, wait_for_notification,
};
use futures::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_and_the_transitions_it_refuses() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let org = Org::new();
    let alice = org.member(&api).await;
    let bob = org.manager(&api).await;
    let id = create_event(&api, &alice, "Launch").await;
    let path = format!("/api/v1/events/{id}");

    let got = send(api.get(&path).bearer(&alice.token)).await;
    assert_status(&got, 200);
    let event = got.data();
    assert_eq!(event["status"], "draft");
    assert_eq!(event["organization"], org.name.as_str());
    assert_eq!(event["createdBy"], alice.id.as_str());
    for field in ["createdAt", "updatedAt", "title"] {
        assert!(event[field].is_string(), "{field} in {event}");
    }

    let patched = send(
        api.request(http::Method::PATCH, &path)
            .bearer(&alice.token)
            .json(&json!({"description": "v2"})),
    )
    .await;
    assert_status(&patched, 200);
    assert_eq!(patched.data()["description"], "v2");

    let approve_draft = send(api.post(&format!("{path}/approve")).bearer(&bob.token)).await;
    assert_error(&approve_draft, 409, "CONFLICT");

    let submitted = send(api.post(&format!("{path}/submit")).bearer(&alice.token)).await;
    assert_status(&submitted, 200);
    assert_eq!(submitted.data()["status"], "submitted");
    let twice = send(api.post(&format!("{path}/submit")).bearer(&alice.token)).await;
    assert_error(&twice, 409, "CONFLICT");
    let patch_late = send(
        api.request(http::Method::PATCH, &path)
            .bearer(&alice.token)
            .json(&json!({"title": "late"})),
    )
    .await;
    assert_error(&patch_late, 409, "CONFLICT");
    let delete_late = send(
        api.request(http::Method::DELETE, &path)
            .bearer(&alice.token),
    )
    .await;
    assert_error(&delete_late, 409, "CONFLICT");

    let rejected = send(
        api.post(&format!("{path}/reject"))
            .bearer(&bob.token)
            .json(&json!({"reason": "budget"})),
    )
    .await;
    assert_status(&rejected, 200);
    assert_eq!(rejected.data()["status"], "rejected");
    assert_eq!(rejected.data()["rejectionReason"], "budget");
    let approve_rejected = send(api.post(&format!("{path}/approve")).bearer(&bob.token)).await;
    assert_error(&approve_rejected, 409, "CONFLICT");

    // A draft can be deleted, and is gone.
    let gone = create_event(&api, &alice, "Scratch").await;
    let deleted = send(
        api.request(http::Method::DELETE, &format!("/api/v1/events/{gone}"))
            .bearer(&alice.token),
    )
    .await;
    assert_status(&deleted, 204);
    let after = send(
        api.get(&format!("/api/v1/events/{gone}"))
            .bearer(&alice.token),
    )
    .await;
    assert_error(&after, 404, "NOT_FOUND");

    let list = send(api.get("/api/v1/events").bearer(&alice.token)).await;
    assert_status(&list, 200);
    let ids: Vec<_> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!(id)], "the rejected event, not the deleted one");
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_input_is_a_422_or_404_never_a_500() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let alice = Org::new().member(&api).await;
    for title in [json!(""), json!("x".repeat(201)), json!(42), json!(null)] {
        let r = send(
            api.post("/api/v1/events")
                .bearer(&alice.token)
                .json(&json!({"title": title})),
        )
        .await;
        assert_error(&r, 422, "VALIDATION_ERROR");
        assert_eq!(pointer(&r), "/title", "title {title}");
    }
    let missing = send(
        api.post("/api/v1/events")
            .bearer(&alice.token)
            .json(&json!({})),
    )
    .await;
    assert_error(&missing, 422, "VALIDATION_ERROR");
    assert_eq!(pointer(&missing), "/title");
    let ok = send(
        api.post("/api/v1/events")
            .bearer(&alice.token)
            .json(&json!({"title": "x".repeat(200)})),
    )
    .await;
    assert_status(&ok, 201);
    let malformed = send(
        api.post("/api/v1/events")
            .bearer(&alice.token)
            .raw("{not json", "application/json"),
    )
    .await;
    assert!(
        matches!(malformed.status.as_u16(), 400 | 422),
        "{}",
        body(&malformed)
    );
    assert_eq!(malformed.error_code().as_deref(), Some("VALIDATION_ERROR"));
    for id in [
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        "%00",
        "..%2F..%2Fhealth",
    ] {
        let r = send(
            api.get(&format!("/api/v1/events/{id}"))
                .bearer(&alice.token),
        )
        .await;
        assert_error(&r, 404, "NOT_FOUND");
    }
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_events_are_not_found() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let (acme, globex) = (Org::new(), Org::new());
    let alice = acme.member(&api).await;
    let mallory = globex.manager(&api).await;
    let id = create_event(&api, &alice, "Acme secret").await;
    let path = format!("/api/v1/events/{id}");
    assert_status(
        &send(api.post(&format!("{path}/submit")).bearer(&alice.token)).await,
        200,
    );

    let requests = [
        api.get(&path),
        api.request(http::Method::PATCH, &path)
            .json(&json!({"title": "mine"})),
        api.request(http::Method::DELETE, &path),
        api.post(&format!("{path}/submit")),
        api.post(&format!("{path}/approve")),
        api.post(&format!("{path}/reject")).json(&json!({})),
    ];
    for request in requests {
        let what = request.describe();
        let r = send(request.bearer(&mallory.token)).await;
        assert_eq!(
            r.status.as_u16(),
            404,
            "{what} from another org: {}",
            body(&r)
        );
        assert_eq!(r.error_code().as_deref(), Some("NOT_FOUND"));
    }
    let list = send(api.get("/api/v1/events").bearer(&mallory.token)).await;
    assert_eq!(list.data(), json!([]), "another org's list is empty");
    let still = send(api.get(&path).bearer(&alice.token)).await;
    assert_eq!(still.data()["status"], "submitted");
    // Nor does another org's manager hear of the submission.
    let notes = send(api.get("/api/v1/notifications").bearer(&mallory.token)).await;
    assert!(!body(&notes).contains(&id), "{}", body(&notes));
    system.shutdown().await.unwrap();
}

fn create_with_key<'a>(
    api: &'a forten_system_tests::ApiClient,
    token: &str,
    key: &str,
    title: &str,
) -> forten_examples::walkthrough::ApiRequest<'a> {
    api.post("/api/v1/events")
        .bearer(token)
        .header("idempotency-key", key)
        .json(&json!({"title": title}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_refuse_reuse_and_serialize_concurrent_calls() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let org = Org::new();
    let alice = org.member(&api).await;
    let key = unique("key");

    let first = send(create_with_key(&api, &alice.token, &key, "Once")).await;
    assert_status(&first, 201);
    assert!(first.header("idempotent-replayed").is_none());
    let replay = send(create_with_key(&api, &alice.token, &key, "Once")).await;
    assert_status(&replay, 201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body, "the stored body, byte for byte");

    let reused = send(create_with_key(&api, &alice.token, &key, "Twice?")).await;
    assert_error(&reused, 422, "IDEMPOTENCY_KEY_REUSED");

    // Keys are scoped by user: the same key from bob is a new request.
    let bob = org.member(&api).await;
    let bobs = send(create_with_key(&api, &bob.token, &key, "Once")).await;
    assert_status(&bobs, 201);
    assert!(bobs.header("idempotent-replayed").is_none());
    assert_ne!(bobs.data()["id"], first.data()["id"]);

    // A stored error replays too.
    let bad_key = unique("key");
    let invalid = send(create_with_key(&api, &alice.token, &bad_key, "")).await;
    assert_error(&invalid, 422, "VALIDATION_ERROR");
    let invalid_again = send(create_with_key(&api, &alice.token, &bad_key, "")).await;
    assert_error(&invalid_again, 422, "VALIDATION_ERROR");
    assert_eq!(invalid_again.header("idempotent-replayed"), Some("true"));

    // A key that is not an sf-string or token, or too long: 400, nothing stored.
    for key in ["\"unterminated", &"k".repeat(256)] {
        let r = send(create_with_key(&api, &alice.token, key, "Bad key")).await;
        assert_eq!(r.status.as_u16(), 400, "key {key:?}: {}", body(&r));
    }

    // The same key sent many times at once: the handler runs once; the
    // others either wait their turn and replay, or are told it is in flight.
    let key = unique("race");
    let racers = (0..12).map(|_| send(create_with_key(&api, &alice.token, &key, "Race")));
    let answers: Vec<ApiResponse> = join_all(racers).await;
    let fresh: Vec<_> = answers
        .iter()
        .filter(|r| r.status.as_u16() == 201 && r.header("idempotent-replayed").is_none())
        .collect();
    assert_eq!(fresh.len(), 1, "exactly one ran the handler");
    for r in &answers {
        match r.status.as_u16() {
            201 => assert_eq!(r.data()["id"], fresh[0].data()["id"]),
            409 => assert_eq!(r.error_code().as_deref(), Some("IDEMPOTENCY_CONFLICT")),
            _ => panic!(
                "unexpected answer to a concurrent same-key call: {}",
                body(r)
            ),
        }
    }
    let list = send(api.get("/api/v1/events").bearer(&alice.token)).await;
    let races = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["title"] == "Race")
        .count();
    assert_eq!(races, 1, "one event from twelve calls");
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_follow_the_rules_and_belong_to_their_user() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let org = Org::new();
    let alice = org.member(&api).await;
    let bob = org.manager(&api).await;
    let carol = org.manager(&api).await;

    let welcome = wait_for_notification(&api, &alice, "user.registered", &alice.id, WAIT).await;
    assert!(welcome.is_some(), "a welcome notification");

    let id = create_event(&api, &alice, "Retro").await;
    assert!(
        wait_for_notification(&api, &alice, "event.created", &id, WAIT)
            .await
            .is_some()
    );
    assert_status(
        &send(
            api.post(&format!("/api/v1/events/{id}/submit"))
                .bearer(&alice.token),
        )
        .await,
        200,
    );
    for manager in [&bob, &carol] {
        let note = wait_for_notification(&api, manager, "event.submitted", &id, WAIT).await;
        let note = note.unwrap_or_else(|| panic!("{} heard of the submission", manager.email));
        assert_eq!(note["userId"], manager.id.as_str());
        assert_eq!(note["read"], false);
    }
    assert_status(
        &send(
            api.post(&format!("/api/v1/events/{id}/approve"))
                .bearer(&bob.token),
        )
        .await,
        200,
    );
    let approved = wait_for_notification(&api, &alice, "event.approved", &id, WAIT)
        .await
        .unwrap();

    // The member is not told of submissions, the managers not of the approval.
    let mine = send(api.get("/api/v1/notifications").bearer(&alice.token)).await;
    let types: Vec<_> = mine
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["eventType"].clone())
        .collect();
    assert!(!types.contains(&json!("event.submitted")), "{types:?}");
    assert_eq!(
        types.first(),
        Some(&json!("event.approved")),
        "newest first: {types:?}"
    );

    let note_id = approved["id"].as_str().unwrap();
    let stolen = send(
        api.request(
            http::Method::PUT,
            &format!("/api/v1/notifications/{note_id}/read"),
        )
        .bearer(&bob.token),
    )
    .await;
    assert_error(&stolen, 404, "NOT_FOUND");
    let read = send(
        api.request(
            http::Method::PUT,
            &format!("/api/v1/notifications/{note_id}/read"),
        )
        .bearer(&alice.token),
    )
    .await;
    assert_status(&read, 200);
    assert_eq!(read.data()["read"], true);
    let unread = send(
        api.get("/api/v1/notifications?unread=true")
            .bearer(&alice.token),
    )
    .await;
    assert!(
        unread
            .data()
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["id"] != note_id && n["read"] == false)
    );
    let unknown = send(
        api.request(http::Method::PUT, "/api/v1/notifications/nope/read")
            .bearer(&alice.token),
    )
    .await;
    assert_error(&unknown, 404, "NOT_FOUND");
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_ids_are_echoed_generated_and_carried_into_errors() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let alice = Org::new().member(&api).await;

    let given = send(
        api.get("/api/v1/events")
            .bearer(&alice.token)
            .header("x-correlation-id", "e2e-given-1"),
    )
    .await;
    assert_eq!(given.header("x-correlation-id"), Some("e2e-given-1"));
    let alias = send(
        api.get("/api/v1/events")
            .bearer(&alice.token)
            .header("x-request-id", "e2e-alias-1"),
    )
    .await;
    assert_eq!(alias.header("x-correlation-id"), Some("e2e-alias-1"));
    for invalid in [None, Some("x".repeat(129))] {
        let mut request = api.get("/api/v1/events").bearer(&alice.token);
        if let Some(id) = &invalid {
            request = request.header("x-correlation-id", id.clone());
        }
        let r = send(request).await;
        let generated = r.header("x-correlation-id").unwrap_or_default();
        assert!(
            uuid::Uuid::parse_str(generated).is_ok(),
            "{invalid:?} -> {generated:?}"
        );
        assert_eq!(generated, generated.to_lowercase());
    }
    // An error raised behind the gateway (events-service's 404) carries the
    // id the client sent: it crossed the hop.
    let missing = send(
        api.get("/api/v1/events/00000000-0000-0000-0000-000000000000")
            .bearer(&alice.token)
            .header("x-correlation-id", "e2e-crossed-1"),
    )
    .await;
    assert_error(&missing, 404, "NOT_FOUND");
    assert_eq!(
        missing.json()["errors"][0]["meta"]["requestId"],
        "e2e-crossed-1"
    );
    assert_eq!(missing.header("x-correlation-id"), Some("e2e-crossed-1"));
    // So does one raised at the gateway itself.
    let anonymous = send(
        api.get("/api/v1/events")
            .header("x-correlation-id", "e2e-gw-1"),
    )
    .await;
    assert_eq!(
        anonymous.json()["errors"][0]["meta"]["requestId"],
        "e2e-gw-1"
    );
    system.shutdown().await.unwrap();
}

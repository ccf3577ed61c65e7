//! Signup, login and tokens through the gateway: validation errors with
//! their pointers, 401 for every kind of bad token, 403 for a missing
//! permission.
#![allow(missing_docs, clippy::unwrap_used)]

use forten_examples::runtime::auth::DEV_USER_TOKEN_SECRET;
use forten_examples::system::SystemConfig;
use forten_system_tests::{
    Org, assert_error, assert_status, claims_of, create_event, now_secs, pointer, send, sign,
    start, unique, unsigned,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_validates_its_input_and_refuses_duplicates() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let org = unique("org");
    let email = format!("{}@{org}.test", unique("carol"));
    let valid = json!({"email": email, "password": "long enough pw", "name": "Carol",
                       "organization": org});

    let created = send(api.post("/api/v1/auth/signup").json(&valid)).await;
    assert_status(&created, 201);
    let user = created.data();
    assert_eq!(user["email"], email.as_str());
    assert_eq!(user["organization"], org.as_str());
    assert_eq!(user["role"], "member", "member is the default role");
    assert!(user["id"].is_string());
    assert!(user.get("password").is_none() && !created.body.windows(8).any(|w| w == b"long eno"));

    let again = send(api.post("/api/v1/auth/signup").json(&valid)).await;
    assert_error(&again, 409, "CONFLICT");

    let cases = [
        ("email", json!("not-an-email"), "/email"),
        ("password", json!("short"), "/password"),
        ("role", json!("admin"), "/role"),
    ];
    for (field, value, expected) in cases {
        let mut body = valid.clone();
        body["email"] = json!(format!("{}@{org}.test", unique("x")));
        body[field] = value;
        let r = send(api.post("/api/v1/auth/signup").json(&body)).await;
        assert_error(&r, 422, "VALIDATION_ERROR");
        assert_eq!(pointer(&r), expected, "{field}");
    }
    for missing in ["email", "password", "name", "organization"] {
        let mut body = valid.clone();
        body["email"] = json!(format!("{}@{org}.test", unique("y")));
        body.as_object_mut().map(|o| o.remove(missing));
        let r = send(api.post("/api/v1/auth/signup").json(&body)).await;
        assert_error(&r, 422, "VALIDATION_ERROR");
        assert_eq!(pointer(&r), format!("/{missing}"));
    }
    let malformed = send(
        api.post("/api/v1/auth/signup")
            .raw("{\"email\": ", "application/json"),
    )
    .await;
    assert_error(&malformed, 400, "VALIDATION_ERROR");
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_me() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let org = Org::new();
    let alice = org.member(&api).await;

    let me = send(api.get("/api/v1/auth/me").bearer(&alice.token)).await;
    assert_status(&me, 200);
    assert_eq!(me.data()["id"], alice.id.as_str());
    assert_eq!(me.data()["email"], alice.email.as_str());

    let wrong = send(
        api.post("/api/v1/auth/login")
            .json(&json!({"email": alice.email, "password": "not the password"})),
    )
    .await;
    assert_error(&wrong, 401, "UNAUTHENTICATED");
    let nobody = send(
        api.post("/api/v1/auth/login")
            .json(&json!({"email": "nobody@nowhere.test", "password": "whatever123"})),
    )
    .await;
    assert_error(&nobody, 401, "UNAUTHENTICATED");
    assert_eq!(
        wrong.json()["errors"][0]["detail"],
        nobody.json()["errors"][0]["detail"],
        "an unknown email and a wrong password look the same"
    );

    let login = send(
        api.post("/api/v1/auth/login")
            .json(&json!({"email": alice.email, "password": "correct horse battery"})),
    )
    .await;
    assert_status(&login, 200);
    assert_eq!(login.data()["tokenType"], "Bearer");
    assert!(login.data()["expiresIn"].as_u64().is_some_and(|s| s > 0));
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_token_is_a_401_with_a_bearer_challenge() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let alice = Org::new().member(&api).await;
    let claims = claims_of(&alice.token);
    assert!(claims["exp"].is_u64(), "a real token has claims: {claims}");

    let mut expired = claims.clone();
    expired["iat"] = json!(now_secs() - 7200);
    expired["exp"] = json!(now_secs() - 3600);
    let mut tampered = claims.clone();
    tampered["roles"] = json!(["admin"]);
    let real_signature = alice.token.rsplit('.').next().unwrap_or_default();
    let tampered_with_real_signature = {
        let t = sign(
            &tampered,
            b"some other secret, long enough to be a key.....",
        );
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.{real_signature}")
    };
    let tokens = [
        ("garbage", "garbage".to_owned()),
        ("empty", String::new()),
        ("expired", sign(&expired, DEV_USER_TOKEN_SECRET.as_bytes())),
        (
            "wrong signature",
            sign(&claims, b"not the system's secret, but as long as one....."),
        ),
        ("tampered claims", tampered_with_real_signature),
        ("alg none", unsigned(&claims)),
        ("alg none, admin", unsigned(&tampered)),
    ];
    for (kind, token) in &tokens {
        for path in [
            "/api/v1/events",
            "/api/v1/auth/me",
            "/api/v1/dashboard",
            "/api/v1/notifications",
        ] {
            let r = send(api.get(path).bearer(token)).await;
            assert_error(&r, 401, "UNAUTHENTICATED");
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
                "{kind} on {path}: WWW-Authenticate {challenge:?}"
            );
        }
    }
    let missing = send(api.get("/api/v1/events")).await;
    assert_error(&missing, 401, "UNAUTHENTICATED");
    // And the real token still works.
    let r = send(api.get("/api/v1/events").bearer(&alice.token)).await;
    assert_status(&r, 200);
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_may_not_approve_or_reject() {
    let (system, api) = start(SystemConfig::ephemeral()).await;
    let org = Org::new();
    let alice = org.member(&api).await;
    let other = org.member(&api).await;
    let id = create_event(&api, &alice, "Offsite").await;
    let submit = send(
        api.post(&format!("/api/v1/events/{id}/submit"))
            .bearer(&alice.token),
    )
    .await;
    assert_status(&submit, 200);
    for who in [&alice, &other] {
        for action in ["approve", "reject"] {
            let r = send(
                api.post(&format!("/api/v1/events/{id}/{action}"))
                    .bearer(&who.token)
                    .json(&json!({})),
            )
            .await;
            assert_error(&r, 403, "FORBIDDEN");
        }
    }
    let event = send(
        api.get(&format!("/api/v1/events/{id}"))
            .bearer(&alice.token),
    )
    .await;
    assert_eq!(event.data()["status"], "submitted", "nothing changed");
    system.shutdown().await.unwrap();
}

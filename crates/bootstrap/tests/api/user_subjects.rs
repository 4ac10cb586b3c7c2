//! `POST /api/v1/users` with end-user authentication on: the bearer token's subject gets
//! one user, created the first time (201) and returned after (200), however many
//! requests race on however many instances.

use std::time::Duration;

use adapter_identity::{TokenRequest, mint_hs256};
use bootstrap::Config;
use reqwest::Response;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, second_instance, spawn_app, spawn_app_with};

const SECRET: &str = "a-user-subjects-secret-of-32-bytes";

fn with_auth(c: &mut Config) {
    c.auth_jwt_secret = Some(SECRET.into());
}

fn bearer(subject: &str) -> String {
    bearer_from(None, subject)
}

async fn register(client: &reqwest::Client, base: &str, authorization: Option<&str>) -> Response {
    let mut req = client.post(format!("{base}/api/v1/users"));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    req.send().await.unwrap()
}

fn count(app: &TestApp, table: &str) -> i64 {
    app.db
        .query_scalar(&format!("SELECT count(*) FROM {table}"))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_subject_is_created_once_then_returned() {
    let app = spawn_app_with(with_auth).await;
    let alice = bearer("idp|alice");

    let res = register(&app.client, &app.base, Some(&alice)).await;
    assert_eq!(res.status().as_u16(), 201);
    let location = res.headers().get("location").cloned().unwrap();
    let first: Value = res.json().await.unwrap();
    assert_eq!(
        location.to_str().unwrap(),
        format!("/api/v1/users/{}", first["id"])
    );

    let res = register(&app.client, &app.base, Some(&alice)).await;
    assert_eq!(res.status().as_u16(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again, first, "the same user, creation time included");

    let res = register(&app.client, &app.base, Some(&bearer("idp|bob"))).await;
    assert_eq!(res.status().as_u16(), 201);
    let bob: Value = res.json().await.unwrap();
    assert_ne!(bob["id"], first["id"]);
    assert_eq!(count(&app, "users"), 2);
    assert_eq!(count(&app, "point_wallets"), 2);
}

#[tokio::test]
async fn without_a_usable_token_no_user_is_created() {
    let app = spawn_app_with(with_auth).await;
    let res = register(&app.client, &app.base, None).await;
    assert_problem(res, 401, "UNAUTHORIZED").await;
    let res = register(&app.client, &app.base, Some("Bearer not-a-token")).await;
    assert_problem(res, 401, "UNAUTHORIZED").await;
    // Validly signed, but a subject the shop cannot hold (256 characters).
    let too_long = bearer(&"s".repeat(256));
    let res = register(&app.client, &app.base, Some(&too_long)).await;
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_problem(res, 401, "UNAUTHORIZED").await;
    assert!(www.contains(r#"error="invalid_token""#), "{www}");
    assert_eq!(count(&app, "users"), 0);
    assert_eq!(count(&app, "user_subjects"), 0);
}

/// The first-subject race: 20 requests at once, half on each of two instances, with one
/// new subject's token make one user; exactly one request is told it created it.
#[tokio::test]
async fn twenty_concurrent_registrations_of_one_new_subject_make_one_user() {
    let app = spawn_app_with(with_auth).await;
    let (other, _handle) = second_instance(&app, with_auth).await;
    let racer = bearer("idp|racer");
    let requests = (0..20).map(|n| {
        let base = if n % 2 == 0 { &app.base } else { &other };
        let (client, racer) = (app.client.clone(), racer.clone());
        let base = base.clone();
        async move {
            let res = register(&client, &base, Some(&racer)).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (status, body["id"].as_i64().unwrap())
        }
    });
    let answers = futures_util::future::join_all(requests).await;

    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    let existing = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!((created, existing), (1, 19), "{answers:?}");
    let id = answers[0].1;
    assert!(answers.iter().all(|(_, user)| *user == id), "{answers:?}");
    assert_eq!(count(&app, "users"), 1, "one user, no orphan");
    assert_eq!(count(&app, "user_subjects"), 1);
}

/// With end-user authentication off, `POST /users` ignores any token: each call makes a
/// new user, as before.
#[tokio::test]
async fn with_authentication_off_a_token_changes_nothing() {
    let app = spawn_app().await;
    let alice = bearer("idp|alice");
    let first = register(&app.client, &app.base, Some(&alice)).await;
    let second = register(&app.client, &app.base, Some(&alice)).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (201, 201)
    );
    assert_eq!(count(&app, "users"), 2);
    assert_eq!(count(&app, "user_subjects"), 0);
}

fn bearer_from(issuer: Option<&str>, subject: &str) -> String {
    let token = mint_hs256(
        SECRET.as_bytes(),
        &TokenRequest {
            subject,
            admin: false,
            ttl: Duration::from_secs(600),
            issuer,
            audience: None,
        },
    )
    .unwrap();
    format!("Bearer {token}")
}

/// The provider changes (same secret, another issuer configured): a token of the new one
/// with an old `sub` is a stranger, never the old user with its wallet.
#[tokio::test]
async fn a_sub_under_another_issuer_is_another_user() {
    let app = spawn_app_with(|c| {
        with_auth(c);
        c.auth_jwt_issuer = Some("https://old.example".into());
    })
    .await;
    let old = register(
        &app.client,
        &app.base,
        Some(&bearer_from(Some("https://old.example"), "u1")),
    )
    .await;
    assert_eq!(old.status().as_u16(), 201);
    let old: Value = old.json().await.unwrap();

    let (base, handle) = second_instance(&app, |c| {
        with_auth(c);
        c.auth_jwt_issuer = Some("https://new.example".into());
    })
    .await;
    let new = register(
        &app.client,
        &base,
        Some(&bearer_from(Some("https://new.example"), "u1")),
    )
    .await;
    assert_eq!(new.status().as_u16(), 201, "a user of its own");
    let new: Value = new.json().await.unwrap();
    assert_ne!(new["id"], old["id"]);
    // And a token naming an issuer the instance was not configured with is refused.
    let foreign = register(
        &app.client,
        &base,
        Some(&bearer_from(Some("https://old.example"), "u1")),
    )
    .await;
    assert_problem(foreign, 401, "UNAUTHORIZED").await;
    handle.stop(true).await;
}

#[tokio::test]
async fn without_an_issuer_configured_a_token_naming_one_is_refused() {
    let app = spawn_app_with(with_auth).await;
    let named = bearer_from(Some("https://id.example"), "u1");
    assert_problem(
        register(&app.client, &app.base, Some(&named)).await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    let res = register(&app.client, &app.base, Some(&bearer_from(None, "u1"))).await;
    assert_eq!(res.status().as_u16(), 201);
    assert_eq!(
        app.db
            .query_scalar("SELECT issuer AS value FROM user_subjects")
            .unwrap(),
        "",
        "the secret's own subjects have the empty issuer"
    );
}

/// Mappings made by the previous version (no issuer) belong to the issuer configured at
/// the first start after the upgrade.
#[tokio::test]
async fn a_mapping_from_before_issuers_keeps_its_user_after_the_upgrade() {
    let app = spawn_app_with(with_auth).await;
    let user = 5_000;
    app.db
        .execute(&format!(
            "INSERT INTO users (id, created_at) VALUES ({user}, now()); \
             INSERT INTO point_wallets (user_id, balance, updated_at) VALUES ({user}, 0, now()); \
             INSERT INTO user_subjects (subject, user_id, created_at) VALUES ('legacy', {user}, now())"
        ))
        .unwrap();
    let (base, handle) = second_instance(&app, |c| {
        with_auth(c);
        c.auth_jwt_issuer = Some("https://id.example".into());
    })
    .await;
    let res = register(
        &app.client,
        &base,
        Some(&bearer_from(Some("https://id.example"), "legacy")),
    )
    .await;
    assert_eq!(res.status().as_u16(), 200, "the user it had");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], user);
    handle.stop(true).await;
}

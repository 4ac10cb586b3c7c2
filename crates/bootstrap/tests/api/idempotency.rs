use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

const CHARGE: &str = "/api/v1/points/charge";

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_replays_the_first_response() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let body = json!({"userId": user, "amount": 700});
    let first = app.post_with_key(CHARGE, &body, "key-1").await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    app.charge(user, 5).await;
    let again = app.post_with_key(CHARGE, &body, "key-1").await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "the first response, not today's balance"
    );
    assert_eq!(app.balance(user).await, 705);
    assert_eq!(app.history_count(user).await, 2);
}

#[tokio::test]
async fn another_spelling_of_the_same_route_replays_instead_of_charging_again() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let body = json!({"userId": user, "amount": 700});
    let first = app.post_with_key(CHARGE, &body, "key-1").await;
    assert_eq!(first.status(), StatusCode::OK);
    let again = app
        .post_with_key("/api/v1/points/%63harge", &body, "key-1")
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(app.balance(user).await, 700, "charged once");
    assert_eq!(app.history_count(user).await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    app.post_with_key(CHARGE, &json!({"userId": user, "amount": 700}), "k")
        .await;
    let res = app
        .post_with_key(CHARGE, &json!({"userId": user, "amount": 800}), "k")
        .await;
    assert_problem(res, 422, "IDEMPOTENCY_KEY_REUSED").await;
    assert_eq!(app.balance(user).await, 700);
}

#[tokio::test]
async fn keys_are_scoped_by_user() {
    let app = spawn_app().await;
    let (a, b) = (app.create_user().await, app.create_user().await);
    for user in [a, b] {
        let res = app
            .post_with_key(CHARGE, &json!({"userId": user, "amount": 10}), "shared")
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(app.balance(user).await, 10);
    }
}

#[tokio::test]
async fn a_refusal_is_replayed_too() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    for _ in 0..100 {
        app.charge(user, 1_000_000).await;
    }
    let body = json!({"userId": user, "amount": 1});
    let res = app.post_with_key(CHARGE, &body, "late").await;
    assert_problem(res, 409, "BALANCE_LIMIT_EXCEEDED").await;
    let res = app.post_with_key(CHARGE, &body, "late").await;
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_problem(res, 409, "BALANCE_LIMIT_EXCEEDED").await;
}

#[tokio::test]
async fn malformed_keys_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let body = json!({"userId": user, "amount": 10});
    for key in ["", &"x".repeat(256), "has space", "tab\there"] {
        let res = app.post_with_key(CHARGE, &body, key).await;
        let problem = assert_problem(res, 400, "VALIDATION_FAILED").await;
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    }
    let res = app
        .client
        .post(app.url(CHARGE))
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes("ключ".as_bytes()).unwrap(),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "VALIDATION_FAILED").await;
    assert_eq!(app.balance(user).await, 0);
    assert!(
        app.post_with_key(CHARGE, &body, &"x".repeat(255))
            .await
            .status()
            .is_success()
    );
}

#[tokio::test]
async fn a_key_held_by_a_dead_request_is_in_use_until_its_lease_lapses_then_runs_anew() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let body = json!({"userId": user, "amount": 10});
    // A request that claimed the key and died: a fresh lease, no response.
    let claim = |seconds: i64| {
        format!(
            "INSERT INTO idempotency_keys (user_id, method, path, key, fingerprint, lease_token, locked_until, created_at) \
             SELECT {user}, 'POST', '{CHARGE}', 'dead', sha256(convert_to('{{\"userId\":{user},\"amount\":10}}', 'UTF8')), gen_random_uuid(), now() + interval '{seconds} seconds', now() \
             ON CONFLICT (user_id, method, path, key) DO UPDATE SET locked_until = EXCLUDED.locked_until"
        )
    };
    app.db.execute(&claim(30)).unwrap();
    let res = app.post_with_key(CHARGE, &body, "dead").await;
    assert_problem(res, 409, "IDEMPOTENCY_KEY_IN_USE").await;
    assert_eq!(app.balance(user).await, 0);
    // Its lease lapses: the retry runs, once.
    app.db.execute(&claim(-1)).unwrap();
    assert_eq!(
        app.post_with_key(CHARGE, &body, "dead").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.post_with_key(CHARGE, &body, "dead").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.balance(user).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_requests_with_one_key_charge_once() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let body = json!({"userId": user, "amount": 300});
    let requests = (0..20).map(|_| app.post_with_key(CHARGE, &body, "burst"));
    let responses = futures_util::future::join_all(requests).await;
    let mut ok = 0;
    for res in responses {
        match res.status().as_u16() {
            200 => {
                ok += 1;
                assert_eq!(res.json::<Value>().await.unwrap()["balance"], 300);
            }
            409 => {
                assert_problem(res, 409, "IDEMPOTENCY_KEY_IN_USE").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1);
    assert_eq!(app.balance(user).await, 300);
    assert_eq!(app.history_count(user).await, 1);
}

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_created_user_has_a_location_and_can_be_read_back() {
    let app = spawn_app().await;
    let res = app.post("/api/v1/users", &json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();
    assert!(id > 0);
    assert_eq!(location, format!("/api/v1/users/{id}"));
    let read: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(read, created);
    assert_eq!(app.balance(id).await, 0, "a new user has an empty wallet");
}

#[tokio::test]
async fn a_user_may_be_created_without_a_body() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_unknown_user_is_404_user_not_found() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/v1/users/987654321").await,
        404,
        "USER_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn malformed_user_ids_are_400() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/users/abc",
        "/api/v1/users/0",
        "/api/v1/users/-3",
        "/api/v1/users/99999999999999999999",
    ] {
        assert_problem(app.get(path).await, 400, "VALIDATION_FAILED").await;
    }
}

#[tokio::test]
async fn a_create_user_body_must_be_a_json_object() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "VALIDATION_FAILED").await;
    assert_eq!(
        app.db.query_scalar("SELECT count(*) FROM users").unwrap(),
        "0"
    );
}

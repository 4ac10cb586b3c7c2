use reqwest::{Method, StatusCode};
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

#[tokio::test]
async fn a_path_id_that_is_not_a_positive_integer_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (Method::GET, "/api/v1/users/abc", "id"),
        (Method::GET, "/api/v1/orders/1.5?userId=1", "id"),
        (Method::POST, "/api/v1/orders/None/cancel", "id"),
        (Method::GET, "/api/v1/products/99999999999999999999", "id"),
        (Method::GET, "/api/v1/products/0", "id"),
        (Method::GET, "/api/v1/coupons/x", "couponId"),
        (Method::PATCH, "/api/v1/admin/products/abc", "id"),
        (Method::POST, "/api/v1/admin/products/-1/restock", "id"),
    ];
    for (method, path, field) in cases {
        let res = app
            .admin(
                method.clone(),
                path,
                Some(&json!({"userId": 1, "quantity": 1})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "VALIDATION_FAILED", "{method} {path}");
        assert_eq!(
            body["errors"],
            json!([{"field": field, "message": "must be a positive integer"}]),
            "{method} {path}"
        );
    }
}

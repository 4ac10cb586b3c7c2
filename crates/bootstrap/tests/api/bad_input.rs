use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

const CHARGE: &str = "/api/v1/points/charge";

#[tokio::test]
async fn unreadable_bodies_are_problems_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let raw = |body: Vec<u8>, content_type: &'static str| {
        app.client
            .post(app.url(CHARGE))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let ok_body = format!(r#"{{"userId":{user},"amount":5}}"#).into_bytes();
    assert_problem(
        raw(b"{not json".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        raw(b"".to_vec(), "application/json").await.unwrap(),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        raw(b"[1,2]".to_vec(), "application/json").await.unwrap(),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        raw(ok_body.clone(), "text/plain").await.unwrap(),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let res = app
        .client
        .post(app.url(CHARGE))
        .body(ok_body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let mut huge = format!(r#"{{"userId":{user},"amount":5,"pad":""#).into_bytes();
    huge.extend(std::iter::repeat_n(b'x', 70_000));
    huge.extend(b"\"}");
    assert_problem(
        raw(huge, "application/json").await.unwrap(),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    for body in [
        json!({"userId": user.to_string(), "amount": 5}),
        json!({"userId": 2u64.pow(63), "amount": 5}),
        json!({"userId": -1, "amount": 5}),
        json!({"amount": 5}),
    ] {
        assert_problem(app.post(CHARGE, &body).await, 400, "VALIDATION_FAILED").await;
    }
    // JSON with a charset parameter is still JSON.
    assert_eq!(
        raw(ok_body, "application/json; charset=utf-8")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.balance(user).await, 5);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = spawn_app().await;
    assert_problem(app.get("/api/v1/nope").await, 404, "NOT_FOUND").await;
    assert_problem(app.get("/").await, 404, "NOT_FOUND").await;
    let res = app.client.delete(app.url(CHARGE)).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
    let res = app
        .client
        .put(app.url("/api/v1/points"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
}

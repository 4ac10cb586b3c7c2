use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

const ROUTES: [(&str, &str); 4] = [
    ("POST", "/api/v1/admin/products"),
    ("PATCH", "/api/v1/admin/products/1"),
    ("POST", "/api/v1/admin/products/1/restock"),
    ("POST", "/api/v1/admin/coupons"),
];

#[tokio::test]
async fn admin_routes_need_the_bearer_token() {
    let app = spawn_app().await;
    for (method, path) in ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let none = app
            .client
            .request(method.clone(), app.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(none, 401, "UNAUTHORIZED").await;
        let wrong = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth("not-the-token")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(wrong, 401, "UNAUTHORIZED").await;
        let basic = app
            .client
            .request(method, app.url(path))
            .header(
                "authorization",
                format!("Basic {}", crate::helpers::ADMIN_TOKEN),
            )
            .send()
            .await
            .unwrap();
        assert_problem(basic, 401, "UNAUTHORIZED").await;
    }
    assert_eq!(
        app.db
            .query_scalar("SELECT count(*) FROM products")
            .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_disabled() {
    let app = spawn_app_with(|c| c.admin_token = None).await;
    for (method, path) in ROUTES {
        let res = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(path),
            )
            .bearer_auth("anything")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "ADMIN_DISABLED").await;
    }
}

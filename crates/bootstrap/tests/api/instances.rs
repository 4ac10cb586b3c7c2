//! Two instances on one database keep every invariant (no in-process lock helps here).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{second_instance, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_coupon_and_one_stock_exactly() {
    // Long enough that no order expires while the 100 orders below are placed (both
    // instances' expiry schedulers wake at the earliest deadline), short for the test.
    let app = spawn_app_with(|c| c.order_payment_timeout_secs = 4).await;
    let (other, _handle) = second_instance(&app, |c| c.order_payment_timeout_secs = 4).await;
    let coupon = app.create_coupon(30, "FIXED", 100).await;
    let product = app.create_product(10, 25).await;
    let mut users = Vec::new();
    for _ in 0..100 {
        users.push(app.create_user().await);
    }
    let base = |i: usize| {
        if i.is_multiple_of(2) {
            app.base.clone()
        } else {
            other.clone()
        }
    };

    let issues = users.iter().enumerate().map(|(i, u)| {
        let url = format!("{}/api/v1/coupons/issue", base(i));
        let body = json!({"userId": u, "couponId": coupon});
        let client = app.client.clone();
        async move { client.post(url).json(&body).send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(issues).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        30
    );
    assert_eq!(app.coupon(coupon).await["remainingQuantity"], 0);

    let orders = users.iter().enumerate().map(|(i, u)| {
        let url = format!("{}/api/v1/orders", base(i));
        let body = json!({"userId": u, "items": [{"productId": product, "quantity": 1}]});
        let client = app.client.clone();
        async move { client.post(url).json(&body).send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(orders).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        25
    );
    assert_eq!(app.product(product).await["stock"], 0);

    // Both instances' expiry schedulers and both admin triggers race: stock comes back once.
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let expire = |url: String| {
        let client = app.client.clone();
        async move {
            client
                .request(
                    Method::POST,
                    format!("{url}/api/v1/admin/jobs/expire-orders"),
                )
                .bearer_auth(crate::helpers::ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["expired"]
                .as_u64()
                .unwrap()
        }
    };
    let (a, b) = tokio::join!(expire(app.base.clone()), expire(other.clone()));
    assert!(a + b <= 25);
    let expired = app
        .db
        .query_scalar("SELECT count(*) FROM orders WHERE status = 'EXPIRED'")
        .unwrap();
    assert_eq!(expired, "25");
    assert_eq!(
        app.product(product).await["stock"],
        25,
        "restored exactly once"
    );
}

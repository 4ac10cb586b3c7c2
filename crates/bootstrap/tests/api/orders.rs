use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

async fn order(
    app: &TestApp,
    user: i64,
    items: &[(i64, i64)],
    coupon: Option<i64>,
) -> reqwest::Response {
    let mut body = json!({"userId": user, "items": items.iter().map(|(p, q)| json!({"productId": p, "quantity": q})).collect::<Vec<_>>()});
    if let Some(c) = coupon {
        body["userCouponId"] = json!(c);
    }
    app.post("/api/v1/orders", &body).await
}

async fn pay(app: &TestApp, user: i64, order: i64) -> reqwest::Response {
    app.post(
        "/api/v1/points/use",
        &json!({"userId": user, "orderId": order}),
    )
    .await
}

async fn cancel(app: &TestApp, user: i64, order: i64) -> reqwest::Response {
    app.post(
        &format!("/api/v1/orders/{order}/cancel"),
        &json!({"userId": user}),
    )
    .await
}

async fn placed(app: &TestApp, user: i64, items: &[(i64, i64)], coupon: Option<i64>) -> Value {
    let res = order(app, user, items, coupon).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn stock(app: &TestApp, product: i64) -> i64 {
    app.product(product).await["stock"].as_i64().unwrap()
}

#[tokio::test]
async fn an_order_snapshots_prices_deducts_stock_and_is_the_users_alone() {
    let app = spawn_app().await;
    let (a, b) = (
        app.create_product(1_000, 10).await,
        app.create_product(250, 5).await,
    );
    let user = app.create_user().await;
    let res = order(&app, user, &[(a, 2), (b, 1), (a, 1)], None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let o: Value = res.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/orders/{}", o["id"]));
    assert_eq!(
        (
            o["status"].as_str(),
            o["totalAmount"].as_i64(),
            o["discountAmount"].as_i64(),
            o["payAmount"].as_i64()
        ),
        (Some("NOT_PAID"), Some(3_250), Some(0), Some(3_250))
    );
    let lines: Vec<_> = o["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["productId"].as_i64().unwrap(),
                l["quantity"].as_i64().unwrap(),
                l["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![(a, 3, 3_000), (b, 1, 250)],
        "merged, in product order"
    );
    assert_eq!((stock(&app, a).await, stock(&app, b).await), (7, 4));
    // A later price change does not touch the order.
    app.admin(
        Method::PATCH,
        &format!("/api/v1/admin/products/{a}"),
        Some(&json!({"price": 9})),
    )
    .await;
    let got: Value = app
        .get(&format!("/api/v1/orders/{}?userId={user}", o["id"]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, o);
    let other = app.create_user().await;
    assert_problem(
        app.get(&format!("/api/v1/orders/{}?userId={other}", o["id"]))
            .await,
        404,
        "ORDER_NOT_FOUND",
    )
    .await;
    let list: Value = app
        .get(&format!("/api/v1/orders?userId={user}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (list["totalCount"].as_i64(), list["items"][0]["id"].clone()),
        (Some(1), o["id"].clone())
    );
}

#[tokio::test]
async fn bad_orders_are_refused_in_order_and_change_nothing() {
    let app = spawn_app().await;
    let p = app.create_product(100, 5).await;
    let user = app.create_user().await;
    for items in [
        vec![],
        vec![(p, 0)],
        vec![(p, -1)],
        vec![(p, 1_001)],
        vec![(p, 600), (p, 401)],
        vec![(0, 1)],
    ] {
        assert_problem(
            order(&app, user, &items, None).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let many: Vec<(i64, i64)> = (1..=51).map(|i| (i, 1)).collect();
    assert_problem(
        order(&app, user, &many, None).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        order(&app, 987_654_321, &[(p, 1)], None).await,
        404,
        "USER_NOT_FOUND",
    )
    .await;
    assert_problem(
        order(&app, user, &[(p, 1), (987_654_321, 1)], None).await,
        404,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_problem(
        order(&app, user, &[(p, 1)], Some(987_654_321)).await,
        404,
        "USER_COUPON_NOT_FOUND",
    )
    .await;
    let q = app.create_product(100, 1).await;
    assert_problem(
        order(&app, user, &[(p, 2), (q, 2)], None).await,
        409,
        "OUT_OF_STOCK",
    )
    .await;
    assert_eq!(
        (stock(&app, p).await, stock(&app, q).await),
        (5, 1),
        "all or nothing"
    );
    assert_eq!(
        app.db.query_scalar("SELECT count(*) FROM orders").unwrap(),
        "0"
    );
}

#[tokio::test]
async fn coupons_discount_once_and_come_back_on_cancel() {
    let app = spawn_app().await;
    let p = app.create_product(1_000, 100).await;
    for (kind, value, off) in [
        ("FIXED", 500, 500),
        ("RATE", 15, 450),
        ("FIXED", 5_000, 3_000),
        ("RATE", 33, 990),
    ] {
        let user = app.create_user().await;
        let coupon = app.create_coupon(5, kind, value).await;
        let uc = app.issue(user, coupon).await.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        let o = placed(&app, user, &[(p, 3)], Some(uc)).await;
        assert_eq!(
            (
                o["discountAmount"].as_i64(),
                o["payAmount"].as_i64(),
                o["userCouponId"].as_i64()
            ),
            (Some(off), Some(3_000 - off), Some(uc))
        );
        assert_eq!(app.user_coupons(user).await[0]["status"], "USED");
        assert_problem(
            order(&app, user, &[(p, 1)], Some(uc)).await,
            409,
            "COUPON_NOT_USABLE",
        )
        .await;
        let other = app.create_user().await;
        assert_problem(
            order(&app, other, &[(p, 1)], Some(uc)).await,
            404,
            "USER_COUPON_NOT_FOUND",
        )
        .await;
        let c: Value = cancel(&app, user, o["id"].as_i64().unwrap())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(c["status"], "CANCELLED");
        assert_eq!(app.user_coupons(user).await[0]["status"], "AVAILABLE");
        assert_problem(
            cancel(&app, user, o["id"].as_i64().unwrap()).await,
            409,
            "ORDER_NOT_CANCELLABLE",
        )
        .await;
        assert_problem(
            pay(&app, user, o["id"].as_i64().unwrap()).await,
            409,
            "ORDER_NOT_PAYABLE",
        )
        .await;
    }
    assert_eq!(stock(&app, p).await, 100);
}

#[tokio::test]
async fn paying_debits_records_and_queues_the_event_exactly_once() {
    let app = spawn_app().await;
    let p = app.create_product(1_000, 10).await;
    let user = app.create_user().await;
    app.charge(user, 5_000).await;
    let o = placed(&app, user, &[(p, 3)], None).await;
    let id = o["id"].as_i64().unwrap();
    let res = pay(&app, user, id).await;
    assert_eq!(res.status(), StatusCode::OK);
    let paid: Value = res.json().await.unwrap();
    assert_eq!(
        (
            paid["status"].as_str(),
            paid["paidAmount"].as_i64(),
            paid["balance"].as_i64()
        ),
        (Some("PAID"), Some(3_000), Some(2_000))
    );
    let got: Value = app
        .get(&format!("/api/v1/orders/{id}?userId={user}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (got["status"].as_str(), got["paidAt"].clone()),
        (Some("PAID"), paid["paidAt"].clone())
    );
    let history: Value = app
        .get(&format!("/api/v1/points/history?userId={user}"))
        .await
        .json()
        .await
        .unwrap();
    let last = &history["items"][0];
    assert_eq!(
        (
            last["type"].as_str(),
            last["amount"].as_i64(),
            last["balanceAfter"].as_i64(),
            last["orderId"].as_i64()
        ),
        (Some("USE"), Some(3_000), Some(2_000), Some(id))
    );
    assert_problem(pay(&app, user, id).await, 409, "ORDER_NOT_PAYABLE").await;
    assert_problem(cancel(&app, user, id).await, 409, "ORDER_NOT_CANCELLABLE").await;
    assert_eq!(app.balance(user).await, 2_000);
    let event = app
        .db
        .query_scalar(&format!(
            "SELECT payload::text FROM outbox_events WHERE aggregate_id = {id}"
        ))
        .unwrap();
    // Stored as the server rendered it (jsonb would have reordered the keys), under a
    // time-ordered id.
    assert!(event.starts_with(r#"{"eventId":""#), "{event}");
    let event: Value = serde_json::from_str(&event).unwrap();
    let event_id = uuid::Uuid::parse_str(event["eventId"].as_str().unwrap()).unwrap();
    assert_eq!(event_id.get_version_num(), 7);
    assert_eq!(
        (
            event["eventType"].as_str(),
            event["order"]["payAmount"].as_i64(),
            event["order"]["items"][0]["quantity"].as_i64()
        ),
        (Some("ORDER_PAID"), Some(3_000), Some(3))
    );
}

#[tokio::test]
async fn failed_payments_change_nothing() {
    let app = spawn_app().await;
    let p = app.create_product(1_000, 10).await;
    let (user, other) = (app.create_user().await, app.create_user().await);
    app.charge(user, 100).await;
    app.charge(other, 100_000).await;
    let id = placed(&app, user, &[(p, 3)], None).await["id"]
        .as_i64()
        .unwrap();
    assert_problem(pay(&app, user, id).await, 409, "INSUFFICIENT_BALANCE").await;
    assert_problem(pay(&app, other, id).await, 404, "ORDER_NOT_FOUND").await;
    assert_problem(pay(&app, user, 987_654_321).await, 404, "ORDER_NOT_FOUND").await;
    assert_problem(pay(&app, 987_654_321, id).await, 404, "USER_NOT_FOUND").await;
    assert_eq!(
        (app.balance(user).await, app.balance(other).await),
        (100, 100_000)
    );
    assert_eq!(
        app.db
            .query_scalar("SELECT count(*) FROM outbox_events")
            .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn an_unpaid_order_expires_restoring_stock_and_coupon_exactly_once() {
    let app = spawn_app_with(|c| c.order_payment_timeout_secs = 1).await;
    let p = app.create_product(1_000, 5).await;
    let user = app.create_user().await;
    app.charge(user, 10_000).await;
    let coupon = app.create_coupon(5, "FIXED", 100).await;
    let uc = app.issue(user, coupon).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let id = placed(&app, user, &[(p, 2)], Some(uc)).await["id"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_problem(pay(&app, user, id).await, 409, "ORDER_EXPIRED").await;
    let res = app
        .admin(Method::POST, "/api/v1/admin/jobs/expire-orders", None)
        .await;
    let expired: Value = res.json().await.unwrap();
    assert!(
        expired["expired"].as_u64().unwrap() <= 1,
        "the scheduler may have got there first"
    );
    let got: Value = app
        .get(&format!("/api/v1/orders/{id}?userId={user}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "EXPIRED");
    assert_eq!(stock(&app, p).await, 5);
    assert_eq!(app.user_coupons(user).await[0]["status"], "AVAILABLE");
    let again: Value = app
        .admin(Method::POST, "/api/v1/admin/jobs/expire-orders", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["expired"], 0);
    assert_eq!(stock(&app, p).await, 5, "restored once");
    assert_eq!(app.balance(user).await, 10_000);
}

#[tokio::test]
async fn order_and_payment_idempotency_keys_act_once() {
    let app = spawn_app().await;
    let p = app.create_product(10, 10).await;
    let user = app.create_user().await;
    app.charge(user, 1_000).await;
    let body = json!({"userId": user, "items": [{"productId": p, "quantity": 2}]});
    let a: Value = app
        .post_with_key("/api/v1/orders", &body, "o-1")
        .await
        .json()
        .await
        .unwrap();
    let b = app.post_with_key("/api/v1/orders", &body, "o-1").await;
    assert_eq!(b.status(), StatusCode::CREATED);
    assert_eq!(b.json::<Value>().await.unwrap(), a);
    assert_eq!(stock(&app, p).await, 8);
    let other = json!({"userId": user, "items": [{"productId": p, "quantity": 3}]});
    assert_problem(
        app.post_with_key("/api/v1/orders", &other, "o-1").await,
        422,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    let pay_body = json!({"userId": user, "orderId": a["id"]});
    let x: Value = app
        .post_with_key("/api/v1/points/use", &pay_body, "p-1")
        .await
        .json()
        .await
        .unwrap();
    let y: Value = app
        .post_with_key("/api/v1/points/use", &pay_body, "p-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(x, y);
    assert_eq!(app.balance(user).await, 980);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_buyers_of_ten_units_never_oversell() {
    let app = spawn_app().await;
    let p = app.create_product(10, 10).await;
    let mut users = Vec::new();
    for _ in 0..30 {
        users.push(app.create_user().await);
    }
    let app = &app;
    let responses = futures_util::future::join_all(
        users
            .iter()
            .map(|u| async move { order(app, *u, &[(p, 1)], None).await }),
    )
    .await;
    let created = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    assert_eq!(created, 10);
    for res in responses
        .into_iter()
        .filter(|r| r.status() != StatusCode::CREATED)
    {
        assert_problem(res, 409, "OUT_OF_STOCK").await;
    }
    assert_eq!(stock(app, p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_charge_once_and_never_overdraw() {
    let app = spawn_app().await;
    let p = app.create_product(2_000, 10).await;
    let user = app.create_user().await;
    app.charge(user, 5_000).await;
    let first = placed(&app, user, &[(p, 1)], None).await["id"]
        .as_i64()
        .unwrap();
    let double = futures_util::future::join_all((0..10).map(|_| pay(&app, user, first))).await;
    assert_eq!(
        double
            .iter()
            .filter(|r| r.status() == StatusCode::OK)
            .count(),
        1
    );
    assert_eq!(app.balance(user).await, 3_000);
    let mut orders = Vec::new();
    for _ in 0..4 {
        orders.push(
            placed(&app, user, &[(p, 1)], None).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let paid = futures_util::future::join_all(orders.iter().map(|o| pay(&app, user, *o))).await;
    assert_eq!(
        paid.iter().filter(|r| r.status() == StatusCode::OK).count(),
        1
    );
    assert_eq!(app.balance(user).await, 1_000);
    let uses = app
        .db
        .query_scalar(&format!(
            "SELECT count(*) FROM point_history WHERE user_id = {user} AND kind = 'USE'"
        ))
        .unwrap();
    assert_eq!(uses, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_racing_cancel_wins_or_loses_completely() {
    let app = spawn_app().await;
    let p = app.create_product(100, 100).await;
    let user = app.create_user().await;
    app.charge(user, 100_000).await;
    let mut orders = Vec::new();
    for _ in 0..20 {
        orders.push(
            placed(&app, user, &[(p, 2)], None).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let races = orders
        .iter()
        .map(|o| async { tokio::join!(pay(&app, user, *o), cancel(&app, user, *o)) });
    for (paid, cancelled) in futures_util::future::join_all(races).await {
        assert!(
            paid.status().is_success() != cancelled.status().is_success(),
            "exactly one wins"
        );
    }
    let paid = app
        .db
        .query_scalar("SELECT count(*) FROM orders WHERE status = 'PAID'")
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let live_units = app.db.query_scalar("SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE o.status IN ('NOT_PAID', 'PAID')").unwrap();
    // Invariants 1 and 2: money and stock add up.
    assert_eq!(app.balance(user).await, 100_000 - paid * 200);
    assert_eq!(
        stock(&app, p).await + live_units.parse::<i64>().unwrap(),
        100
    );
    assert_eq!(live_units.parse::<i64>().unwrap(), paid * 2);
}

#[tokio::test]
async fn a_paid_orders_coupon_stays_used_after_the_campaign_ends_and_an_unused_one_expires() {
    let app = spawn_app().await;
    let p = app.create_product(1_000, 5).await;
    let user = app.create_user().await;
    app.charge(user, 10_000).await;
    let (used, unused) = (
        app.create_coupon(5, "FIXED", 100).await,
        app.create_coupon(5, "RATE", 10).await,
    );
    let uc = app.issue(user, used).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    app.issue(user, unused).await;
    let id = placed(&app, user, &[(p, 1)], Some(uc)).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(pay(&app, user, id).await.status(), StatusCode::OK);

    // Both campaigns end.
    app.db
        .execute(&format!(
            "UPDATE user_coupons SET expires_at = now() - interval '1 second' WHERE user_id = {user}"
        ))
        .unwrap();
    let copies = app.user_coupons(user).await;
    let status_of = |coupon: i64| {
        copies
            .iter()
            .find(|c| c["couponId"] == coupon)
            .map(|c| c["status"].clone())
            .unwrap()
    };
    assert_eq!(status_of(used), "USED", "a paid order still holds it");
    assert_eq!(status_of(unused), "EXPIRED");
}

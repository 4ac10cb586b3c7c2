use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn charges_add_up_and_the_history_lists_them_newest_first() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let res = app.charge(user, 1_000).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"userId": user, "balance": 1_000})
    );
    app.charge(user, 2_500).await;
    assert_eq!(app.balance(user).await, 3_500);

    let page: Value = app
        .get(&format!("/api/v1/points/history?userId={user}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            page["page"].as_i64(),
            page["size"].as_i64(),
            page["totalCount"].as_i64()
        ),
        (Some(1), Some(20), Some(2))
    );
    let rows: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["type"].clone(),
                i["amount"].clone(),
                i["balanceAfter"].clone(),
                i["orderId"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (json!("CHARGE"), json!(2_500), json!(3_500), Value::Null),
            (json!("CHARGE"), json!(1_000), json!(1_000), Value::Null),
        ]
    );
}

#[tokio::test]
async fn the_history_is_paged() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    for amount in 1..=5 {
        app.charge(user, amount).await;
    }
    let page: Value = app
        .get(&format!(
            "/api/v1/points/history?userId={user}&page=2&size=2"
        ))
        .await
        .json()
        .await
        .unwrap();
    let amounts: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, vec![3, 2]);
    assert_eq!(page["totalCount"], 5);
    for query in ["page=0", "size=0", "size=101", "page=x", "size=1.5"] {
        let res = app
            .get(&format!("/api/v1/points/history?userId={user}&{query}"))
            .await;
        assert_problem(res, 400, "VALIDATION_FAILED").await;
    }
}

#[tokio::test]
async fn charge_amounts_outside_one_to_a_million_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    app.charge(user, 100).await;
    for bad in [
        json!(0),
        json!(-1),
        json!(1_000_001),
        json!(1.5),
        json!("100"),
        Value::Null,
        json!(1e30),
        json!(i64::MIN),
    ] {
        let res = app
            .post(
                "/api/v1/points/charge",
                &json!({"userId": user, "amount": bad}),
            )
            .await;
        let problem = assert_problem(res, 400, "VALIDATION_FAILED").await;
        if bad.is_i64() {
            assert_eq!(problem["errors"][0]["field"], "amount", "{problem}");
        }
    }
    let res = app
        .post("/api/v1/points/charge", &json!({"userId": user}))
        .await;
    assert_problem(res, 400, "VALIDATION_FAILED").await;
    assert_eq!(app.balance(user).await, 100);
    assert_eq!(app.history_count(user).await, 1);
}

#[tokio::test]
async fn a_million_is_the_largest_single_charge() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    assert_eq!(app.charge(user, 1_000_000).await.status(), StatusCode::OK);
    assert_eq!(app.balance(user).await, 1_000_000);
}

#[tokio::test]
async fn charging_an_unknown_user_is_404_and_creates_nothing() {
    let app = spawn_app().await;
    assert_problem(app.charge(987_654_321, 100).await, 404, "USER_NOT_FOUND").await;
    assert_eq!(
        app.db
            .query_scalar("SELECT count(*) FROM point_history")
            .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn the_balance_cap_is_enforced_exactly() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    for _ in 0..99 {
        app.charge(user, 1_000_000).await;
    }
    assert_eq!(app.charge(user, 999_999).await.status(), StatusCode::OK);
    assert_problem(app.charge(user, 2).await, 409, "BALANCE_LIMIT_EXCEEDED").await;
    assert_eq!(app.charge(user, 1).await.status(), StatusCode::OK);
    assert_problem(app.charge(user, 1).await, 409, "BALANCE_LIMIT_EXCEEDED").await;
    assert_eq!(app.balance(user).await, 100_000_000);
    assert_eq!(app.history_count(user).await, 101);
}

#[tokio::test]
async fn reading_points_of_unknown_or_malformed_users_fails_cleanly() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/v1/points?userId=987654321").await,
        404,
        "USER_NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get("/api/v1/points/history?userId=987654321").await,
        404,
        "USER_NOT_FOUND",
    )
    .await;
    for query in ["", "?userId=abc", "?userId=0", "?userId=", "?user=1"] {
        assert_problem(
            app.get(&format!("/api/v1/points{query}")).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_charges_of_one_user_all_count() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let requests = (0..100).map(|_| app.charge(user, 100));
    let statuses: Vec<_> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(app.balance(user).await, 10_000);
    let page: Value = app
        .get(&format!("/api/v1/points/history?userId={user}&size=100"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["totalCount"], 100);
    let mut after: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["balanceAfter"].as_i64().unwrap())
        .collect();
    after.sort_unstable();
    assert_eq!(after, (1..=100).map(|i| i * 100).collect::<Vec<_>>());
}

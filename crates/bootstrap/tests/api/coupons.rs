use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_coupon_is_issued_once_per_user_and_listed() {
    let app = spawn_app().await;
    let coupon = app.create_coupon(3, "FIXED", 500).await;
    let user = app.create_user().await;
    let res = app.issue(user, coupon).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let issued: Value = res.json().await.unwrap();
    assert_eq!(
        (
            issued["userId"].as_i64(),
            issued["couponId"].as_i64(),
            issued["status"].as_str(),
            issued["discountType"].as_str(),
            issued["discountValue"].as_i64()
        ),
        (
            Some(user),
            Some(coupon),
            Some("AVAILABLE"),
            Some("FIXED"),
            Some(500)
        )
    );
    assert_eq!(issued["usedAt"], Value::Null);
    assert_eq!(issued["expiresAt"], app.coupon(coupon).await["endsAt"]);
    assert_eq!(app.user_coupons(user).await, vec![issued]);
    assert_problem(app.issue(user, coupon).await, 409, "COUPON_ALREADY_ISSUED").await;
    let c = app.coupon(coupon).await;
    assert_eq!(
        (c["totalQuantity"].as_i64(), c["remainingQuantity"].as_i64()),
        (Some(3), Some(2))
    );
}

#[tokio::test]
async fn refusals_come_in_the_documented_order_and_change_nothing() {
    let app = spawn_app().await;
    let coupon = app.create_coupon(1, "RATE", 10).await;
    let first = app.create_user().await;
    assert_eq!(app.issue(first, coupon).await.status(), StatusCode::CREATED);
    let late = app.create_user().await;
    assert_problem(app.issue(late, coupon).await, 409, "COUPON_SOLD_OUT").await;
    assert_problem(app.issue(first, coupon).await, 409, "COUPON_ALREADY_ISSUED").await;
    assert_problem(app.issue(987_654_321, coupon).await, 404, "USER_NOT_FOUND").await;
    assert_problem(
        app.issue(987_654_321, 987_654_321).await,
        404,
        "USER_NOT_FOUND",
    )
    .await;
    assert_problem(app.issue(late, 987_654_321).await, 404, "COUPON_NOT_FOUND").await;

    let now = Utc::now();
    for (starts, ends) in [
        (now + Duration::hours(1), now + Duration::hours(2)),
        (now - Duration::hours(2), now - Duration::hours(1)),
    ] {
        let body = json!({"name": "window", "discountType": "FIXED", "discountValue": 1, "totalQuantity": 5,
                          "startsAt": starts.to_rfc3339(), "endsAt": ends.to_rfc3339()});
        let res = app
            .admin(Method::POST, "/api/v1/admin/coupons", Some(&body))
            .await;
        let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        assert_problem(app.issue(late, id).await, 409, "COUPON_NOT_ISSUABLE").await;
        assert_eq!(app.coupon(id).await["remainingQuantity"], 5);
    }
    assert!(app.user_coupons(late).await.is_empty());
    for body in [
        json!({"userId": late}),
        json!({"couponId": coupon}),
        json!({"userId": 0, "couponId": coupon}),
        json!({"userId": late, "couponId": "1"}),
    ] {
        assert_problem(
            app.post("/api/v1/coupons/issue", &body).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
}

#[tokio::test]
async fn coupon_reads_reject_unknown_and_malformed_ids() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/v1/coupons/987654321").await,
        404,
        "COUPON_NOT_FOUND",
    )
    .await;
    assert_problem(app.get("/api/v1/coupons/x").await, 400, "VALIDATION_FAILED").await;
    assert_problem(
        app.get("/api/v1/coupons?userId=987654321").await,
        404,
        "USER_NOT_FOUND",
    )
    .await;
    assert_problem(app.get("/api/v1/coupons").await, 400, "VALIDATION_FAILED").await;
}

#[tokio::test]
async fn a_coupon_past_its_end_is_listed_as_expired() {
    let app = spawn_app().await;
    let coupon = app.create_coupon(2, "FIXED", 100).await;
    let user = app.create_user().await;
    app.issue(user, coupon).await;
    app.db
        .execute(&format!("UPDATE user_coupons SET expires_at = now() - interval '1 second' WHERE coupon_id = {coupon}"))
        .unwrap();
    assert_eq!(app.user_coupons(user).await[0]["status"], "EXPIRED");
}

#[tokio::test]
async fn coupon_creation_is_validated() {
    let app = spawn_app().await;
    let now = Utc::now();
    let base = json!({"name": "x", "discountType": "FIXED", "discountValue": 100, "totalQuantity": 1,
                      "endsAt": (now + Duration::hours(1)).to_rfc3339()});
    let res = app
        .admin(Method::POST, "/api/v1/admin/coupons", Some(&base))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let starts =
        chrono::DateTime::parse_from_rfc3339(created["startsAt"].as_str().unwrap()).unwrap();
    assert!(
        (starts.with_timezone(&Utc) - now).num_seconds().abs() < 5,
        "startsAt defaults to now"
    );
    for patch in [
        json!({"discountType": "BOGUS"}),
        json!({"discountValue": 0}),
        json!({"totalQuantity": 0}),
        json!({"discountType": "RATE", "discountValue": 101}),
        json!({"endsAt": (now - Duration::hours(1)).to_rfc3339(), "startsAt": now.to_rfc3339()}),
        json!({"endsAt": "tomorrow"}),
        json!({"name": ""}),
    ] {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        assert_problem(
            app.admin(Method::POST, "/api/v1/admin/coupons", Some(&body))
                .await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    assert_eq!(
        app.db.query_scalar("SELECT count(*) FROM coupons").unwrap(),
        "1"
    );
}

#[tokio::test]
async fn issuing_with_an_idempotency_key_replays_the_copy() {
    let app = spawn_app().await;
    let coupon = app.create_coupon(5, "FIXED", 100).await;
    let user = app.create_user().await;
    let body = json!({"userId": user, "couponId": coupon});
    let first = app
        .post_with_key("/api/v1/coupons/issue", &body, "issue-1")
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = app
        .post_with_key("/api/v1/coupons/issue", &body, "issue-1")
        .await;
    assert_eq!(
        again.status(),
        StatusCode::CREATED,
        "the first response, not ALREADY_ISSUED"
    );
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.coupon(coupon).await["remainingQuantity"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_users_racing_for_fifty_coupons_get_exactly_fifty() {
    let app = spawn_app().await;
    let coupon = app.create_coupon(50, "FIXED", 100).await;
    let mut users = Vec::new();
    for _ in 0..200 {
        users.push(app.create_user().await);
    }
    let responses =
        futures_util::future::join_all(users.iter().map(|u| app.issue(*u, coupon))).await;
    let (mut issued, mut sold_out) = (0, 0);
    for res in responses {
        match res.status().as_u16() {
            201 => issued += 1,
            _ => {
                assert_problem(res, 409, "COUPON_SOLD_OUT").await;
                sold_out += 1;
            }
        }
    }
    assert_eq!((issued, sold_out), (50, 150));
    assert_eq!(app.coupon(coupon).await["remainingQuantity"], 0);
    let copies = app
        .db
        .query_scalar(&format!(
            "SELECT count(DISTINCT user_id) FROM user_coupons WHERE coupon_id = {coupon}"
        ))
        .unwrap();
    assert_eq!(copies, "50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_firing_thirty_requests_at_once_gets_one_copy() {
    let app = spawn_app().await;
    let coupon = app.create_coupon(50, "FIXED", 100).await;
    let user = app.create_user().await;
    let responses = futures_util::future::join_all((0..30).map(|_| app.issue(user, coupon))).await;
    let mut created = 0;
    for res in responses {
        if res.status() == StatusCode::CREATED {
            created += 1;
        } else {
            assert_problem(res, 409, "COUPON_ALREADY_ISSUED").await;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.user_coupons(user).await.len(), 1);
    assert_eq!(app.coupon(coupon).await["remainingQuantity"], 49);
}

/// With every write of copies slow (1.5 s a statement, whatever its size), issues sent
/// 25 ms apart fill the batcher's group slots and then its queue of one; the rest are refused at once with 503 and
/// `Retry-After`, having changed nothing, and their Idempotency-Keys are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_limit_an_issue_is_503_with_retry_after_and_changes_nothing() {
    let app = spawn_app_with(|c| c.coupon_issue_queue_limit = 1).await;
    let coupon = app.create_coupon(50, "FIXED", 100).await;
    let mut users = Vec::new();
    for _ in 0..20 {
        users.push(app.create_user().await);
    }
    app.db
        .execute(
            "CREATE FUNCTION slow_copy() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$; \
             CREATE TRIGGER slow_copy BEFORE INSERT ON user_coupons \
             FOR EACH STATEMENT EXECUTE FUNCTION slow_copy();",
        )
        .unwrap();

    let mut sent = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let request = app
            .client
            .post(app.url("/api/v1/coupons/issue"))
            .header("Idempotency-Key", format!("overload-{i}"))
            .json(&json!({"userId": user, "couponId": coupon}));
        sent.push(tokio::spawn(async move { request.send().await.unwrap() }));
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (mut created, mut refused) = (Vec::new(), Vec::new());
    for ((i, task), user) in sent.into_iter().enumerate().zip(&users) {
        let res = task.await.unwrap();
        if res.status() == StatusCode::CREATED {
            created.push(*user);
            continue;
        }
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            retry_after.is_some_and(|secs| secs >= 1),
            "Retry-After in seconds: {retry_after:?}"
        );
        assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
        refused.push((i, *user));
    }
    assert!(
        created.len() >= 2,
        "the issues in flight and the one queued are written: {created:?}"
    );
    assert!(
        !refused.is_empty(),
        "some issues are refused under overload"
    );

    app.db
        .execute("DROP TRIGGER slow_copy ON user_coupons")
        .unwrap();
    let taken = i64::try_from(created.len()).unwrap();
    assert_eq!(app.coupon(coupon).await["remainingQuantity"], 50 - taken);
    for user in &created {
        assert_eq!(app.user_coupons(*user).await.len(), 1);
    }
    for (_, user) in &refused {
        assert!(app.user_coupons(*user).await.is_empty(), "user {user}");
    }

    // The refusal released its key: the same request now runs and is issued.
    let (i, user) = refused[0];
    let retried = app
        .post_with_key(
            "/api/v1/coupons/issue",
            &json!({"userId": user, "couponId": coupon}),
            &format!("overload-{i}"),
        )
        .await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.coupon(coupon).await["remainingQuantity"], 49 - taken);
}

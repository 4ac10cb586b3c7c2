use reqwest::StatusCode;
use serde_json::{Value, json};

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

/// Everything a body route could change, read through the API.
async fn shop_state(app: &crate::helpers::TestApp, user: i64, product: i64, coupon: i64) -> Value {
    let read = |path: String| async move {
        let res = app.get(&path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        res.json::<Value>().await.unwrap()
    };
    json!({
        "balance": app.balance(user).await,
        "history": app.history_count(user).await,
        "product": app.product(product).await,
        "products": read("/api/v1/products?size=100".to_owned()).await,
        "coupon": app.coupon(coupon).await,
        "userCoupons": app.user_coupons(user).await,
        "orders": read(format!("/api/v1/orders?userId={user}&size=100")).await,
    })
}

/// The sloppy spellings of one valid body: each must be refused whole.
fn sloppy_variants(valid: &Value) -> Vec<(String, String)> {
    let object = valid.as_object().unwrap();
    let text = valid.to_string();
    let (first_key, first_value) = object.iter().next().unwrap();
    let decoy = match first_value {
        Value::String(_) => json!("decoy"),
        Value::Number(_) => json!(999_999_999),
        other => other.clone(),
    };
    let mut variants = vec![
        (
            "the body as an array".to_owned(),
            Value::Array(object.values().cloned().collect()).to_string(),
        ),
        (
            // The valid value comes last: a parser where the last key wins would accept it.
            format!("`{first_key}` twice"),
            format!("{{\"{first_key}\":{decoy},{}", &text[1..]),
        ),
    ];
    for (key, value) in object {
        match value {
            Value::String(_) => {
                let mut bad = valid.clone();
                bad[key.as_str()] = json!("bad\u{0}name");
                variants.push((format!("NUL in `{key}`"), bad.to_string()));
                let mut bad = valid.clone();
                bad[key.as_str()] = json!("two\nlines");
                variants.push((format!("a line break in `{key}`"), bad.to_string()));
            }
            Value::Number(n) => {
                let mut bad = valid.clone();
                bad[key.as_str()] = json!(n.as_f64().unwrap_or_default() + 0.5);
                variants.push((format!("a fraction in `{key}`"), bad.to_string()));
            }
            Value::Array(items) => {
                // Each object inside written positionally as an array.
                for (i, item) in items.iter().enumerate() {
                    if let Some(fields) = item.as_object() {
                        let mut bad = valid.clone();
                        bad[key.as_str()][i] = Value::Array(fields.values().cloned().collect());
                        variants.push((format!("`{key}[{i}]` as an array"), bad.to_string()));
                        let inner = item.to_string();
                        let (k, _) = fields.iter().next().unwrap();
                        let dup = format!("{{\"{k}\":999999999,{}", &inner[1..]);
                        let mut outer = valid.clone();
                        outer[key.as_str()][i] = json!("__DUP__");
                        variants.push((
                            format!("`{key}[{i}].{k}` twice"),
                            outer.to_string().replace("\"__DUP__\"", &dup),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    variants
}

#[tokio::test]
async fn every_body_route_refuses_sloppy_json_at_any_depth_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    assert_eq!(app.charge(user, 100_000).await.status(), StatusCode::OK);
    let product = app.create_product(1_000, 50).await;
    let coupon = app.create_coupon(10, "FIXED", 500).await;
    let other_coupon = app.create_coupon(10, "RATE", 10).await;
    assert_eq!(app.issue(user, coupon).await.status(), StatusCode::CREATED);
    let place = |items: Value| {
        let app = &app;
        async move {
            let res = app
                .post("/api/v1/orders", &json!({"userId": user, "items": items}))
                .await;
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
        }
    };
    let to_pay = place(json!([{"productId": product, "quantity": 1}])).await;
    let to_cancel = place(json!([{"productId": product, "quantity": 2}])).await;
    let now = chrono::Utc::now();
    let (user_only, user_coupon) = (
        json!({"userId": user}),
        app.user_coupons(user).await[0]["id"].clone(),
    );
    use reqwest::Method;
    let routes: Vec<(Method, String, Value, bool)> = vec![
        (
            Method::POST,
            CHARGE.into(),
            json!({"userId": user, "amount": 700}),
            false,
        ),
        (
            Method::POST,
            "/api/v1/coupons/issue".into(),
            json!({"userId": user, "couponId": other_coupon}),
            false,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            json!({"userId": user, "items": [{"productId": product, "quantity": 3}],
                   "userCouponId": user_coupon}),
            false,
        ),
        (
            Method::POST,
            "/api/v1/points/use".into(),
            json!({"userId": user, "orderId": to_pay}),
            false,
        ),
        (
            Method::POST,
            format!("/api/v1/orders/{to_cancel}/cancel"),
            user_only,
            false,
        ),
        (
            Method::POST,
            "/api/v1/admin/products".into(),
            json!({"name": "Lamp", "description": "warm", "price": 10, "stock": 1}),
            true,
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/products/{product}"),
            json!({"name": "Renamed", "description": "new", "price": 1_100}),
            true,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/products/{product}/restock"),
            json!({"quantity": 5}),
            true,
        ),
        (
            Method::POST,
            "/api/v1/admin/coupons".into(),
            json!({"name": "Later", "discountType": "FIXED", "discountValue": 100,
                   "totalQuantity": 3, "startsAt": now.to_rfc3339(),
                   "endsAt": (now + chrono::Duration::days(1)).to_rfc3339()}),
            true,
        ),
    ];
    let send = |method: Method, path: String, body: String, admin: bool| {
        let mut req = app
            .client
            .request(method, app.url(&path))
            .header("content-type", "application/json")
            .body(body);
        if admin {
            req = req.bearer_auth(crate::helpers::ADMIN_TOKEN);
        }
        req.send()
    };
    let before = shop_state(&app, user, product, coupon).await;
    let mut tried = 0;
    for (method, path, valid, admin) in &routes {
        for (what, body) in sloppy_variants(valid) {
            let res = send(method.clone(), path.clone(), body.clone(), *admin)
                .await
                .unwrap();
            let status = res.status();
            let problem: Value = res.json().await.unwrap();
            assert_eq!(
                (status.as_u16(), problem["code"].as_str()),
                (400, Some("VALIDATION_FAILED")),
                "{method} {path} with {what}: {body} → {problem}"
            );
            tried += 1;
        }
    }
    assert!(tried >= 50, "only {tried} variants");
    assert_eq!(shop_state(&app, user, product, coupon).await, before);
    // The valid bodies themselves are accepted: the refusals above were about the spelling.
    for (method, path, valid, admin) in routes {
        let res = send(method.clone(), path.clone(), valid.to_string(), admin)
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "{method} {path}: {}",
            res.status()
        );
    }
}

#[tokio::test]
async fn admin_inputs_the_database_could_not_store_are_validation_problems() {
    let app = spawn_app().await;
    let coupon = |starts: &str, ends: &str| {
        json!({"name": "Tiny", "discountType": "FIXED", "discountValue": 100,
               "totalQuantity": 3, "startsAt": starts, "endsAt": ends})
    };
    for (body, field) in [
        // Ordered in nanoseconds, the same microsecond as stored.
        (
            coupon(
                "2031-01-01T00:00:00.0000001Z",
                "2031-01-01T00:00:00.0000009Z",
            ),
            "endsAt",
        ),
        (
            coupon("1969-12-31T23:59:59Z", "2031-01-01T00:00:00Z"),
            "startsAt",
        ),
        (
            coupon("0001-01-01T00:00:00Z", "2031-01-01T00:00:00Z"),
            "startsAt",
        ),
    ] {
        let res = app
            .admin(reqwest::Method::POST, "/api/v1/admin/coupons", Some(&body))
            .await;
        let problem = assert_problem(res, 400, "VALIDATION_FAILED").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body} → {problem}");
    }
    let ok = app
        .admin(
            reqwest::Method::POST,
            "/api/v1/admin/coupons",
            Some(&coupon(
                "2031-01-01T00:00:00.000001Z",
                "2031-01-01T00:00:00.000002Z",
            )),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::CREATED);
}

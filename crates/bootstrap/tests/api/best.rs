use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn sell(app: &TestApp, user: i64, product: i64, quantity: i64) {
    let res = app
        .post(
            "/api/v1/orders",
            &json!({"userId": user, "items": [{"productId": product, "quantity": quantity}]}),
        )
        .await;
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let paid = app
        .post(
            "/api/v1/points/use",
            &json!({"userId": user, "orderId": id}),
        )
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
}

async fn refresh_and_read(app: &TestApp) -> Value {
    let res = app
        .admin(
            Method::POST,
            "/api/v1/admin/jobs/refresh-best-sellers",
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.json::<Value>().await.unwrap()["refreshedAt"].is_string());
    app.get("/api/v1/products/best").await.json().await.unwrap()
}

#[tokio::test]
async fn best_sellers_rank_paid_quantities_over_three_business_days() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    app.charge(user, 1_000_000).await;
    let mut products = Vec::new();
    for _ in 0..7 {
        // One at a time, so ids follow the vector's order (the tie-break is by id).
        products.push(app.create_product(1, 1_000).await);
    }
    // Quantities: p0 5, p1 7, p2 7 (tie: lower id first), p3 1, p4 2, p5 3; p6 ordered but unpaid.
    for (p, q) in [(0, 5), (1, 7), (2, 7), (3, 1), (4, 2), (5, 3)] {
        sell(&app, user, products[p], q).await;
    }
    app.post(
        "/api/v1/orders",
        &json!({"userId": user, "items": [{"productId": products[6], "quantity": 50}]}),
    )
    .await;

    let best = refresh_and_read(&app).await;
    let ranked: Vec<(i64, i64, i64)> = best["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["rank"].as_i64().unwrap(),
                i["productId"].as_i64().unwrap(),
                i["salesQuantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        vec![
            (1, products[1], 7),
            (2, products[2], 7),
            (3, products[0], 5),
            (4, products[5], 3),
            (5, products[4], 2)
        ]
    );
    let (from, to) = (best["from"].as_str().unwrap(), best["to"].as_str().unwrap());
    let days = chrono::NaiveDate::parse_from_str(to, "%Y-%m-%d").unwrap()
        - chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d").unwrap();
    assert_eq!(days.num_days(), 2);
    assert_eq!(best["items"][0]["stock"], 993, "current stock");

    // Re-running the roll-up never double counts.
    let again = refresh_and_read(&app).await;
    assert_eq!(again["items"], best["items"]);
    let rows = app
        .db
        .query_scalar(&format!(
            "SELECT sum(quantity) FROM daily_product_sales WHERE product_id = {}",
            products[1]
        ))
        .unwrap();
    assert_eq!(rows, "7");
}

#[tokio::test]
async fn with_no_sales_the_ranking_is_empty() {
    let app = spawn_app().await;
    let best: Value = app.get("/api/v1/products/best").await.json().await.unwrap();
    assert_eq!(best["items"], json!([]));
    assert!(best["from"].is_string() && best["to"].is_string());
}

/// Best sellers are routed ahead of the `/api/v1` scopes by their full path: only that
/// path, only GET; the paths next to it still reach the products' routes, and the metrics
/// name it by its path.
#[tokio::test]
async fn best_sellers_route_is_exactly_its_path() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/products/best"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
    for path in ["/api/v1/products/best/", "/api/v1/products/best/1"] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Not an id: the products' own route refuses it.
    let res = app.get("/api/v1/products/bestx").await;
    assert_problem(res, 400, "VALIDATION_FAILED").await;
    let product = app.create_product(3, 1_000).await;
    assert_eq!(app.product(product).await["id"], product);
    assert_eq!(app.get("/api/v1/products").await.status(), StatusCode::OK);
    let res = app.get("/api/v1/products/best").await;
    assert_eq!(res.status(), StatusCode::OK);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"endpoint="/api/v1/products/best""#),
        "{metrics}"
    );
}

/// The answer carries an `ETag` naming its ranking: the same ranking, however often
/// refreshed, keeps it and `If-None-Match` gets 304 with no body; a new ranking gets a new
/// one and 200 again.
#[tokio::test]
async fn best_sellers_carry_an_etag_and_an_unchanged_ranking_is_304() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    app.charge(user, 1_000_000).await;
    let product = app.create_product(1, 1_000).await;
    sell(&app, user, product, 2).await;
    let first = refresh_and_read(&app).await;
    let res = app.get("/api/v1/products/best").await;
    assert_eq!(res.status(), StatusCode::OK);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    assert_eq!(res.json::<Value>().await.unwrap(), first);

    let conditional = |tag: &str| {
        app.client
            .get(format!("{}/api/v1/products/best", app.base))
            .header("If-None-Match", tag.to_owned())
            .send()
    };
    let res = conditional(&etag).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.bytes().await.unwrap().is_empty());
    // Weak comparison, a list, and `*` all match; another tag does not.
    for tag in [
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        assert_eq!(
            conditional(&tag).await.unwrap().status(),
            StatusCode::NOT_MODIFIED,
            "{tag}"
        );
    }
    assert_eq!(
        conditional("\"other\"").await.unwrap().status(),
        StatusCode::OK
    );

    // Refreshed with nothing new: the same tag, still 304.
    assert_eq!(refresh_and_read(&app).await, first);
    assert_eq!(
        conditional(&etag).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    // A new sale changes the ranking, its tag and the answer.
    sell(&app, user, product, 3).await;
    let second = refresh_and_read(&app).await;
    assert_ne!(second, first);
    let res = conditional(&etag).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_ne!(res.headers()["etag"], etag.as_str());
    assert_eq!(res.json::<Value>().await.unwrap(), second);
}

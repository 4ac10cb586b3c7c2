use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn liveness_and_readiness_are_up_with_a_request_id() {
    let app = spawn_app().await;
    let res = app.get("/health/live").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers()["x-request-id"].is_empty());
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "UP"}));
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn readiness_shows_the_outbox_listener_and_metrics_its_gauge() {
    let app = spawn_app().await;
    let listening = json!({"status": "UP", "components": {"outboxListener": {"status": "UP"}}});
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let res = app.get("/health/ready").await;
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.json::<Value>().await.unwrap();
        if body == listening {
            break;
        }
        assert_eq!(
            body["components"]["outboxListener"]["status"], "DOWN",
            "{body}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "never listening: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("\nshop_outbox_listener_up 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn while_the_database_is_unreachable_readiness_and_requests_are_503_then_recover() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    app.db.set_reachable(false).unwrap();
    assert_problem(app.get("/health/ready").await, 503, "SERVICE_UNAVAILABLE").await;
    assert_problem(app.charge(user, 10).await, 503, "SERVICE_UNAVAILABLE").await;
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    app.db.set_reachable(true).unwrap();
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
    assert_eq!(app.charge(user, 10).await.status(), StatusCode::OK);
    assert_eq!(app.balance(user).await, 10);
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_requests_and_the_pool() {
    let app = spawn_app().await;
    app.get("/health/live").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        text.contains("# TYPE shop_http_requests_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains(r#"endpoint="/health/live""#), "{text}");
    assert!(text.contains("shop_db_pool_connections"), "{text}");
    for reason in ["deadlock", "serialization"] {
        assert!(
            text.contains(&format!(
                r#"shop_db_transaction_retries_total{{reason="{reason}"}} "#
            )),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_the_docs_ui_is_served() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    let served: BTreeSet<String> = [
        "GET /api/v1/products",
        "GET /api/v1/products/{id}",
        "GET /api/v1/coupons",
        "POST /api/v1/coupons/issue",
        "GET /api/v1/coupons/{couponId}",
        "POST /api/v1/admin/products",
        "PATCH /api/v1/admin/products/{id}",
        "POST /api/v1/admin/products/{id}/restock",
        "POST /api/v1/admin/coupons",
        "POST /api/v1/admin/jobs/expire-orders",
        "POST /api/v1/admin/jobs/refresh-best-sellers",
        "GET /api/v1/admin/outbox",
        "GET /api/v1/products/best",
        "POST /api/v1/orders",
        "GET /api/v1/orders",
        "GET /api/v1/orders/{id}",
        "POST /api/v1/orders/{id}/cancel",
        "POST /api/v1/points/use",
        "POST /api/v1/users",
        "GET /api/v1/users/{id}",
        "POST /api/v1/points/charge",
        "GET /api/v1/points",
        "GET /api/v1/points/history",
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, served);
    // And every documented operation is routed (no route-level 404 or 405).
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path.replace("{id}", "1").replace("{couponId}", "1") + "?userId=1";
        let res = app
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path),
            )
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{op}");
        if res.status() == StatusCode::NOT_FOUND {
            let body: Value = res.json().await.unwrap();
            assert_ne!(
                body["code"], "NOT_FOUND",
                "{op} is documented but not routed"
            );
        }
    }
    let page = app.get("/docs").await;
    assert_eq!(page.status(), StatusCode::OK, "redirects to /docs/");
    assert!(page.text().await.unwrap().to_lowercase().contains("<html"));
    let js = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(js.status(), StatusCode::OK, "assets are embedded");
}

#[tokio::test]
async fn every_openapi_operation_has_a_distinct_stable_operation_id() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut ids: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let op_name = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{op_name} has no operationId"));
            assert!(!id.is_empty(), "{op_name} has an empty operationId");
            ids.push((id.to_owned(), op_name));
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for (id, op) in &ids {
        if let Some(other) = seen.insert(id.clone(), op.clone()) {
            panic!("operationId {id} is used by both {other} and {op}");
        }
    }
    // The ids are part of the contract (generated clients name methods after
    // them), so pin them.
    let expected: BTreeSet<(String, String)> = [
        ("createUser", "POST /api/v1/users"),
        ("getUser", "GET /api/v1/users/{id}"),
        ("chargePoints", "POST /api/v1/points/charge"),
        ("getBalance", "GET /api/v1/points"),
        ("listPointHistory", "GET /api/v1/points/history"),
        ("payOrder", "POST /api/v1/points/use"),
        ("listProducts", "GET /api/v1/products"),
        ("getProduct", "GET /api/v1/products/{id}"),
        ("getBestSellers", "GET /api/v1/products/best"),
        ("issueCoupon", "POST /api/v1/coupons/issue"),
        ("listUserCoupons", "GET /api/v1/coupons"),
        ("getCoupon", "GET /api/v1/coupons/{couponId}"),
        ("placeOrder", "POST /api/v1/orders"),
        ("getOrder", "GET /api/v1/orders/{id}"),
        ("listOrders", "GET /api/v1/orders"),
        ("cancelOrder", "POST /api/v1/orders/{id}/cancel"),
        ("adminCreateProduct", "POST /api/v1/admin/products"),
        ("adminUpdateProduct", "PATCH /api/v1/admin/products/{id}"),
        (
            "adminRestockProduct",
            "POST /api/v1/admin/products/{id}/restock",
        ),
        ("adminCreateCoupon", "POST /api/v1/admin/coupons"),
        ("adminExpireOrders", "POST /api/v1/admin/jobs/expire-orders"),
        (
            "adminRefreshBestSellers",
            "POST /api/v1/admin/jobs/refresh-best-sellers",
        ),
        ("adminOutboxCounts", "GET /api/v1/admin/outbox"),
        ("getLiveness", "GET /health/live"),
        ("getReadiness", "GET /health/ready"),
        ("getMetrics", "GET /metrics"),
    ]
    .into_iter()
    .map(|(id, op)| (id.to_owned(), op.to_owned()))
    .collect();
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test]
async fn a_graceful_stop_ends_the_server_and_its_schedulers() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    app.handle.stop(true).await;
    let finished = tokio::time::timeout(Duration::from_secs(10), app.stopped).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "{finished:?}");
}

#[tokio::test]
async fn the_openapi_document_states_the_bounds_and_refusals_the_server_enforces() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut keyed = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let name = format!("{} {path}", method.to_uppercase());
            let responses = op["responses"].as_object().unwrap();
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(responses.contains_key(status), "{name} lacks {status}");
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for param in &params {
                let schema = &param["schema"];
                match param["name"].as_str().unwrap() {
                    "Idempotency-Key" => {
                        keyed.push(name.clone());
                        assert_eq!(
                            (
                                &schema["minLength"],
                                &schema["maxLength"],
                                &schema["pattern"]
                            ),
                            (&json!(1), &json!(255), &json!("^[!-~]+$")),
                            "{name}"
                        );
                        assert!(responses.contains_key("422"), "{name} lacks 422");
                    }
                    "page" => assert_eq!(schema["maximum"], 1_000_000, "{name}"),
                    "size" => assert_eq!(
                        (&schema["minimum"], &schema["maximum"]),
                        (&json!(1), &json!(100)),
                        "{name}"
                    ),
                    _ => {}
                }
            }
        }
    }
    keyed.sort();
    assert_eq!(
        keyed,
        [
            "POST /api/v1/coupons/issue",
            "POST /api/v1/orders",
            "POST /api/v1/points/charge",
            "POST /api/v1/points/use",
        ]
    );
    // A user needs no body.
    assert_eq!(
        doc["paths"]["/api/v1/users"]["post"]["requestBody"]["required"],
        false
    );
}

/// A migration that fails on a database that answers stops start-up at once with its
/// error; only an unreachable database is waited for (up to about 30 s).
#[tokio::test]
async fn a_failing_migration_stops_start_up_at_once() {
    let db = adapter_postgres::test_support::TestDatabase::create().unwrap();
    db.execute(
        "DELETE FROM __diesel_schema_migrations \
         WHERE version = (SELECT max(version) FROM __diesel_schema_migrations)",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = bootstrap::Application::build(bootstrap::Config {
        database_url: db.url().to_owned(),
        bind_addr: "127.0.0.1:0".into(),
        http_workers: 1,
        ..bootstrap::Config::default()
    })
    .await
    .expect_err("start-up fails");
    assert!(
        format!("{err:#}").contains("order_lines_by_product"),
        "{err:#}"
    );
    // Retried as "not ready", its ten retries would wait about 30 s (the first four 3 s).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

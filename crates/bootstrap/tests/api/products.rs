use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_created_product_can_be_read_and_is_listed_by_id() {
    let app = spawn_app().await;
    let body = json!({"name": "Mug", "description": "350 ml", "price": 1_234, "stock": 7});
    let res = app
        .admin(Method::POST, "/api/v1/admin/products", Some(&body))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(location, format!("/api/v1/products/{id}"));
    assert_eq!(
        created,
        json!({"id": id, "name": "Mug", "description": "350 ml", "price": 1_234, "stock": 7})
    );
    assert_eq!(app.product(id).await, created);
    let no_description = app.create_product(5, 1).await;
    assert_eq!(app.product(no_description).await["description"], "test");
    let bare = app
        .admin(
            Method::POST,
            "/api/v1/admin/products",
            Some(&json!({"name": "B", "price": 0, "stock": 0})),
        )
        .await;
    assert_eq!(bare.json::<Value>().await.unwrap()["description"], "");

    let page: Value = app
        .get("/api/v1/products?size=2")
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
        (Some(1), Some(2), Some(3))
    );
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id, no_description]);
}

#[tokio::test]
async fn bad_product_input_is_400_and_creates_nothing() {
    let app = spawn_app().await;
    for body in [
        json!({"name": "", "price": 1, "stock": 1}),
        json!({"name": "   ", "price": 1, "stock": 1}),
        json!({"name": "x", "price": -1, "stock": 1}),
        json!({"name": "x", "price": 1, "stock": -1}),
        json!({"price": 1, "stock": 1}),
        json!({"name": "x", "price": 1.5, "stock": 1}),
        json!({"name": "x".repeat(201), "price": 1, "stock": 1}),
    ] {
        let res = app
            .admin(Method::POST, "/api/v1/admin/products", Some(&body))
            .await;
        assert_problem(res, 400, "VALIDATION_FAILED").await;
    }
    assert_eq!(
        app.db
            .query_scalar("SELECT count(*) FROM products")
            .unwrap(),
        "0"
    );
    for query in ["size=0", "size=101", "page=0", "page=x"] {
        assert_problem(
            app.get(&format!("/api/v1/products?{query}")).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    assert_problem(
        app.get("/api/v1/products/987654321").await,
        404,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get("/api/v1/products/abc").await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn restock_adds_and_patch_changes_only_what_it_names() {
    let app = spawn_app().await;
    let id = app.create_product(100, 1).await;
    let path = format!("/api/v1/admin/products/{id}/restock");
    let res = app
        .admin(Method::POST, &path, Some(&json!({"quantity": 5})))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["stock"], 6);
    for bad in [
        json!({"quantity": 0}),
        json!({"quantity": -2}),
        json!({}),
        json!({"quantity": 1_000_000_001i64}),
    ] {
        assert_problem(
            app.admin(Method::POST, &path, Some(&bad)).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let ghost = app
        .admin(
            Method::POST,
            "/api/v1/admin/products/987654321/restock",
            Some(&json!({"quantity": 1})),
        )
        .await;
    assert_problem(ghost, 404, "PRODUCT_NOT_FOUND").await;

    let patch = format!("/api/v1/admin/products/{id}");
    let res = app
        .admin(Method::PATCH, &patch, Some(&json!({"price": 150})))
        .await;
    let got: Value = res.json().await.unwrap();
    assert_eq!(
        (
            got["price"].as_i64(),
            got["stock"].as_i64(),
            got["name"].as_str()
        ),
        (Some(150), Some(6), Some("Widget"))
    );
    let res = app
        .admin(
            Method::PATCH,
            &patch,
            Some(&json!({"name": "Gadget", "description": "new"})),
        )
        .await;
    let got: Value = res.json().await.unwrap();
    assert_eq!(
        (
            got["name"].as_str(),
            got["description"].as_str(),
            got["price"].as_i64()
        ),
        (Some("Gadget"), Some("new"), Some(150))
    );
    assert_problem(
        app.admin(Method::PATCH, &patch, Some(&json!({"price": -1})))
            .await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        app.admin(Method::PATCH, &patch, Some(&json!({"name": ""})))
            .await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    let ghost = app
        .admin(
            Method::PATCH,
            "/api/v1/admin/products/987654321",
            Some(&json!({"price": 1})),
        )
        .await;
    assert_problem(ghost, 404, "PRODUCT_NOT_FOUND").await;
    assert_eq!(app.product(id).await["price"], 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_restocks_lose_nothing() {
    let app = spawn_app().await;
    let id = app.create_product(100, 0).await;
    let path = format!("/api/v1/admin/products/{id}/restock");
    let body = json!({"quantity": 3});
    let requests = (0..50).map(|_| app.admin(Method::POST, &path, Some(&body)));
    for res in futures_util::future::join_all(requests).await {
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(app.product(id).await["stock"], 150);
}

#[tokio::test]
async fn keyset_pages_follow_the_cursor_to_the_end_and_carry_the_total() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create_product(10, 1).await);
    }
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    let mut after = Some(ids[0]);
    while let Some(cursor) = after {
        let res = app
            .get(&format!("/api/v1/products?after={cursor}&size=2"))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = res.json().await.unwrap();
        assert_eq!(
            (page["size"].as_i64(), page["totalCount"].as_i64()),
            (Some(2), Some(5))
        );
        assert!(page.get("page").is_none(), "a keyset page has no number");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        cursors.push(page["nextAfter"].clone());
        after = page["nextAfter"].as_i64();
    }
    assert_eq!(seen, ids[1..].to_vec());
    assert_eq!(cursors, vec![json!(ids[2]), Value::Null]);

    let past: Value = app
        .get(&format!("/api/v1/products?after={}", ids[4]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        past,
        json!({"items": [], "size": 20, "totalCount": 5, "nextAfter": null})
    );
    // Numbered pages keep their shape, with no cursor.
    let numbered: Value = app
        .get("/api/v1/products?page=3&size=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            numbered["page"].as_i64(),
            numbered["totalCount"].as_i64(),
            numbered.get("nextAfter")
        ),
        (Some(3), Some(5), None)
    );
    assert_eq!(numbered["items"][0]["id"].as_i64(), Some(ids[4]));
}

#[tokio::test]
async fn bad_cursors_and_a_cursor_beside_a_page_number_are_400() {
    let app = spawn_app().await;
    app.create_product(10, 1).await;
    for query in [
        "after=0",
        "after=-1",
        "after=abc",
        "after=1.5",
        "after=",
        "after=99999999999999999999",
        "after=1&size=0",
        "after=1&size=101",
        "after=1&page=1",
        "page=2&after=1",
    ] {
        let problem = assert_problem(
            app.get(&format!("/api/v1/products?{query}")).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(
            problem["type"], "urn:shop:problem:VALIDATION_FAILED",
            "{query}"
        );
    }
    let problem = assert_problem(
        app.get("/api/v1/products?page=1&after=1").await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "after");
}

#[tokio::test]
async fn the_total_counts_every_product_created_at_once() {
    let app = spawn_app().await;
    let creations = (0..20).map(|_| app.create_product(1, 1));
    futures_util::future::join_all(creations).await;
    let page: Value = app
        .get("/api/v1/products?size=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["totalCount"], 20);
    assert_eq!(
        app.db
            .query_scalar(
                "SELECT product_count = (SELECT count(*) FROM products) FROM catalogue_stats"
            )
            .unwrap(),
        "true"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_keyset_pages() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let params: Vec<&str> = doc["paths"]["/api/v1/products"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, vec!["page", "size", "after"]);
    let after = &doc["components"]["schemas"]["ProductsAfterDto"]["properties"];
    assert!(
        after["nextAfter"].is_object() && after["totalCount"].is_object(),
        "{after}"
    );
    let body = &doc["paths"]["/api/v1/products"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/ProductListResponse");
    assert_eq!(
        doc["components"]["schemas"]["ProductListResponse"]["oneOf"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn a_restock_past_the_stock_maximum_is_a_conflict_that_changes_nothing() {
    let app = spawn_app().await;
    let id = app.create_product(100, 999_999_990).await;
    let path = format!("/api/v1/admin/products/{id}/restock");
    // Valid on its own (the schema allows 1..=1,000,000,000): refused for the product's
    // current stock, like a charge past the balance limit.
    let res = app
        .admin(Method::POST, &path, Some(&json!({"quantity": 11})))
        .await;
    assert_problem(res, 409, "STOCK_LIMIT_EXCEEDED").await;
    let product: Value = app
        .get(&format!("/api/v1/products/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(product["stock"], 999_999_990);
    let res = app
        .admin(Method::POST, &path, Some(&json!({"quantity": 10})))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["stock"], 1_000_000_000);
}

//! The whole server with its pool behind Debian's PgBouncer 1.18 in transaction mode:
//! `DATABASE_URL` names PgBouncer, `DB_PREPARED_STATEMENTS=false` sends every statement
//! unnamed, and `DATABASE_DIRECT_URL` names PostgreSQL itself for the migrations and the
//! outbox listener. Users, the catalogue, charges, orders and payments work, also under
//! concurrent requests that share two server connections, and the listener's session is
//! PostgreSQL's own.

use adapter_postgres::test_support::pgbouncer::PgBouncer;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn_app_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_runs_behind_a_transaction_mode_pgbouncer_with_unnamed_statements() {
    let server = std::env::var("DATABASE_URL").unwrap();
    let bouncer = PgBouncer::start(&server, 2).unwrap();
    let app = spawn_app_with(|c| {
        c.database_direct_url = Some(c.database_url.clone());
        c.database_url = bouncer.url(&c.database_url).unwrap();
        c.db_prepared_statements = false;
    })
    .await;

    let product = app.create_product(1_000, 10).await;
    let user = app.create_user().await;
    let charges: Vec<_> = (0..20).map(|_| app.charge(user, 500)).collect();
    for res in futures_util::future::join_all(charges).await {
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(app.balance(user).await, 10_000);
    let order = app
        .post(
            "/api/v1/orders",
            &json!({"userId": user, "items": [{"productId": product, "quantity": 3}]}),
        )
        .await;
    assert_eq!(order.status(), StatusCode::CREATED);
    let order = order.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let paid = app
        .post(
            "/api/v1/points/use",
            &json!({"userId": user, "orderId": order}),
        )
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(app.balance(user).await, 7_000);
    assert_eq!(app.product(product).await["stock"], 7);

    // The listener holds a session of PostgreSQL's own: with PgBouncer gone it still
    // listens (through PgBouncer it would have lost its connection).
    let up = "\nshop_outbox_listener_up 1\n";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !app.get("/metrics").await.text().await.unwrap().contains(up) {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never connected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(bouncer);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(up), "{metrics}");
    app.handle.stop(true).await;
}

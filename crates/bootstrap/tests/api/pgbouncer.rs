//! The whole server with its pool behind Debian's PgBouncer 1.18 in transaction mode and
//! `DB_PREPARED_STATEMENTS=false` (the listener connects directly, as docs/scaling.md
//! says it must): users, the catalogue, charges, orders and payments work, also under
//! concurrent requests that share two server connections.

use std::time::Duration;

use adapter_postgres::PoolConfig;
use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::test_support::pgbouncer::PgBouncer;
use bootstrap::{Application, Config};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_runs_behind_a_transaction_mode_pgbouncer_with_unnamed_statements() {
    let db = TestDatabase::create().unwrap();
    let bouncer = PgBouncer::start(db.url(), 2).unwrap();
    let pool = adapter_postgres::connect(&PoolConfig {
        url: bouncer.url(db.url()).unwrap(),
        max_size: 8,
        checkout_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        lock_timeout: Duration::from_secs(1),
        prepared_statements: false,
    });
    let config = Config {
        database_url: db.url().to_owned(),
        bind_addr: "127.0.0.1:0".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        http_workers: 2,
        db_prepared_statements: false,
        ..Config::default()
    };
    let app = Application::build_with_pool(config, pool).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let stopped = tokio::spawn(app.run_until_stopped());
    let app = TestApp {
        base,
        client: reqwest::Client::new(),
        db,
        handle,
        stopped,
    };

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
    app.handle.stop(true).await;
    drop(bouncer);
}

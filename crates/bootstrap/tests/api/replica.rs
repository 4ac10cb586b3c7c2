//! `DATABASE_READ_URL` with a real streaming replica: the catalogue's reads are served, the
//! replica's state shows in readiness and in `shop_db_replica_in_use`, and with the replica
//! stopped no catalogue read fails.

use std::time::{Duration, Instant};

use adapter_postgres::test_support::replica::Replica;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app_with};

async fn replica_status(app: &TestApp) -> Value {
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    ready["components"]["readReplica"]["status"].clone()
}

async fn until_replica(app: &TestApp, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while replica_status(app).await != status {
        assert!(
            Instant::now() < deadline,
            "the replica never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_reads_survive_the_replica_and_readiness_shows_which_is_used() {
    let server = std::env::var("DATABASE_URL").unwrap();
    let mut replica = Replica::start(&server, &[]).unwrap();
    let app = spawn_app_with(|c| {
        c.database_read_url = Some(replica.url(&c.database_url).unwrap());
        // Other tests' databases, created and dropped on the same cluster, keep the
        // replica replaying: this test is about where reads go, not the lag bound.
        c.database_read_max_lag_ms = 60_000;
    })
    .await;
    until_replica(&app, "UP").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("\nshop_db_replica_in_use 1\n"),
        "{metrics}"
    );

    let product = app.create_product(1_000, 5).await;
    // Just created: there at once (the primary answers what the replica lacks).
    assert_eq!(app.product(product).await["id"], product);
    let page = app.get("/api/v1/products?page=1&size=20").await;
    assert_eq!(page.status(), StatusCode::OK);

    replica.stop().unwrap();
    for _ in 0..5 {
        assert_eq!(app.product(product).await["id"], product);
        let page = app.get("/api/v1/products?page=1&size=20").await;
        assert_eq!(page.status(), StatusCode::OK);
    }
    until_replica(&app, "DOWN").await;
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK, "the primary still serves");

    replica.resume().unwrap();
    until_replica(&app, "UP").await;
}

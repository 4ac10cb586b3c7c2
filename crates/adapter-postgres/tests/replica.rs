//! Catalogue reads through a real streaming replica of the test PostgreSQL
//! (`test_support::replica`): they go to the replica while it keeps up, costing the primary
//! nothing; with the replica stopped every read still answers, from the primary, and the
//! next check sets the replica aside until it is back; a product just created is never
//! missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::test_support::replica::Replica;
use adapter_postgres::{PgProductRepository, PoolConfig, Reads};
use chrono::Utc;
use domain::PageRequest;
use domain::ports::{ComponentStatus, ProductRepository};
use domain::product::{Description, NewProduct, Price, ProductName, Stock};

fn new_product(name: &str) -> NewProduct {
    NewProduct {
        name: ProductName::new(name).unwrap(),
        description: Description::new("d").unwrap(),
        price: Price::new(100).unwrap(),
        stock: Stock::new(5).unwrap(),
    }
}

async fn until_in_use(reads: &Reads, in_use: bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        reads.check_replica().await;
        if reads.replica_in_use() == in_use {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never became in use = {in_use}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogue_reads_go_to_a_replica_that_keeps_up_and_to_the_primary_otherwise() {
    let db = TestDatabase::create().unwrap();
    let mut replica = Replica::start(db.url(), &[]).unwrap();
    let (primary, primary_trips) = db.counting_pool(4);
    let replica_pool = adapter_postgres::connect(&PoolConfig {
        url: replica.url(db.url()).unwrap(),
        max_size: 4,
        checkout_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
        lock_timeout: Duration::from_secs(1),
        prepared_statements: true,
    });
    // A generous lag bound: other tests' databases, created and dropped on the same
    // cluster, keep the replica busy replaying; this test is about where reads go.
    let reads =
        Reads::with_replica(primary.clone(), replica_pool, Duration::from_secs(60)).unwrap();
    let products = PgProductRepository::new(primary).reading_from(reads.clone());
    assert!(reads.status().is_err(), "not in use before a check");

    let created = products
        .create(new_product("mug"), Utc::now())
        .await
        .unwrap();
    until_in_use(&reads, true).await;
    assert_eq!(reads.status(), Ok(()));
    assert_eq!(reads.gauge().unwrap().get(), 1);
    // Once the replica has it, the reads cost the primary nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        primary_trips.reset();
        let found = products.find(created.id).await.unwrap();
        assert_eq!(found.map(|p| p.id), Some(created.id));
        if primary_trips.get() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never had the product"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = products
        .list(PageRequest::new(Some(1), Some(20)).unwrap())
        .await
        .unwrap();
    assert_eq!(page.total_count, 1);
    assert_eq!(primary_trips.get(), 0, "the page from the replica too");

    // A product created just now is there at once, from the primary if need be.
    let fresh = products
        .create(new_product("cup"), Utc::now())
        .await
        .unwrap();
    assert!(products.find(fresh.id).await.unwrap().is_some());

    // The replica gone: every read still answers, from the primary.
    replica.stop().unwrap();
    primary_trips.reset();
    assert!(products.find(created.id).await.unwrap().is_some());
    assert!(
        products
            .list(PageRequest::new(Some(1), Some(20)).unwrap())
            .await
            .is_ok()
    );
    assert!(primary_trips.get() >= 2);
    until_in_use(&reads, false).await;
    assert!(reads.status().is_err());
    assert_eq!(reads.gauge().unwrap().get(), 0);

    // Back: in use again.
    replica.resume().unwrap();
    until_in_use(&reads, true).await;
}

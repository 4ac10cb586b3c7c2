//! The best-seller roll-up on a real PostgreSQL: instances rolling up at the same time
//! never deadlock, whatever plan each one's session picked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{PgSalesStore, PoolConfig};
use chrono::Utc;
use domain::ports::SalesStore;

const TIMEZONE: &str = "Asia/Seoul";

/// 300 products sold over the last three days: 900 (day, product) rows to roll up.
fn seed(db: &TestDatabase) {
    db.execute(
        "INSERT INTO users (id, created_at) VALUES (1, now()); \
         INSERT INTO products (id, name, description, price, stock, created_at, updated_at) \
         SELECT g, 'p' || g, '', 100, 1000, now(), now() FROM generate_series(1, 300) g; \
         INSERT INTO orders (id, user_id, status, total_amount, discount_amount, pay_amount, \
                             created_at, expires_at, paid_at, updated_at) \
         SELECT g, 1, 'PAID', 100, 0, 100, now(), now(), now() - (g % 3) * interval '1 day', now() \
         FROM generate_series(1, 3000) g; \
         INSERT INTO order_lines (order_id, product_id, product_name, unit_price, quantity, amount) \
         SELECT g, 1 + (g * 7919) % 300, 'p', 100, 1, 100 FROM generate_series(1, 3000) g; \
         ANALYZE",
    )
    .unwrap();
}

/// A store whose sessions run with `options` (libpq's `-c name=value` settings).
fn store(db: &TestDatabase, options: &str) -> PgSalesStore {
    let separator = if db.url().contains('?') { '&' } else { '?' };
    PgSalesStore::new(adapter_postgres::connect(&PoolConfig {
        url: format!("{}{separator}options={options}", db.url()),
        max_size: 2,
        checkout_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
        lock_timeout: Duration::from_secs(30),
        prepared_statements: true,
    }))
}

/// Two instances whose planners walk the groups in different orders (one hashes them,
/// one sorts them, as plans differ between sessions with their statistics and their
/// cached generic plans) roll up the same rows at the same time, round after round. With
/// rows locked in the order each plan produced them, most rounds deadlocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_roll_ups_with_different_plans_never_deadlock() {
    let db = TestDatabase::create().unwrap();
    seed(&db);
    let hashing = store(&db, "-c%20enable_hashagg%3Don%20-c%20enable_sort%3Doff");
    let sorting = store(&db, "-c%20enable_hashagg%3Doff");
    let from = hashing
        .business_today(TIMEZONE.into())
        .await
        .unwrap()
        .checked_sub_days(chrono::Days::new(2))
        .unwrap();
    let retries_before = adapter_postgres::transaction_retries();
    for round in 0..20 {
        let (a, b) = tokio::join!(
            hashing.roll_up(TIMEZONE.into(), from, Utc::now()),
            sorting.roll_up(TIMEZONE.into(), from, Utc::now()),
        );
        assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} / {b:?}");
    }
    assert_eq!(
        adapter_postgres::transaction_retries().deadlock,
        retries_before.deadlock,
        "no roll-up was a deadlock's victim"
    );
    assert_eq!(
        db.query_scalar("SELECT sum(quantity) FROM daily_product_sales")
            .unwrap(),
        "3000"
    );
}

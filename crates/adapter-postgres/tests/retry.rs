//! A write that PostgreSQL picks as a deadlock's victim runs again, and the client never
//! sees the deadlock. (Its own test binary: it reads the process-wide retry counter.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use adapter_postgres::PgSalesStore;
use adapter_postgres::test_support::TestDatabase;
use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use domain::ports::SalesStore;

const TIMEZONE: &str = "Asia/Seoul";

/// Two products sold today, rolled up once: two rows in `daily_product_sales`.
fn seed(db: &TestDatabase) {
    db.execute(
        "INSERT INTO users (id, created_at) VALUES (1, now()); \
         INSERT INTO products (id, name, description, price, stock, created_at, updated_at) \
         VALUES (1, 'a', '', 100, 10, now(), now()), (2, 'b', '', 100, 10, now(), now()); \
         INSERT INTO orders (id, user_id, status, total_amount, discount_amount, pay_amount, \
                             created_at, expires_at, paid_at, updated_at) \
         VALUES (1, 1, 'PAID', 200, 0, 200, now(), now(), now(), now()); \
         INSERT INTO order_lines (order_id, product_id, product_name, unit_price, quantity, amount) \
         VALUES (1, 1, 'a', 100, 1, 100), (1, 2, 'b', 100, 1, 100)",
    )
    .unwrap();
}

/// Waits until some session of `db` other than the caller's waits for a lock.
fn until_a_session_waits_for_a_lock(db: &TestDatabase) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while db
        .query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .unwrap()
        == "0"
    {
        assert!(Instant::now() < deadline, "nobody ever waited");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Another transaction locks the roll-up's last row, waits until the roll-up (which has
/// locked the first row, in key order) waits for it, then asks for the first row: a
/// deadlock. The roll-up waited first, so its deadlock check runs first and it is the
/// victim. Without the retry it failed with "deadlock detected"; with it, the other
/// transaction commits and the roll-up's rerun succeeds, counted as one deadlock retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_up_picked_as_a_deadlock_victim_runs_again_and_succeeds() {
    let db = TestDatabase::create().unwrap();
    seed(&db);
    let sales = PgSalesStore::new(db.pool(2));
    let today = sales.business_today(TIMEZONE.into()).await.unwrap();
    sales
        .roll_up(TIMEZONE.into(), today, Utc::now())
        .await
        .unwrap();

    let mut other = PgConnection::establish(db.url()).unwrap();
    other
        .batch_execute(
            "BEGIN; UPDATE daily_product_sales SET quantity = quantity WHERE product_id = 2",
        )
        .unwrap();
    let before = adapter_postgres::transaction_retries();
    let roll_up = tokio::spawn({
        let sales = sales.clone();
        async move { sales.roll_up(TIMEZONE.into(), today, Utc::now()).await }
    });
    let other = tokio::task::spawn_blocking(move || {
        until_a_session_waits_for_a_lock(&db);
        other.batch_execute(
            "UPDATE daily_product_sales SET quantity = quantity WHERE product_id = 1; COMMIT",
        )?;
        Ok::<_, diesel::result::Error>(db)
    });
    let rolled_up = roll_up.await.unwrap();
    let db = other.await.unwrap().expect("the other transaction commits");
    assert!(rolled_up.is_ok(), "{rolled_up:?}");
    let after = adapter_postgres::transaction_retries();
    assert_eq!(
        after.deadlock,
        before.deadlock + 1,
        "{before:?} → {after:?}"
    );
    assert_eq!(
        db.query_scalar(
            "SELECT string_agg(quantity::text, ',' ORDER BY product_id) FROM daily_product_sales"
        )
        .unwrap(),
        "1,1"
    );
}

//! The pool behind Debian's PgBouncer (1.18) in transaction mode, which does not carry a
//! named prepared statement from one server connection to another: with prepared
//! statements on (the default) two client connections sharing one server connection
//! collide on the name the first prepared; with them off every statement is unnamed and
//! runs on whichever server connection the transaction gets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::test_support::pgbouncer::PgBouncer;
use adapter_postgres::{PgPointStore, PgPool, PoolConfig};
use diesel::RunQueryDsl;
use domain::ports::PointStore;

fn pool(url: &str, prepared_statements: bool) -> PgPool {
    adapter_postgres::connect(&PoolConfig {
        url: url.to_owned(),
        max_size: 4,
        checkout_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        lock_timeout: Duration::from_secs(1),
        prepared_statements,
    })
}

/// Runs the same bound query (which diesel's query builder caches) once on each of two
/// connections held at once.
fn on_two_connections(pool: &PgPool) -> Vec<Result<i32, String>> {
    use diesel::IntoSql;
    use diesel::sql_types::Integer;
    let mut first = pool.get().unwrap();
    let mut second = pool.get().unwrap();
    [&mut first, &mut second]
        .into_iter()
        .map(|conn| {
            diesel::select(1.into_sql::<Integer>())
                .get_result::<i32>(&mut **conn)
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn named_statements_collide_behind_a_transaction_pooler_and_unnamed_ones_do_not() {
    let db = TestDatabase::create().unwrap();
    // One server connection for every client: the collision is certain, not a matter of luck.
    let bouncer = PgBouncer::start(db.url(), 1).unwrap();
    let url = bouncer.url(db.url()).unwrap();

    let prepared = pool(&url, true);
    let outcomes = tokio::task::spawn_blocking(move || on_two_connections(&prepared))
        .await
        .unwrap();
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    let err = outcomes[1].clone().unwrap_err();
    assert!(err.contains("__diesel_stmt_"), "{err}");

    let unnamed = pool(&url, false);
    for _ in 0..3 {
        let unnamed = unnamed.clone();
        let outcomes = tokio::task::spawn_blocking(move || on_two_connections(&unnamed))
            .await
            .unwrap();
        assert_eq!(outcomes, [Ok(1), Ok(1)]);
    }
    // A store's own statements (raw SQL through `statement()`) too.
    let points = PgPointStore::new(unnamed.clone());
    db.execute(
        "INSERT INTO users (id, created_at) VALUES (777, now()); \
         INSERT INTO point_wallets (user_id, balance, updated_at) VALUES (777, 0, now())",
    )
    .unwrap();
    let user = 777;
    let user = domain::UserId::new(user).unwrap();
    for _ in 0..3 {
        let balance = points.balance(user).await.unwrap().unwrap();
        assert_eq!(balance.get(), 0);
    }
}

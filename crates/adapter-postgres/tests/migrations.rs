//! Migrations run cleanly, and concurrently, against a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{MigrationFailed, run_migrations};

#[test]
fn migrating_an_up_to_date_database_runs_nothing_even_from_several_instances_at_once() {
    let db = TestDatabase::create().unwrap();
    let url = db.url().to_owned();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || run_migrations(&url))
        })
        .collect();
    for run in runs {
        assert_eq!(run.join().unwrap().unwrap(), 0);
    }
}

/// A migration whose SQL fails on a database that answers is reported as such
/// ([`MigrationFailed`]), so start-up stops at once instead of waiting for the database;
/// one that cannot reach the database is not.
#[test]
fn a_migration_failing_on_a_reachable_database_is_told_from_an_unreachable_one() {
    let db = TestDatabase::create().unwrap();
    // The last migration looks pending again: its `DROP INDEX` finds no index.
    let last = adapter_postgres::test_support::query_scalar_at(
        db.url(),
        "SELECT max(version) FROM __diesel_schema_migrations",
    )
    .unwrap();
    db.execute(&format!(
        "DELETE FROM __diesel_schema_migrations WHERE version = '{last}'"
    ))
    .unwrap();
    let err = run_migrations(db.url()).unwrap_err();
    assert!(err.downcast_ref::<MigrationFailed>().is_some(), "{err:#}");
    assert!(
        format!("{err:#}").contains("order_lines_by_product"),
        "{err:#}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = run_migrations(&format!("postgres://postgres@127.0.0.1:{port}/shop")).unwrap_err();
    assert!(err.downcast_ref::<MigrationFailed>().is_none(), "{err:#}");
}

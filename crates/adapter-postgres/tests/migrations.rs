//! Migrations run cleanly, and concurrently, against a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use adapter_postgres::run_migrations;
use adapter_postgres::test_support::TestDatabase;

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

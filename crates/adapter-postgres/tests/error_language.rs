//! The error classes rely on the server's English messages (diesel gives timeouts and
//! deadlocks no SQLSTATE): on a database whose `lc_messages` is German, the pool's sessions
//! ask for English where the role may, and the start-up check refuses a role that may not.
//!
//! The German locale comes from `scripts/locale.sh`, which `make test` runs before it
//! starts the test PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use adapter_postgres::pool::check_error_language;
use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{PgPool, PoolConfig};

const GERMAN: &str = "de_DE.UTF-8";

/// A test database whose sessions start with German messages.
fn german_database() -> TestDatabase {
    let db = TestDatabase::create().unwrap();
    let name = db
        .query_scalar("SELECT current_database()::text AS value")
        .unwrap();
    db.execute(&format!(
        "ALTER DATABASE {name} SET lc_messages = '{GERMAN}'"
    ))
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}: the test PostgreSQL needs the locale {GERMAN} \
                 (scripts/locale.sh, then restart it: make db-down db-up)"
        )
    });
    assert_eq!(
        db.query_scalar("SELECT current_setting('lc_messages') AS value")
            .unwrap(),
        GERMAN,
        "a new session of the database speaks German"
    );
    db
}

fn pool(url: &str) -> PgPool {
    adapter_postgres::connect(&PoolConfig {
        url: url.to_owned(),
        max_size: 2,
        checkout_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        lock_timeout: Duration::from_secs(1),
        prepared_statements: true,
    })
}

/// A login role that is not a superuser, dropped on drop.
struct PlainRole<'a> {
    db: &'a TestDatabase,
    name: String,
}

impl<'a> PlainRole<'a> {
    fn create(db: &'a TestDatabase) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "shop_lc_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        db.execute(&format!("CREATE ROLE {name} LOGIN NOSUPERUSER"))
            .unwrap();
        Self { db, name }
    }

    /// The test database's URL for this role.
    fn url(&self) -> String {
        let (scheme, rest) = self.db.url().split_once("://").unwrap();
        let (_, host_and_path) = rest.split_once('@').unwrap();
        format!("{scheme}://{}@{host_and_path}", self.name)
    }
}

impl Drop for PlainRole<'_> {
    fn drop(&mut self) {
        let _ = self.db.execute(&format!(
            "REVOKE SET ON PARAMETER lc_messages FROM {0}; DROP ROLE IF EXISTS {0}",
            self.name
        ));
    }
}

#[tokio::test]
async fn a_role_that_may_set_lc_messages_gets_english_sessions_on_a_german_database() {
    let db = german_database();
    // The test database's own role is a superuser.
    let pool = pool(db.url());
    check_error_language(&pool).await.unwrap();
    let mut conn = pool.get().unwrap();
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        lc_messages: String,
    }
    let setting = diesel::sql_query("SHOW lc_messages")
        .get_result::<Setting>(&mut *conn)
        .unwrap();
    assert_eq!(setting.lc_messages, "C");
}

#[tokio::test]
async fn a_role_that_may_not_is_refused_at_start_up_until_granted_the_setting() {
    let db = german_database();
    let role = PlainRole::create(&db);
    let refused = check_error_language(&pool(&role.url())).await.unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("lc_messages") && message.contains("ALTER ROLE"),
        "{message}"
    );

    db.execute(&format!(
        "GRANT SET ON PARAMETER lc_messages TO {}",
        role.name
    ))
    .unwrap();
    check_error_language(&pool(&role.url())).await.unwrap();
}

#[tokio::test]
async fn an_english_database_passes_as_it_is() {
    let db = TestDatabase::create().unwrap();
    let role = PlainRole::create(&db);
    check_error_language(&pool(&role.url())).await.unwrap();
}

/// What the check protects: on the German database, a lock timeout met by a store is still
/// "the store is unavailable" (503), not an unknown error (500).
#[tokio::test]
async fn a_lock_timeout_on_a_german_database_is_still_the_store_being_unavailable() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    use domain::ports::PointStore;
    let db = german_database();
    let pool = adapter_postgres::connect(&PoolConfig {
        url: db.url().to_owned(),
        max_size: 2,
        checkout_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        lock_timeout: Duration::from_millis(100),
        prepared_statements: true,
    });
    let points = adapter_postgres::PgPointStore::new(pool);
    let mut holder = diesel::PgConnection::establish(db.url()).unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE point_wallets IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let err = points
        .balance(domain::UserId::new(1).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.is::<domain::StoreUnavailable>(),
        "a lock timeout is 503: {err:#}"
    );
    holder.batch_execute("ROLLBACK").unwrap();
}

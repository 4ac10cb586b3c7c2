//! Test support (feature `test-support`): a fresh, migrated database per test.
//!
//! The first test to need one migrates a template database (`shop_test_template`);
//! every test then gets `CREATE DATABASE … TEMPLATE shop_test_template_…`, which copies
//! the migrated schema in milliseconds. Both steps run under an advisory lock, because
//! PostgreSQL refuses to copy a template that another session is connected to. The
//! database is dropped when the [`TestDatabase`] is dropped. The template's name carries a
//! digest of the embedded migrations' names, so checkouts with different migrations that
//! share one server never share a template.
//!
//! [`TestDatabase::counting_pool`] counts the statements a pool's connections send, so
//! tests can assert how many database round trips an operation takes. [`tls`] puts TLS
//! in front of the test database, [`pgbouncer`] PgBouncer; [`replica`] streams a copy of it,
//! and [`server::Server`] is a PostgreSQL of a test's own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;

pub mod pgbouncer;
pub mod replica;
pub mod server;
pub mod tls;

use crate::migrate::{MIGRATIONS, migrate};

/// The `host:port` of a `postgres://` URL.
pub(crate) fn host_port(url: &str) -> anyhow::Result<&str> {
    let rest = url.split_once("://").context("a URL with a scheme")?.1;
    let authority = rest.split_once('/').context("a URL with a database")?.0;
    Ok(authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host))
}

/// `url` with `address` (`host:port`) in place of its host and port; its user, database
/// and query kept.
pub(crate) fn at_address(url: &str, address: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("a URL with a scheme")?;
    let (authority, path) = rest.split_once('/').context("a URL with a database")?;
    let user = authority
        .rsplit_once('@')
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    Ok(format!("{scheme}://{user}{address}/{path}"))
}

/// A new directory `<temp>/<prefix>-<pid>-<n>` for one helper's files.
pub(crate) fn unique_dir(prefix: &str) -> anyhow::Result<std::path::PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A loopback port nothing listens on now (bound, then released).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `127.0.0.1:port`, for at most `within`.
///
/// # Errors
/// When nothing does in time.
pub fn wait_for_port(port: u16, within: Duration, what: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on port {port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether this process runs as root: PostgreSQL and PgBouncer refuse to, so the helpers
/// then run them as the `postgres` user, as `scripts/db.sh` does.
pub(crate) fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

use crate::pool::{PgPool, PoolConfig, connect, connect_instrumented};

#[derive(diesel::QueryableByName)]
struct Scalar {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    value: Option<String>,
}

/// Runs `sql` on the database of `url` (a connection of its own) and returns the first
/// column of the first row as text, NULL as the empty text.
///
/// # Errors
/// When the connection or the query fails.
pub fn query_scalar_at(url: &str, sql: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::establish(url).context("connecting")?;
    Ok(diesel::sql_query(format!("SELECT ({sql})::text AS value"))
        .get_result::<Scalar>(&mut conn)?
        .value
        .unwrap_or_default())
}

const TEMPLATE_LOCK_KEY: i64 = 0x5350_5445_5354; // "SPTEST"

/// `shop_test_template_<digest of the migrations' names>`.
fn template_name() -> anyhow::Result<String> {
    let migrations = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|err| anyhow::anyhow!("listing migrations: {err}"))?;
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in &migrations {
        for byte in migration.name().to_string().bytes().chain([0]) {
            digest = (digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("shop_test_template_{digest:016x}"))
}

/// Round trips sent by the connections of a [`TestDatabase::counting_pool`]: one per
/// statement (a transaction's `BEGIN` and `COMMIT` included, and a pool's validity check
/// if there were one), plus one per statement prepared into a connection's cache.
#[derive(Debug, Clone, Default)]
pub struct RoundTrips(Arc<AtomicUsize>);

impl RoundTrips {
    /// Round trips since the last [`Self::reset`].
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// Runs `work` and returns its output with the round trips it took.
    pub async fn count<T>(&self, work: impl std::future::Future<Output = T>) -> (T, usize) {
        self.reset();
        let out = work.await;
        (out, self.get())
    }
}

impl Instrumentation for RoundTrips {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if matches!(
            event,
            InstrumentationEvent::StartQuery { .. } | InstrumentationEvent::CacheQuery { .. }
        ) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A database of its own for one test, dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

/// Replaces the database name in a `postgres://…/name?params` URL.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").context("DATABASE_URL has no scheme")? + 3;
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

impl TestDatabase {
    /// Creates a migrated database on the server of `$DATABASE_URL`.
    ///
    /// # Errors
    /// When `DATABASE_URL` is unset (run the tests with `make test`) or the server fails.
    pub fn create() -> anyhow::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var("DATABASE_URL")
            .context("DATABASE_URL is not set: run the tests with `make test`")?;
        let admin_url = with_database(&base, "postgres")?;
        let name = format!(
            "shop_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        );
        let mut admin =
            PgConnection::establish(&admin_url).context("connecting to the postgres database")?;
        let template = template_name()?;
        admin.batch_execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))?;
        let created = prepare_template(&mut admin, &admin_url, &template).and_then(|()| {
            admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .context("creating the test database")
        });
        admin.batch_execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))?;
        created?;
        Ok(Self {
            url: with_database(&base, &name)?,
            name,
            admin_url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes the database refuse (and drop) every connection, as if the server went
    /// away, or accept them again: for outage and recovery tests.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub fn set_reachable(&self, reachable: bool) -> anyhow::Result<()> {
        let mut admin = PgConnection::establish(&self.admin_url)?;
        admin.batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {reachable}",
            self.name
        ))?;
        if !reachable {
            admin.batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ))?;
            // Termination is asynchronous: wait until every session is really gone.
            for _ in 0..100 {
                let left = diesel::sql_query(format!(
                    "SELECT count(*)::text AS value FROM pg_stat_activity WHERE datname = '{}'",
                    self.name
                ))
                .get_result::<Scalar>(&mut admin)?
                .value;
                if left.as_deref() == Some("0") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Runs SQL statements on this database.
    ///
    /// # Errors
    /// When a statement fails.
    pub fn execute(&self, sql: &str) -> anyhow::Result<()> {
        PgConnection::establish(&self.url)?.batch_execute(sql)?;
        Ok(())
    }

    /// Runs SQL on this database and returns the first column of the first row as text
    /// (for tests that check what the API cannot show), as [`query_scalar_at`].
    ///
    /// # Errors
    /// When the query fails.
    pub fn query_scalar(&self, sql: &str) -> anyhow::Result<String> {
        query_scalar_at(&self.url, sql)
    }

    fn pool_config(&self, max_size: u32) -> PoolConfig {
        PoolConfig {
            url: self.url.clone(),
            max_size,
            checkout_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            prepared_statements: true,
        }
    }

    /// A pool on this database, with the production session settings.
    pub fn pool(&self, max_size: u32) -> PgPool {
        connect(&self.pool_config(max_size))
    }

    /// A pool like [`Self::pool`] whose connections count their round trips (after their
    /// session set-up) into the returned [`RoundTrips`].
    pub fn counting_pool(&self, max_size: u32) -> (PgPool, RoundTrips) {
        let trips = RoundTrips::default();
        let pool = connect_instrumented(&self.pool_config(max_size), {
            let trips = trips.clone();
            move || trips.clone()
        });
        (pool, trips)
    }
}

/// Creates and migrates the template when missing or behind the embedded migrations.
fn prepare_template(
    admin: &mut PgConnection,
    admin_url: &str,
    template: &str,
) -> anyhow::Result<()> {
    use diesel::sql_types::Bool;

    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let exists = diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{template}') AS exists"
    ))
    .get_result::<Exists>(admin)?
    .exists;
    if !exists {
        admin.batch_execute(&format!("CREATE DATABASE {template}"))?;
    }
    let mut template = PgConnection::establish(&with_database(admin_url, template)?)
        .context("connecting to the template database")?;
    let pending = template
        .has_pending_migration(MIGRATIONS)
        .map_err(|err| anyhow::anyhow!("checking migrations: {err}"))?;
    if pending {
        migrate(&mut template)?;
    }
    Ok(())
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_in_any_url_shape() {
        assert_eq!(
            with_database("postgres://u@h:1/shop", "x").unwrap(),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u@h:1/shop?sslmode=disable", "x").unwrap(),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
    }
}

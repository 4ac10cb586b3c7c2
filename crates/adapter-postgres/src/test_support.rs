//! Test support (feature `test-support`): a fresh, migrated database per test.
//!
//! The first test to need one migrates a template database (`shop_test_template`);
//! every test then gets `CREATE DATABASE … TEMPLATE shop_test_template`, which copies
//! the migrated schema in milliseconds. Both steps run under an advisory lock, because
//! PostgreSQL refuses to copy a template that another session is connected to. The
//! database is dropped when the [`TestDatabase`] is dropped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use diesel_migrations::MigrationHarness;

use crate::migrate::{MIGRATIONS, migrate};
use crate::pool::{PgPool, PoolConfig, connect};

const TEMPLATE: &str = "shop_test_template";
const TEMPLATE_LOCK_KEY: i64 = 0x5350_5445_5354; // "SPTEST"

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
        admin.batch_execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))?;
        let created = prepare_template(&mut admin, &admin_url).and_then(|()| {
            admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
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
    /// (for tests that check what the API cannot show).
    ///
    /// # Errors
    /// When the query fails.
    pub fn query_scalar(&self, sql: &str) -> anyhow::Result<String> {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Scalar {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let mut conn = PgConnection::establish(&self.url)?;
        Ok(diesel::sql_query(format!("SELECT ({sql})::text AS value"))
            .get_result::<Scalar>(&mut conn)?
            .value)
    }

    /// A pool on this database, with the production session settings.
    pub fn pool(&self, max_size: u32) -> PgPool {
        connect(&PoolConfig {
            url: self.url.clone(),
            max_size,
            checkout_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
        })
    }
}

/// Creates and migrates the template when missing or behind the embedded migrations.
fn prepare_template(admin: &mut PgConnection, admin_url: &str) -> anyhow::Result<()> {
    use diesel::RunQueryDsl;
    use diesel::sql_types::Bool;

    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let exists = diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{TEMPLATE}') AS exists"
    ))
    .get_result::<Exists>(admin)?
    .exists;
    if !exists {
        admin.batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))?;
    }
    let mut template = PgConnection::establish(&with_database(admin_url, TEMPLATE)?)
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

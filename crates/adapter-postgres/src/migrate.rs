//! Embedded migrations, run at start-up.
//!
//! Several instances may start at once: the migrations run under a PostgreSQL
//! session advisory lock, so one instance migrates while the others wait, then find
//! nothing pending.

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Arbitrary, fixed key of the advisory lock that serialises migrations.
const MIGRATION_LOCK_KEY: i64 = 0x5350_4d49_4752; // "SPMIGR"

/// A migration failed on a database that still answers: its SQL, not the connection, is at
/// fault, so running it again cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationFailed;

impl std::fmt::Display for MigrationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a migration failed on a reachable database")
    }
}

impl std::error::Error for MigrationFailed {}

/// Connects to `url` and applies every pending migration; returns how many ran.
///
/// # Errors
/// When the database cannot be reached or a migration fails; the latter carries
/// [`MigrationFailed`] (`downcast_ref`) when the database still answered afterwards.
pub fn run_migrations(url: &str) -> anyhow::Result<usize> {
    let mut conn = PgConnection::establish(url).context("connecting to run migrations")?;
    migrate(&mut conn)
}

pub(crate) fn migrate(conn: &mut PgConnection) -> anyhow::Result<usize> {
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .context("taking the migration lock")?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|done| done.len())
        .map_err(|err| {
            let err = anyhow::anyhow!("running migrations: {err}");
            // The connection still answering tells a failing migration from a lost one.
            if conn.batch_execute("SELECT 1").is_ok() {
                err.context(MigrationFailed)
            } else {
                err
            }
        });
    let unlock = conn
        .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .context("releasing the migration lock");
    let ran = result?;
    unlock?;
    Ok(ran)
}

//! The r2d2 connection pool, and the one way store code reaches it: [`run`].

use std::time::Duration;

use diesel::PgConnection;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use domain::StoreUnavailable;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// Pool settings, from the application's configuration.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub url: String,
    pub max_size: u32,
    /// How long a request waits for a free connection before giving up with a 503.
    pub checkout_timeout: Duration,
    /// Server-side cap on any one statement.
    pub statement_timeout: Duration,
    /// Server-side cap on waiting for a row lock.
    pub lock_timeout: Duration,
}

#[derive(Debug)]
struct SessionSettings {
    sql: String,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&self.sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Builds the pool without connecting: the server starts, and `/health/ready`
/// reports 503, while the database is still down; connections are made on demand and
/// broken ones are replaced, so the app recovers by itself when the database returns.
pub fn connect(config: &PoolConfig) -> PgPool {
    let settings = SessionSettings {
        sql: format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = 10000; SET TIME ZONE 'UTC';",
            config.statement_timeout.as_millis(),
            config.lock_timeout.as_millis(),
        ),
    };
    Pool::builder()
        .max_size(config.max_size)
        .min_idle(Some(0))
        .connection_timeout(config.checkout_timeout)
        .test_on_check_out(true)
        .connection_customizer(Box::new(settings))
        .build_unchecked(ConnectionManager::new(&config.url))
}

/// Runs `work` with a pooled connection on the blocking thread pool, in the caller's
/// tracing span. A failed checkout is [`StoreUnavailable`].
///
/// # Errors
/// Whatever `work` returns, or an unavailable/unknown error from the checkout.
pub(crate) async fn run<T, E, F>(pool: &PgPool, work: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<anyhow::Error> + Send + 'static,
{
    let pool = pool.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let mut conn = pool
            .get()
            .map_err(|err| E::from(anyhow::Error::new(err).context(StoreUnavailable)))?;
        work(&mut conn)
    })
    .await
    .map_err(|join| E::from(anyhow::anyhow!("database task failed: {join}")))?
}

/// Whether the database answers a trivial query now.
pub async fn ping(pool: &PgPool) -> bool {
    run(pool, |conn| {
        conn.batch_execute("SELECT 1")
            .map_err(crate::error::db_error)
    })
    .await
    .is_ok()
}

/// [`HealthCheck`](domain::ports::HealthCheck) on the pool: the database answers `SELECT 1`.
#[derive(Debug, Clone)]
pub struct PgHealthCheck {
    pool: PgPool,
}

impl PgHealthCheck {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl domain::ports::HealthCheck for PgHealthCheck {
    async fn is_ready(&self) -> bool {
        ping(&self.pool).await
    }
}

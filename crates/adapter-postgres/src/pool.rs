//! The r2d2 connection pool, and the one way store code reaches it: [`run`].
//!
//! A checkout costs no round trip: a pooled connection is checked by reading what the
//! server may have sent it while it sat idle (a server that restarted or terminated the
//! session has said so and closed the socket), never by a `SELECT 1`.

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{CacheSize, Instrumentation, SimpleConnection};
use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool};
use diesel::{Connection, PgConnection};
use domain::StoreUnavailable;

pub type PgPool = Pool<PgManager>;

/// Diesel's r2d2 manager with a validity check that sends nothing.
#[derive(Debug)]
pub struct PgManager(ConnectionManager<PgConnection>);

impl ManageConnection for PgManager {
    type Connection = PgConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConnection, Self::Error> {
        self.0.connect()
    }

    /// Reads whatever arrived on the idle socket (libpq's `PQconsumeInput`, which never
    /// blocks): a closed connection fails here, and r2d2 replaces it before any request
    /// sees it. A live one costs no round trip.
    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), Self::Error> {
        // A terminated session has sent its farewell message and then closed: the first
        // read takes the message, the second meets the end of the stream. Pool
        // connections never LISTEN, so there is no notification to lose.
        for _ in 0..2 {
            if let Some(Err(err)) = conn.notifications_iter().next() {
                return Err(diesel::r2d2::Error::QueryError(err));
            }
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        self.0.has_broken(conn)
    }
}

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
    /// Each connection prepares a statement once under a name and then only executes it
    /// (the default). Off, every statement is sent unnamed, parsed with its parameters in
    /// one exchange (libpq's `PQsendQueryParams`): what a transaction-mode pooler that does
    /// not track prepared statements (PgBouncer before 1.21) needs. The round trips per
    /// statement are the same; the server parses and plans each time.
    pub prepared_statements: bool,
}

/// Makes a fresh instrumentation for each new connection.
type InstrumentationFactory = Arc<dyn Fn() -> Box<dyn Instrumentation> + Send + Sync>;

struct SessionSettings {
    sql: String,
    prepared_statements: bool,
    instrumentation: Option<InstrumentationFactory>,
}

impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSettings")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&self.sql)
            .map_err(diesel::r2d2::Error::QueryError)?;
        if !self.prepared_statements {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
        if let Some(make) = &self.instrumentation {
            conn.set_instrumentation(make());
        }
        Ok(())
    }
}

/// Builds the pool without connecting: the server starts, and `/health/ready`
/// reports 503, while the database is still down; connections are made on demand and
/// broken ones are replaced, so the app recovers by itself when the database returns.
pub fn connect(config: &PoolConfig) -> PgPool {
    build(config, None)
}

/// [`connect`], with `instrumentation()` installed on every connection once its session
/// is set up (tests count round trips with it).
pub fn connect_instrumented<I: Instrumentation>(
    config: &PoolConfig,
    instrumentation: impl Fn() -> I + Send + Sync + 'static,
) -> PgPool {
    build(
        config,
        Some(Arc::new(move || {
            Box::new(instrumentation()) as Box<dyn Instrumentation>
        })),
    )
}

/// Asks for the server's messages in English where the role may change `lc_messages` (a
/// superuser, or a role granted `SET` on it); elsewhere leaves the setting as it is, and
/// [`check_error_language`] refuses to start when that is not English.
const ENGLISH_MESSAGES: &str = "DO $$ BEGIN SET lc_messages = 'C'; \
     EXCEPTION WHEN insufficient_privilege THEN NULL; END $$;";

fn build(config: &PoolConfig, instrumentation: Option<InstrumentationFactory>) -> PgPool {
    let settings = SessionSettings {
        sql: format!(
            "{ENGLISH_MESSAGES} SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = 10000; SET TIME ZONE 'UTC';",
            config.statement_timeout.as_millis(),
            config.lock_timeout.as_millis(),
        ),
        prepared_statements: config.prepared_statements,
        instrumentation,
    };
    Pool::builder()
        .max_size(config.max_size)
        .min_idle(Some(0))
        .connection_timeout(config.checkout_timeout)
        .test_on_check_out(true)
        .connection_customizer(Box::new(settings))
        .build_unchecked(PgManager(ConnectionManager::new(&config.url)))
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
        with_connection(&pool, work)
    })
    .await
    .map_err(|join| E::from(anyhow::anyhow!("database task failed: {join}")))?
}

/// Runs `work` with a pooled connection on this thread, which may block: a blocking-pool
/// thread (a [`Grouped`](crate::group::Grouped) lane, or [`run`]'s). A failed checkout is
/// [`StoreUnavailable`].
///
/// # Errors
/// Whatever `work` returns, or an unavailable/unknown error from the checkout.
pub(crate) fn with_connection<T, E, F>(pool: &PgPool, work: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<anyhow::Error>,
{
    let mut conn = pool
        .get()
        .map_err(|err| E::from(anyhow::Error::new(err).context(StoreUnavailable)))?;
    work(&mut conn)
}

/// Checks, on a pooled connection, that the server's error messages are the English ones
/// the error classes rely on. Diesel reports a statement or lock timeout (SQLSTATE `57014`,
/// `55P03`) and a deadlock (`40P01`) without their SQLSTATE, so [`crate::error`] and
/// [`crate::retry`] tell them by their messages; in another language they would answer
/// 500 instead of 503, and a deadlock would not be retried. Each pooled session asks for
/// English (`lc_messages = 'C'`) where the role may; this provokes a statement timeout (a
/// 1 ms timeout on a 50 ms sleep, inside a transaction rolled back) and checks that it is
/// classified as one.
///
/// # Errors
/// When the database cannot be reached, or when its messages are in another language and
/// the role may not change that; the message says what to set.
pub async fn check_error_language(pool: &PgPool) -> anyhow::Result<()> {
    run(pool, |conn| {
        let provoked = conn.transaction(|conn| {
            conn.batch_execute("SET LOCAL statement_timeout = 1; SELECT pg_sleep(0.05)")
        });
        match provoked {
            Err(diesel::result::Error::DatabaseError(_, info))
                if crate::error::is_overload_message(info.message()) =>
            {
                Ok(())
            }
            Err(diesel::result::Error::DatabaseError(_, info)) => {
                let setting = diesel::RunQueryDsl::get_result::<LcMessages>(
                    diesel::sql_query("SHOW lc_messages"),
                    conn,
                )
                .map_or_else(|_| "?".to_owned(), |row| row.lc_messages);
                Err(anyhow::anyhow!(
                    "PostgreSQL reports errors in another language (lc_messages = {setting:?}; \
                     a statement timeout read {:?}) and this role may not set lc_messages, \
                     so timeouts and deadlocks could not be told apart from other errors. \
                     Have a superuser run `ALTER ROLE <role> SET lc_messages = 'C'` (or \
                     `GRANT SET ON PARAMETER lc_messages TO <role>`, PostgreSQL 15+)",
                    info.message()
                ))
            }
            Err(err) => Err(anyhow::Error::new(err).context("checking the error messages' language")),
            Ok(()) => Err(anyhow::anyhow!(
                "checking the error messages' language: a 50 ms sleep outlived a 1 ms statement_timeout"
            )),
        }
    })
    .await
}

#[derive(diesel::QueryableByName)]
struct LcMessages {
    #[diesel(sql_type = diesel::sql_types::Text)]
    lc_messages: String,
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

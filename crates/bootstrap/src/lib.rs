//! Wiring only: configuration, telemetry, the pool, migrations, adapters, use cases,
//! schedulers, the HTTP server and graceful shutdown.
//!
//! [`Application::build`] is what `main` runs and what the end-to-end tests reuse.

pub mod cli;
pub mod config;
mod jobs;
pub mod relay;
pub mod telemetry;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use adapter_dataplatform::{
    HttpDataPlatform, JetStreamDataPlatform, JetStreamSettings, LoggingDataPlatform, WebhookSecret,
};
use adapter_http::HttpState;
use adapter_identity::{JwksRefresher, JwksSettings, Verifier};
use adapter_postgres::{
    IssueBatcher, IssueBatcherLimits, PgCouponStore, PgHealthCheck, PgIdempotencyStore,
    PgOrderStore, PgOutboxListener, PgOutboxStore, PgPointStore, PgPool, PgProductRepository,
    PgSalesStore, PgUserRepository, PoolConfig, Reads,
};
use anyhow::Context;
use application::{Ports, Settings, UseCases};
use backon::{BlockingRetryable, ExponentialBuilder};
use domain::ports::{ComponentStatus, SystemClock};
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{Config, DataPlatformKind};

/// How long shutdown waits for the outbox listener's thread to end.
const LISTENER_STOP_WAIT: Duration = Duration::from_secs(2);

/// A built, listening, not yet running server with its schedulers.
pub struct Application {
    address: SocketAddr,
    server: Server,
    pool: PgPool,
    coupon_batcher: IssueBatcher,
    outbox_listener: Arc<PgOutboxListener>,
    jobs: JoinSet<()>,
    stop_jobs: watch::Sender<bool>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Migrates the database (waiting up to ~30 s for it to come up), wires every
    /// adapter, binds the listener and starts the schedulers.
    ///
    /// # Errors
    /// When the database stays unreachable, a migration fails (at once when the database
    /// still answers: [`adapter_postgres::MigrationFailed`]), or the address is taken.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let url = config.direct_database_url().to_owned();
        let migrated = tokio::task::spawn_blocking(move || {
            (|| adapter_postgres::run_migrations(&url))
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_delay(Duration::from_secs(5))
                        .with_max_times(10),
                )
                // A migration that failed on a database that answers fails the same way
                // again: stop at once, with its error.
                .when(|err| {
                    err.downcast_ref::<adapter_postgres::MigrationFailed>()
                        .is_none()
                })
                .notify(|err, wait| {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        ?wait,
                        "database not ready for migrations; retrying"
                    );
                })
                .call()
        })
        .await??;
        if migrated > 0 {
            tracing::info!(migrations = migrated, "database migrated");
        }

        let pool = adapter_postgres::connect(&PoolConfig {
            url: config.database_url.clone(),
            max_size: config.db_pool_size,
            checkout_timeout: config.checkout_timeout(),
            statement_timeout: Duration::from_millis(config.db_statement_timeout_ms),
            lock_timeout: Duration::from_millis(config.db_lock_timeout_ms),
            prepared_statements: config.db_prepared_statements,
        });
        Self::build_with_pool(config, pool).await
    }

    /// [`Self::build`] on a migrated database, through `pool` (tests pass a pool that
    /// counts its round trips).
    ///
    /// # Errors
    /// When the database speaks another language and may not be told to speak English
    /// ([`adapter_postgres::pool::check_error_language`]), the business time zone is
    /// unknown, or the address is taken.
    pub async fn build_with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        // Timeouts and deadlocks are told by the server's English messages.
        adapter_postgres::pool::check_error_language(&pool).await?;
        // Groups concurrent issues of one coupon; stopped after the HTTP server.
        let coupon_batcher = IssueBatcher::start_with(
            pool.clone(),
            IssueBatcherLimits {
                queue: config.coupon_issue_queue_limit,
                ..IssueBatcherLimits::default()
            },
        );
        let (verifier, jwks_refresher) = authentication(&config).await?;
        // The catalogue's reads: a read replica while it keeps up, else the primary.
        let reads = match &config.database_read_url {
            Some(url) => Reads::with_replica(
                pool.clone(),
                adapter_postgres::connect(&PoolConfig {
                    url: url.clone(),
                    max_size: config.db_pool_size,
                    checkout_timeout: config.checkout_timeout(),
                    statement_timeout: Duration::from_millis(config.db_statement_timeout_ms),
                    lock_timeout: Duration::from_millis(config.db_lock_timeout_ms),
                    prepared_statements: config.db_prepared_statements,
                }),
                Duration::from_millis(config.database_read_max_lag_ms),
            )?,
            None => Reads::primary(pool.clone()),
        };
        // The relay's wake-up: one libpq connection of its own, on its own thread.
        let outbox_listener = Arc::new(PgOutboxListener::start(config.direct_database_url())?);
        let ports = Ports {
            clock: Arc::new(SystemClock),
            users: Arc::new(PgUserRepository::new(pool.clone())),
            points: Arc::new(PgPointStore::new(pool.clone())),
            idempotency: Arc::new(PgIdempotencyStore::new(pool.clone())),
            health: Arc::new(PgHealthCheck::new(pool.clone())),
            components: {
                let mut components: Vec<Arc<dyn ComponentStatus>> = vec![outbox_listener.clone()];
                if let (Some(verifier), Some(_)) = (&verifier, &jwks_refresher) {
                    components.push(verifier.clone());
                }
                if config.database_read_url.is_some() {
                    components.push(Arc::new(reads.clone()));
                }
                components
            },
            products: Arc::new(PgProductRepository::new(pool.clone()).reading_from(reads.clone())),
            coupons: Arc::new(PgCouponStore::grouped(pool.clone(), coupon_batcher.clone())),
            orders: Arc::new(PgOrderStore::new(pool.clone())),
            sales: Arc::new(PgSalesStore::new(pool.clone())),
            outbox: Arc::new(PgOutboxStore::new(pool.clone())),
            data_platform: match &config.data_platform_url {
                Some(url) if config.data_platform_kind() == Some(DataPlatformKind::JetStream) => {
                    let platform = JetStreamDataPlatform::connect(JetStreamSettings {
                        url: url.clone(),
                        subject: config.data_platform_subject.clone(),
                        stream: config.data_platform_stream.clone(),
                        creds_file: config.data_platform_nats_creds.as_ref().map(Into::into),
                        ca_file: config.data_platform_ca_file.as_ref().map(Into::into),
                        timeout: Duration::from_secs(5),
                        replicas: config.data_platform_stream_replicas,
                    })
                    .await?;
                    tracing::info!(
                        subject = %config.data_platform_subject,
                        stream = %config.data_platform_stream,
                        "paid orders are published to NATS JetStream"
                    );
                    Arc::new(platform)
                }
                Some(url) => {
                    let mut platform = HttpDataPlatform::new(
                        url.clone(),
                        Duration::from_secs(5),
                        config
                            .data_platform_ca_file
                            .as_deref()
                            .map(std::path::Path::new),
                    )?;
                    if let Some(secret) = &config.data_platform_secret {
                        platform = platform.signed(WebhookSecret::parse(secret)?);
                    }
                    Arc::new(platform)
                }
                None => {
                    tracing::info!("no DATA_PLATFORM_URL: paid orders are logged, not sent");
                    Arc::new(LoggingDataPlatform)
                }
            },
        };
        let settings = Settings {
            payment_timeout: chrono::Duration::seconds(
                i64::try_from(config.order_payment_timeout_secs).unwrap_or(i64::MAX / 1_000),
            ),
            business_timezone: config.business_timezone.clone(),
        };
        let use_cases = UseCases::new(&ports, &settings);
        // Fails fast on a time zone PostgreSQL does not know.
        ports
            .sales
            .business_today(settings.business_timezone.clone())
            .await
            .with_context(|| format!("BUSINESS_TIMEZONE {:?}", settings.business_timezone))?;
        if config.seed_demo_data && use_cases.seed_demo_data.execute().await? {
            tracing::info!("seeded a demo catalogue into the empty database");
        }
        let registry = Registry::new();
        let mut state = HttpState::new(
            use_cases.clone(),
            registry.clone(),
            config.admin_token.as_deref(),
        )?;
        match verifier {
            Some(verifier) => {
                // Before any request (docs/security.md).
                use_cases
                    .adopt_unkeyed_subjects
                    .execute(config.auth_jwt_issuer.as_deref())
                    .await?;
                tracing::info!(
                    issuer = config.auth_jwt_issuer.as_deref(),
                    audience = config.auth_jwt_audience.as_deref(),
                    ?verifier,
                    "end-user authentication on"
                );
                state = state.with_authentication(verifier);
            }
            None => tracing::warn!(
                "end-user authentication is DISABLED: none of AUTH_JWT_SECRET, \
                 AUTH_JWKS_FILE and AUTH_JWKS_URL is configured, so any client may act for any user (set \
                 AUTH_REQUIRED=true to refuse to start like this)"
            ),
        }
        let listener = TcpListener::bind(&config.bind_addr)
            .with_context(|| format!("binding {}", config.bind_addr))?;
        let address = listener.local_addr()?;
        let mut server = HttpServer::new(move || adapter_http::app(state.clone()))
            .listen(listener)?
            .shutdown_timeout(config.shutdown_timeout_secs);
        if config.http_workers > 0 {
            server = server.workers(config.http_workers);
        }
        let server = server.run();

        let (stop_jobs, stopped) = watch::channel(false);
        let jobs = jobs::spawn_all(
            &config,
            &use_cases,
            &pool,
            &registry,
            jobs::Watched {
                outbox_listener: outbox_listener.clone(),
                reads,
                jwks: jwks_refresher,
            },
            stopped,
        )?;
        Ok(Self {
            address,
            server,
            pool,
            coupon_batcher,
            outbox_listener,
            jobs,
            stop_jobs,
        })
    }

    /// Where the server listens (with the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// A handle to stop the server gracefully (as SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The pool, for tests that inspect the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until SIGTERM/SIGINT or [`ServerHandle::stop`]: in-flight requests
    /// finish (up to the shutdown timeout), then the coupon issues already queued are
    /// written and the batcher stops, then the schedulers stop, then the outbox listener
    /// (given [`LISTENER_STOP_WAIT`]).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            coupon_batcher,
            outbox_listener,
            mut jobs,
            stop_jobs,
            ..
        } = self;
        let served = server.await;
        // No request is left to queue an issue; let the queued ones finish.
        coupon_batcher.stop().await;
        tracing::info!("server stopped; stopping schedulers");
        let _ = stop_jobs.send(true);
        while jobs.join_next().await.is_some() {}
        // Not left inside libpq (a TLS handshake, say) while the process exits.
        let listener_stopped =
            tokio::task::spawn_blocking(move || outbox_listener.stop(LISTENER_STOP_WAIT)).await;
        if !matches!(listener_stopped, Ok(true)) {
            tracing::warn!("the outbox listener was still connecting at exit");
        }
        served.context("HTTP server failed")
    }
}

/// The token verifier the configuration asks for (none: authentication off), and what
/// refreshes its keys when they come from `AUTH_JWKS_URL`, fetched once here.
///
/// # Errors
/// When the key material cannot be read, or with `AUTH_REQUIRED=true` the JWK set cannot
/// be fetched.
async fn authentication(
    config: &Config,
) -> anyhow::Result<(Option<Arc<Verifier>>, Option<JwksRefresher>)> {
    let issuer = config.auth_jwt_issuer.clone();
    let audience = config.auth_jwt_audience.clone();
    if let Some(secret) = &config.auth_jwt_secret {
        let verifier =
            Verifier::hs256(secret.as_bytes(), issuer, audience).context("AUTH_JWT_SECRET")?;
        return Ok((Some(Arc::new(verifier)), None));
    }
    let (Some(issuer), Some(audience)) = (issuer, audience) else {
        if config.auth_jwks_file.is_some() || config.auth_jwks_url.is_some() {
            anyhow::bail!(
                "AUTH_JWKS_FILE and AUTH_JWKS_URL need AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE"
            );
        }
        return Ok((None, None));
    };
    if let Some(file) = &config.auth_jwks_file {
        let json =
            std::fs::read_to_string(file).with_context(|| format!("AUTH_JWKS_FILE {file:?}"))?;
        let verifier = Verifier::from_jwk_set(&json, issuer, audience)
            .with_context(|| format!("AUTH_JWKS_FILE {file:?}"))?;
        return Ok((Some(Arc::new(verifier)), None));
    }
    let Some(url) = &config.auth_jwks_url else {
        return Ok((None, None));
    };
    let refresher = JwksRefresher::new(
        url,
        issuer,
        audience,
        JwksSettings {
            max_key_age: Duration::from_secs(config.auth_jwks_max_age_secs),
            allow_http: config.auth_jwks_allow_http,
        },
    )
    .context("AUTH_JWKS_URL")?;
    match refresher.fetch().await {
        Ok(_) => {}
        Err(e) if config.auth_required => {
            return Err(e.context(format!(
                "AUTH_JWKS_URL {} (AUTH_REQUIRED=true refuses to start without the identity \
                 provider's keys)",
                refresher.shown_url()
            )));
        }
        Err(e) => tracing::error!(
            url = refresher.shown_url(),
            error = format!("{e:#}"),
            "fetching the JWK set failed: starting with no keys, so every bearer token is \
             refused until a refetch succeeds"
        ),
    }
    Ok((Some(refresher.verifier()), Some(refresher)))
}

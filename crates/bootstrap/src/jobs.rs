//! Schedulers. Each runs in every instance; correctness never depends on there being
//! only one (each job's work is a conditional write in the database).
//!
//! An idle instance costs well under one database round trip per second: the outbox
//! relay sleeps until a commit notifies it, a retry falls due, or its slow fallback poll;
//! the expiry scan sleeps until the earliest unpaid order's deadline; the outbox gauge
//! counts only when `/metrics` is scraped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use adapter_postgres::{PgOutboxListener, PgPool, Reads};
use application::UseCases;
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Config;
use crate::relay::RelaySettings;
use adapter_identity::{JwksRefresher, UNKNOWN_KID_REFETCH_EVERY};

mod outbox_gauge;

use outbox_gauge::OutboxGauge;

const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(3600);
const OUTBOX_PURGE_EVERY: Duration = Duration::from_secs(3600);
const POOL_METRICS_EVERY: Duration = Duration::from_secs(5);
/// How often the read replica's lag is measured (one statement on the replica, none on
/// the primary), off the request path.
const REPLICA_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The relay's longest sleep. Commits wake it at once (`LISTEN/NOTIFY`) and a retry wakes
/// it at its due time; this poll only catches what neither announced (a notification
/// lost with a dropped connection), so it can be slow.
const OUTBOX_FALLBACK_POLL: Duration = Duration::from_secs(10);
/// The relay's longest wait between claims while deliveries are in flight or were just
/// claimed. A commit notifies only when no other event waits unclaimed (see the
/// `outbox_events_notify` trigger), so an event committed just as a claim takes the others
/// is found by this poll, within a second.
const OUTBOX_BUSY_POLL: Duration = Duration::from_secs(1);
/// The least time between two claims a wake-up starts, and how long settled deliveries
/// gather before they are marked, so payments committed close together are claimed and
/// marked together (a few statements for the lot, not two per payment). A wake-up at least
/// this long after the last claim claims at once, so a paid order after a quiet spell
/// reaches the data platform within milliseconds of its commit.
const OUTBOX_GATHER: Duration = Duration::from_millis(100);

/// What the schedulers keep an eye on besides the use cases.
pub(crate) struct Watched {
    /// Wakes the outbox relay; its gauge is registered.
    pub(crate) outbox_listener: Arc<PgOutboxListener>,
    /// The catalogue's reads, whose replica is checked once a second.
    pub(crate) reads: Reads,
    /// Refreshes the identity provider's keys.
    pub(crate) jwks: Option<JwksRefresher>,
}

/// Starts every scheduler; each stops when `stop` turns true.
pub(crate) fn spawn_all(
    config: &Config,
    use_cases: &UseCases,
    pool: &PgPool,
    registry: &Registry,
    watched: Watched,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinSet<()>> {
    let Watched {
        outbox_listener,
        reads,
        jwks,
    } = watched;
    let mut jobs = JoinSet::new();

    if let Some(jwks) = jwks {
        jobs.spawn(jwks.run(
            Duration::from_secs(config.auth_jwks_refresh_secs),
            UNKNOWN_KID_REFETCH_EVERY,
            stop.clone(),
        ));
    }

    let idempotency = use_cases.idempotency.clone();
    every(
        &mut jobs,
        "idempotency-purge",
        IDEMPOTENCY_PURGE_EVERY,
        stop.clone(),
        move || {
            let idempotency = idempotency.clone();
            async move {
                match idempotency.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "purged expired idempotency keys"),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "purging idempotency keys"),
                }
            }
        },
    );

    let relay = use_cases.deliver_events.clone();
    let retention =
        chrono::Duration::days(i64::try_from(config.outbox_retention_days).unwrap_or(i64::MAX));
    every(
        &mut jobs,
        "outbox-purge",
        OUTBOX_PURGE_EVERY,
        stop.clone(),
        move || {
            let relay = relay.clone();
            async move {
                match relay.purge_delivered(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "purged delivered outbox events"),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "purging the outbox"),
                }
            }
        },
    );

    let expire = use_cases.expire_due_orders.clone();
    let schedule = use_cases.expiry_schedule.clone();
    let max_wait = Duration::from_secs(config.order_expiry_scan_secs);
    let mut stopped = stop.clone();
    jobs.spawn(async move {
        loop {
            match expire.execute().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired unpaid orders"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "expiring orders"),
            }
            let wait = async { tokio::time::sleep(schedule.next_scan_in(max_wait).await).await };
            if until_stopped(&mut stopped, wait).await.is_none() {
                break;
            }
        }
        tracing::debug!(job = "order-expiry", "scheduler stopped");
    });

    let best = use_cases.refresh_best_sellers.clone();
    let refresh = Duration::from_secs(config.best_seller_refresh_secs);
    every(
        &mut jobs,
        "best-seller-refresh",
        refresh,
        stop.clone(),
        move || {
            let best = best.clone();
            async move {
                if let Err(e) = best.execute().await {
                    tracing::warn!(error = format!("{e:#}"), "refreshing best sellers");
                }
            }
        },
    );

    let relay = use_cases.deliver_events.clone();
    registry.register(Box::new(outbox_listener.gauge()))?;

    if let Some(gauge) = reads.gauge() {
        registry.register(Box::new(gauge))?;
        every(
            &mut jobs,
            "read-replica-check",
            REPLICA_CHECK_EVERY,
            stop.clone(),
            move || {
                let reads = reads.clone();
                async move { reads.check_replica().await }
            },
        );
    }
    let settings = RelaySettings {
        concurrency: config.outbox_delivery_concurrency,
        gather: OUTBOX_GATHER,
        busy_poll: OUTBOX_BUSY_POLL,
        fallback_poll: OUTBOX_FALLBACK_POLL,
        shutdown_grace: Duration::from_millis(config.outbox_shutdown_grace_ms),
    };
    let stopped = stop.clone();
    jobs.spawn(async move { crate::relay::run(relay, &*outbox_listener, settings, stopped).await });

    registry.register(Box::new(OutboxGauge::new(
        use_cases.deliver_events.clone(),
    )?))?;

    let gauge = IntGaugeVec::new(
        Opts::new(
            "shop_db_pool_connections",
            "Database pool connections by state",
        ),
        &["state"],
    )?;
    registry.register(Box::new(gauge.clone()))?;
    adapter_postgres::register_metrics(registry)?;
    let pool = pool.clone();
    every(
        &mut jobs,
        "pool-metrics",
        POOL_METRICS_EVERY,
        stop,
        move || {
            let state = pool.state();
            gauge
                .with_label_values(&["idle"])
                .set(i64::from(state.idle_connections));
            gauge
                .with_label_values(&["in_use"])
                .set(i64::from(state.connections - state.idle_connections));
            gauge
                .with_label_values(&["max"])
                .set(i64::from(pool.max_size()));
            async {}
        },
    );
    Ok(jobs)
}

/// Runs `work` unless `stop` turns true first; `None` when stopped (`work` is dropped,
/// so only waits go in here, never a delivery or a write half done).
async fn until_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        // The only change ever sent is "stop"; a dropped sender means stop too.
        _ = stop.changed() => None,
    }
}

/// Runs `tick` now and then every `period` until `stop` turns true. A tick in progress
/// finishes before the job stops.
fn every<F, Fut>(
    jobs: &mut JoinSet<()>,
    name: &'static str,
    period: Duration,
    mut stop: watch::Receiver<bool>,
    mut tick: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    jobs.spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while until_stopped(&mut stop, interval.tick()).await.is_some() {
            tick().await;
        }
        tracing::debug!(job = name, "scheduler stopped");
    });
}

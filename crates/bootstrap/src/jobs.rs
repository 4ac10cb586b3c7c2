//! Schedulers. Each runs in every instance; correctness never depends on there being
//! only one (each job's work is a conditional write in the database).

use std::future::Future;
use std::time::Duration;

use adapter_postgres::PgPool;
use application::UseCases;
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Config;

const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(3600);
const POOL_METRICS_EVERY: Duration = Duration::from_secs(5);
/// How often the relay looks for undelivered events (paid orders reach the data
/// platform within about this, plus the delivery itself).
const OUTBOX_POLL_EVERY: Duration = Duration::from_millis(200);

/// Starts every scheduler; each stops when `stop` turns true.
pub(crate) fn spawn_all(
    config: &Config,
    use_cases: &UseCases,
    pool: &PgPool,
    registry: &Registry,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinSet<()>> {
    let mut jobs = JoinSet::new();

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

    let orders = use_cases.orders.clone();
    let scan = Duration::from_secs(config.order_expiry_scan_secs);
    every(&mut jobs, "order-expiry", scan, stop.clone(), move || {
        let orders = orders.clone();
        async move {
            match orders.expire_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired unpaid orders"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "expiring orders"),
            }
        }
    });

    let best = use_cases.best_sellers.clone();
    let refresh = Duration::from_secs(config.best_seller_refresh_secs);
    every(
        &mut jobs,
        "best-seller-refresh",
        refresh,
        stop.clone(),
        move || {
            let best = best.clone();
            async move {
                if let Err(e) = best.refresh().await {
                    tracing::warn!(error = format!("{e:#}"), "refreshing best sellers");
                }
            }
        },
    );

    let relay = use_cases.deliver_events.clone();
    every(
        &mut jobs,
        "outbox-relay",
        OUTBOX_POLL_EVERY,
        stop.clone(),
        move || {
            let relay = relay.clone();
            async move {
                // A full batch means more are waiting: keep going until caught up.
                loop {
                    match relay.run_once().await {
                        Ok(n)
                            if n == usize::try_from(application::outbox::DeliverEvents::BATCH)
                                .unwrap_or(0) => {}
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = format!("{e:#}"), "outbox relay");
                            break;
                        }
                    }
                }
            }
        },
    );

    let outbox_gauge = IntGaugeVec::new(
        Opts::new(
            "shop_outbox_events",
            "Data-platform outbox events by delivery state",
        ),
        &["state"],
    )?;
    registry.register(Box::new(outbox_gauge.clone()))?;
    let relay = use_cases.deliver_events.clone();
    every(
        &mut jobs,
        "outbox-metrics",
        POOL_METRICS_EVERY,
        stop.clone(),
        move || {
            let (relay, gauge) = (relay.clone(), outbox_gauge.clone());
            async move {
                if let Ok(counts) = relay.counts().await {
                    gauge.with_label_values(&["pending"]).set(counts.pending);
                    gauge
                        .with_label_values(&["delivered"])
                        .set(counts.delivered);
                    gauge.with_label_values(&["failed"]).set(counts.failed);
                }
            }
        },
    );

    let gauge = IntGaugeVec::new(
        Opts::new(
            "shop_db_pool_connections",
            "Database pool connections by state",
        ),
        &["state"],
    )?;
    registry.register(Box::new(gauge.clone()))?;
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
        loop {
            tokio::select! {
                _ = interval.tick() => tick().await,
                // The only change ever sent is "stop"; a dropped sender means stop too.
                _ = stop.changed() => break,
            }
        }
        tracing::debug!(job = name, "scheduler stopped");
    });
}

//! [`Reads`]: where the reads that tolerate a little lag go (the catalogue's page and
//! detail): a streaming replica while it keeps up, else the primary.
//!
//! Whether the replica keeps up is measured by [`Reads::check_replica`], which the server
//! runs once a second, off the request path: one statement on the replica reading whether
//! its WAL receiver streams and how far its replay is behind (0 when it has replayed all it
//! received, else the age of the last replayed transaction). Past the maximum lag, or when
//! the replica does not answer, the reads go to the primary until a check finds it caught
//! up again. A read that fails on the replica is run again on the primary at once (and an
//! unreachable replica is set aside until the next check), so no request fails because of
//! the replica. A read of one row that the replica does not have yet
//! is asked of the primary too, so a product just created is never a 404.
//!
//! A read costs one statement, on the replica or on the primary; a second, on the primary,
//! only when the replica failed it or lacked the row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};
use domain::StoreUnavailable;
use domain::ports::ComponentStatus;
use prometheus::IntGauge;

use crate::error::db_error;
use crate::pool::{PgPool, run, with_connection};

/// How far the replica is behind, in milliseconds: NULL when it does not stream.
const REPLICA_LAG: &str = "\
    SELECT CASE \
        WHEN NOT pg_is_in_recovery() THEN 0::bigint \
        WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') \
            THEN NULL \
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::bigint \
        ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint \
    END AS lag_ms";

#[derive(QueryableByName)]
struct Lag {
    #[diesel(sql_type = Nullable<BigInt>)]
    lag_ms: Option<i64>,
}

#[derive(Debug)]
struct Replica {
    pool: PgPool,
    max_lag: Duration,
    /// The last check found it streaming within the maximum lag, and no read found it
    /// unreachable since.
    in_use: AtomicBool,
    /// `shop_db_replica_in_use`: 1 while reads go to the replica.
    gauge: IntGauge,
}

impl Replica {
    fn set_in_use(&self, in_use: bool) {
        if self.in_use.swap(in_use, Ordering::SeqCst) != in_use {
            if in_use {
                tracing::info!("catalogue reads go to the read replica again");
            } else {
                tracing::warn!(
                    "the read replica lags or does not answer: catalogue reads go to the primary"
                );
            }
        }
        self.gauge.set(i64::from(in_use));
    }
}

/// Where lag-tolerant reads go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reads {
    primary: PgPool,
    replica: Option<Arc<Replica>>,
}

impl Reads {
    /// Every read on the primary.
    pub fn primary(primary: PgPool) -> Self {
        Self {
            primary,
            replica: None,
        }
    }

    /// Reads on `replica` while it keeps within `max_lag` of the primary. Until the first
    /// [`Self::check_replica`], the primary.
    ///
    /// # Errors
    /// When the gauge cannot be made.
    pub fn with_replica(
        primary: PgPool,
        replica: PgPool,
        max_lag: Duration,
    ) -> anyhow::Result<Self> {
        let gauge = IntGauge::new(
            "shop_db_replica_in_use",
            "1 while lag-tolerant reads go to the read replica, 0 while they go to the primary",
        )?;
        Ok(Self {
            primary,
            replica: Some(Arc::new(Replica {
                pool: replica,
                max_lag,
                in_use: AtomicBool::new(false),
                gauge,
            })),
        })
    }

    /// The `shop_db_replica_in_use` gauge, when there is a replica.
    pub fn gauge(&self) -> Option<IntGauge> {
        self.replica.as_ref().map(|r| r.gauge.clone())
    }

    /// Whether reads go to the replica now.
    pub fn replica_in_use(&self) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.in_use.load(Ordering::SeqCst))
    }

    /// Measures the replica's lag (one statement on it) and sends reads to it only while
    /// it streams within the maximum lag. Does nothing without a replica.
    pub async fn check_replica(&self) {
        let Some(replica) = &self.replica else {
            return;
        };
        let lag = run(&replica.pool, |conn| {
            diesel::sql_query(REPLICA_LAG)
                .get_result::<Lag>(conn)
                .map_err(db_error)
        })
        .await;
        let max_ms = i64::try_from(replica.max_lag.as_millis()).unwrap_or(i64::MAX);
        let usable = match lag {
            Ok(Lag { lag_ms: Some(ms) }) => ms <= max_ms,
            Ok(Lag { lag_ms: None }) => false,
            Err(err) => {
                tracing::debug!(error = format!("{err:#}"), "checking the read replica");
                false
            }
        };
        replica.set_in_use(usable);
    }

    /// Runs `work` on the replica when it is in use, else on the primary; again on the
    /// primary when it failed on the replica, or when `missing` says the replica's answer
    /// may only be lag (a row not there yet). On the blocking pool, in the caller's span.
    pub(crate) async fn run<T, F>(&self, missing: fn(&T) -> bool, work: F) -> anyhow::Result<T>
    where
        F: Fn(&mut PgConnection) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let reads = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            reads.run_here(missing, work)
        })
        .await
        .map_err(|join| anyhow::anyhow!("database task failed: {join}"))?
    }

    /// [`Self::run`] on this thread, which may block (a blocking-pool thread).
    pub(crate) fn run_here<T, F>(&self, missing: fn(&T) -> bool, work: F) -> anyhow::Result<T>
    where
        F: Fn(&mut PgConnection) -> anyhow::Result<T>,
    {
        if let Some(replica) = self
            .replica
            .as_ref()
            .filter(|r| r.in_use.load(Ordering::SeqCst))
        {
            match with_connection(&replica.pool, &work) {
                Ok(found) if !missing(&found) => return Ok(found),
                Ok(_) => {}
                // A read is safe to run again: whatever failed on the replica (it is gone,
                // or a hot standby cancelled the query in a conflict with recovery) is
                // asked of the primary. Only an unreachable replica is set aside.
                Err(err) => {
                    tracing::debug!(error = format!("{err:#}"), "the read replica failed a read");
                    if err.is::<StoreUnavailable>() {
                        replica.set_in_use(false);
                    }
                }
            }
        }
        with_connection(&self.primary, work)
    }
}

impl ComponentStatus for Reads {
    fn name(&self) -> &'static str {
        "readReplica"
    }

    fn status(&self) -> Result<(), String> {
        if self.replica.is_none() || self.replica_in_use() {
            Ok(())
        } else {
            Err("lagging or unreachable: catalogue reads go to the primary".to_owned())
        }
    }
}

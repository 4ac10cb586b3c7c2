//! [`OutboxStore`] on PostgreSQL. Claims are committed leases taken with
//! `FOR UPDATE SKIP LOCKED`, so relays in many instances share the work, no network I/O
//! ever happens inside a transaction, and a relay that dies only delays its events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use domain::outbox::{CLAIM_LEASE, OutboxCounts, OutboxEvent};
use domain::ports::OutboxStore;

use crate::error::db_error;
use crate::pool::{PgPool, run};
use crate::retry::retrying;
use crate::statement::statement;

/// One batch of the purge of events delivered before `$1` (see [`crate::purge`]).
const PURGE_DELIVERED: &str = "\
    DELETE FROM outbox_events \
    WHERE (SELECT pg_try_advisory_xact_lock($3)) \
      AND id = ANY (ARRAY( \
          SELECT id FROM outbox_events \
          WHERE delivered_at IS NOT NULL AND delivered_at < $1 \
          ORDER BY delivered_at LIMIT $2))";

/// Claims up to `$1` events due now, oldest first, for `$2` microseconds (see
/// [`OutboxStore::claim_due`]). `now()` is the database's clock, shared by every instance.
const CLAIM_DUE: &str = "\
    WITH due AS MATERIALIZED ( \
        SELECT id FROM outbox_events \
        WHERE delivered_at IS NULL AND next_attempt_at <= now() \
        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
    UPDATE outbox_events e SET attempts = e.attempts + 1, \
        next_attempt_at = now() + $2 * interval '1 microsecond' \
    FROM due WHERE e.id = due.id \
    RETURNING e.id::text AS id, e.event_type, e.payload::text AS payload, e.attempts";

/// Marks the events `$1` delivered now.
const MARK_DELIVERED: &str = "\
    UPDATE outbox_events SET delivered_at = now(), last_error = NULL \
    WHERE id = ANY ($1::uuid[]) AND delivered_at IS NULL";

/// Records a failed attempt of `$1`, due again `$2` microseconds from now.
const RESCHEDULE: &str = "\
    UPDATE outbox_events SET next_attempt_at = now() + $2 * interval '1 microsecond', \
        last_error = left($3, 1000) \
    WHERE id = $1::uuid AND delivered_at IS NULL";

/// Microseconds until the earliest undelivered event is due (negative when overdue).
const NEXT_DUE_IN: &str = "\
    SELECT (extract(epoch FROM min(next_attempt_at) - now()) * 1000000)::bigint AS micros \
    FROM outbox_events WHERE delivered_at IS NULL";

/// A span in whole microseconds, as the statements take it.
fn micros(span: chrono::Duration) -> i64 {
    span.num_microseconds().unwrap_or(i64::MAX)
}

/// Arbitrary, fixed key of the advisory lock one purging batch holds.
const PURGE_LOCK_KEY: i64 = 0x5350_4f55_5442; // "SPOUTB"

/// The outbox in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOutboxStore {
    pool: PgPool,
}

impl PgOutboxStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    delivered: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
}

#[derive(QueryableByName)]
struct NextDue {
    #[diesel(sql_type = Nullable<BigInt>)]
    micros: Option<i64>,
}

#[async_trait]
impl OutboxStore for PgOutboxStore {
    #[tracing::instrument(name = "pg.outbox.purge", skip_all)]
    async fn purge_delivered_before(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        run(&self.pool, move |conn| {
            crate::purge::in_batches(conn, PURGE_DELIVERED, PURGE_LOCK_KEY, cutoff)
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.outbox.claim_due", skip_all)]
    async fn claim_due(&self, limit: i64) -> anyhow::Result<Vec<OutboxEvent>> {
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                statement(CLAIM_DUE)
                    .bind::<BigInt, _>(limit)
                    .bind::<BigInt, _>(micros(CLAIM_LEASE))
                    .load::<Claimed>(conn)
            })
            .map(|rows| {
                rows.into_iter()
                    .map(|r| OutboxEvent {
                        id: r.id,
                        event_type: r.event_type,
                        payload: r.payload,
                        attempts: r.attempts,
                    })
                    .collect()
            })
            .map_err(db_error)
        })
        .await
    }

    async fn mark_delivered(&self, ids: Vec<String>) -> anyhow::Result<()> {
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                statement(MARK_DELIVERED)
                    .bind::<diesel::sql_types::Array<Text>, _>(&ids)
                    .execute(conn)
            })
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    async fn reschedule(
        &self,
        id: String,
        after: chrono::Duration,
        error: String,
    ) -> anyhow::Result<()> {
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                statement(RESCHEDULE)
                    .bind::<Text, _>(&id)
                    .bind::<BigInt, _>(micros(after))
                    .bind::<Text, _>(&error)
                    .execute(conn)
            })
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    async fn counts(&self) -> anyhow::Result<OutboxCounts> {
        run(&self.pool, move |conn| {
            statement(
                "SELECT count(*) FILTER (WHERE delivered_at IS NULL AND last_error IS NULL) AS pending, \
                        count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered, \
                        count(*) FILTER (WHERE delivered_at IS NULL AND last_error IS NOT NULL) AS failed \
                 FROM outbox_events",
            )
            .get_result::<Counts>(conn)
            .map(|c| OutboxCounts {
                pending: c.pending,
                delivered: c.delivered,
                failed: c.failed,
            })
            .map_err(db_error)
        })
        .await
    }

    /// Reads the first entry of the partial index `outbox_events_pending`, so it costs the
    /// same however long the outbox grows.
    #[tracing::instrument(name = "pg.outbox.next_due_in", skip_all)]
    async fn next_due_in(&self) -> anyhow::Result<Option<chrono::Duration>> {
        run(&self.pool, move |conn| {
            statement(NEXT_DUE_IN)
                .get_result::<NextDue>(conn)
                .map(|row| row.micros.map(chrono::Duration::microseconds))
                .map_err(db_error)
        })
        .await
    }
}

//! [`OutboxStore`] on PostgreSQL. Claims are committed leases taken with
//! `FOR UPDATE SKIP LOCKED`, so relays in many instances share the work, no network I/O
//! ever happens inside a transaction, and a relay that dies only delays its events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
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

/// Claims up to `$2` events due at `$1`, oldest first, until `$3` (see
/// [`OutboxStore::claim_due`]).
const CLAIM_DUE: &str = "\
    WITH due AS MATERIALIZED ( \
        SELECT id FROM outbox_events \
        WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
        ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
    UPDATE outbox_events e SET attempts = e.attempts + 1, next_attempt_at = $3 \
    FROM due WHERE e.id = due.id \
    RETURNING e.id::text AS id, e.event_type, e.payload::text AS payload, e.attempts";

/// Marks the events `$1` delivered at `$2`.
const MARK_DELIVERED: &str = "\
    UPDATE outbox_events SET delivered_at = $2, last_error = NULL \
    WHERE id = ANY ($1::uuid[]) AND delivered_at IS NULL";

/// Records a failed attempt of `$1` and its next due time `$2`.
const RESCHEDULE: &str = "\
    UPDATE outbox_events SET next_attempt_at = $2, last_error = left($3, 1000) \
    WHERE id = $1::uuid AND delivered_at IS NULL";

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
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
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
    async fn claim_due(&self, now: DateTime<Utc>, limit: i64) -> anyhow::Result<Vec<OutboxEvent>> {
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                statement(CLAIM_DUE)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(limit)
                    .bind::<Timestamptz, _>(now + CLAIM_LEASE)
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

    async fn mark_delivered(&self, ids: Vec<String>, now: DateTime<Utc>) -> anyhow::Result<()> {
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                statement(MARK_DELIVERED)
                    .bind::<diesel::sql_types::Array<Text>, _>(&ids)
                    .bind::<Timestamptz, _>(now)
                    .execute(conn)
            })
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    async fn reschedule(&self, id: String, at: DateTime<Utc>, error: String) -> anyhow::Result<()> {
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                statement(RESCHEDULE)
                    .bind::<Text, _>(&id)
                    .bind::<Timestamptz, _>(at)
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
    #[tracing::instrument(name = "pg.outbox.next_due", skip_all)]
    async fn next_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        run(&self.pool, move |conn| {
            statement(
                "SELECT min(next_attempt_at) AS at FROM outbox_events WHERE delivered_at IS NULL",
            )
            .get_result::<NextDue>(conn)
            .map(|row| row.at)
            .map_err(db_error)
        })
        .await
    }
}

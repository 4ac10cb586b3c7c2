//! Deleting old rows in bounded batches, one instance at a time.
//!
//! One `DELETE` of everything past its retention would, on a table of millions of rows,
//! run into the statement timeout in every instance at once and leave the table growing.
//! Instead each batch is its own short statement that deletes at most [`BATCH`] rows and
//! only while it holds a transaction-level advisory lock (`pg_try_advisory_xact_lock`):
//! instances that run the job together take turns batch by batch instead of fighting over
//! the same rows, and a lock can never outlive its statement.

use diesel::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};

use crate::retry::retrying;
use crate::statement::statement;

/// Rows deleted per statement.
pub(crate) const BATCH: i64 = 10_000;

/// Runs `delete_batch` (binds: `$1` the cutoff, `$2` the batch size, `$3` the lock key;
/// it must delete nothing unless `pg_try_advisory_xact_lock($3)` is true) until a batch
/// deletes less than a full batch. Returns how many rows were deleted in all.
pub(crate) fn in_batches(
    conn: &mut PgConnection,
    delete_batch: &'static str,
    lock_key: i64,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> QueryResult<u64> {
    let mut deleted = 0;
    loop {
        let batch = retrying(conn, |conn| {
            statement(delete_batch)
                .bind::<Timestamptz, _>(cutoff)
                .bind::<BigInt, _>(BATCH)
                .bind::<BigInt, _>(lock_key)
                .execute(conn)
        })?;
        deleted += batch as u64;
        if i64::try_from(batch).unwrap_or(i64::MAX) < BATCH {
            return Ok(deleted);
        }
    }
}

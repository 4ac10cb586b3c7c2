//! [`IdempotencyStore`] on PostgreSQL, and [`complete_in_tx`], which other stores call
//! to save a response in the same transaction as the effect it describes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    BigInt, Bool, Bytea, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use domain::idempotency::{
    Completion, Fingerprint, IdempotencyRecord, IdempotencyScope, LeaseLost, LeaseToken,
    StoredResponse,
};
use domain::ports::{Claim, IdempotencyStore};
use uuid::Uuid;

use crate::error::{TxError, db_error};
use crate::pool::{PgPool, run};
use crate::retry::{self, retrying};
use crate::schema::idempotency_keys as keys;
use crate::statement::statement;

/// Idempotency keys in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
}

impl PgIdempotencyStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn new_token() -> LeaseToken {
    LeaseToken(Uuid::new_v4().as_u128())
}

/// Rows matching one scope.
macro_rules! scoped {
    ($scope:expr) => {
        keys::table
            .filter(keys::user_id.eq($scope.user_id.get()))
            .filter(keys::method.eq($scope.method.clone()))
            .filter(keys::path.eq($scope.path.clone()))
            .filter(keys::key.eq($scope.key.as_str().to_owned()))
    };
}

/// One batch of the purge of keys first used before `$1` (see [`crate::purge`]).
const PURGE_KEYS: &str = "\
    DELETE FROM idempotency_keys \
    WHERE (SELECT pg_try_advisory_xact_lock($3)) \
      AND ctid = ANY (ARRAY( \
          SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2))";

/// Arbitrary, fixed key of the advisory lock one purging batch holds.
const PURGE_LOCK_KEY: i64 = 0x5350_4944_454d; // "SPIDEM"

/// Claims a key in one statement: records it, or returns the record already there.
const CLAIM: &str = "\
    WITH claimed AS ( \
        INSERT INTO idempotency_keys (user_id, method, path, key, fingerprint, lease_token, \
                                      locked_until, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
        ON CONFLICT DO NOTHING \
        RETURNING fingerprint, lease_token, locked_until, response_status, response_body) \
    SELECT true AS acquired, * FROM claimed \
    UNION ALL \
    SELECT false, fingerprint, lease_token, locked_until, response_status, response_body \
    FROM idempotency_keys \
    WHERE user_id = $1 AND method = $2 AND path = $3 AND key = $4 \
      AND NOT EXISTS (SELECT 1 FROM claimed)";

#[derive(QueryableByName)]
struct RecordRow {
    #[diesel(sql_type = Bytea)]
    fingerprint: Vec<u8>,
    #[diesel(sql_type = SqlUuid)]
    lease_token: Uuid,
    #[diesel(sql_type = Timestamptz)]
    locked_until: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SmallInt>)]
    response_status: Option<i16>,
    #[diesel(sql_type = Nullable<Bytea>)]
    response_body: Option<Vec<u8>>,
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = Bool)]
    acquired: bool,
    #[diesel(embed)]
    record: RecordRow,
}

impl From<RecordRow> for IdempotencyRecord {
    fn from(row: RecordRow) -> Self {
        let response = match (row.response_status, row.response_body) {
            (Some(status), Some(body)) => Some(StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                body,
            }),
            _ => None,
        };
        Self {
            fingerprint: Fingerprint(row.fingerprint),
            token: LeaseToken(row.lease_token.as_u128()),
            locked_until: row.locked_until,
            response,
        }
    }
}

/// Runs `work` in one transaction and, with a `completion`, stores the idempotency
/// key's response in that same transaction: the shape of every idempotent operation.
pub(crate) async fn transact_idempotent<T, E, F>(
    pool: &PgPool,
    completion: Option<Completion<T>>,
    work: F,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<anyhow::Error> + Send + 'static,
    F: FnMut(&mut PgConnection) -> Result<T, TxError<E>> + Send + 'static,
{
    run(pool, move |conn| {
        in_tx_completing(conn, completion.as_ref(), work).map_err(TxError::into_domain)
    })
    .await
}

/// On a connection already checked out: runs `work` in one transaction and, with a
/// `completion`, stores the key's response in it. A refusal comes back with the
/// transaction rolled back and the connection free for a diagnosing read. A transaction
/// rolled back by a deadlock or a serialization failure runs again ([`crate::retry`]).
pub(crate) fn in_tx_completing<T, E, F>(
    conn: &mut PgConnection,
    completion: Option<&Completion<T>>,
    mut work: F,
) -> Result<T, TxError<E>>
where
    E: From<anyhow::Error>,
    F: FnMut(&mut PgConnection) -> Result<T, TxError<E>>,
{
    retry::transaction(conn, |conn| {
        let outcome = work(conn)?;
        if let Some(completion) = completion {
            complete_in_tx(conn, completion, &outcome)?;
        }
        Ok(outcome)
    })
}

/// Saves `completion`'s rendering of `outcome` as the key's response, inside the
/// caller's transaction. Fails with [`LeaseLost`] (rolling the caller back) when the
/// key is no longer held under the completion's token.
pub(crate) fn complete_in_tx<T, E: From<anyhow::Error>>(
    conn: &mut PgConnection,
    completion: &Completion<T>,
    outcome: &T,
) -> Result<(), TxError<E>> {
    let response = completion.render(outcome);
    if store_response(conn, &completion.scope, completion.token, &response)? {
        completion.keep(response);
        Ok(())
    } else {
        Err(TxError::Domain(E::from(anyhow::Error::new(LeaseLost))))
    }
}

/// A response that shows one number only the effect's statement computes (the balance
/// after a charge), rendered around it: `prefix ++ decimal(n) ++ suffix`. With it the
/// statement that computes `n` stores the response itself, so effect and response
/// commit together without a transaction around two statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NumberSlot {
    pub(crate) status: i16,
    pub(crate) prefix: Vec<u8>,
    pub(crate) suffix: Vec<u8>,
}

impl NumberSlot {
    /// Finds the slot by rendering two probe numbers whose digits differ at every
    /// position: the bytes the two renderings share before and after are the prefix and
    /// suffix, and what lies between must be exactly each probe's decimal digits. Any
    /// other shape (the number twice, formatted, or absent) is `None`, and the caller
    /// completes the key in a second statement instead. Whenever it is `Some`,
    /// `prefix ++ n ++ suffix` is byte for byte what `render(n)` returns, as PostgreSQL
    /// writes a bigint in the same plain decimal digits as Rust.
    pub(crate) fn probe(render: impl Fn(i64) -> StoredResponse) -> Option<Self> {
        // Different lengths and no digit in common, so neither padding nor a shared
        // leading or trailing digit can pass for the frame.
        const PROBES: [i64; 3] = [1_111_111_111, 22_222, 3];
        let rendered = PROBES.map(&render);
        let [one, two, _] = &rendered;
        let prefix_len = one
            .body
            .iter()
            .zip(&two.body)
            .take_while(|(a, b)| a == b)
            .count();
        let (one_rest, two_rest) = (one.body.get(prefix_len..)?, two.body.get(prefix_len..)?);
        let suffix_len = one_rest
            .iter()
            .rev()
            .zip(two_rest.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let slot = Self {
            status: i16::try_from(one.status).ok()?,
            prefix: one.body.get(..prefix_len)?.to_vec(),
            suffix: one_rest
                .get(one_rest.len().checked_sub(suffix_len)?..)?
                .to_vec(),
        };
        let fits = PROBES.iter().zip(&rendered).all(|(n, response)| {
            i16::try_from(response.status).ok() == Some(slot.status)
                && response.body == slot.fill(*n)
        });
        fits.then_some(slot)
    }

    fn fill(&self, n: i64) -> Vec<u8> {
        [
            self.prefix.as_slice(),
            n.to_string().as_bytes(),
            &self.suffix,
        ]
        .concat()
    }
}

fn store_response(
    conn: &mut PgConnection,
    scope: &IdempotencyScope,
    token: LeaseToken,
    response: &StoredResponse,
) -> QueryResult<bool> {
    let updated = diesel::update(
        scoped!(scope)
            .filter(keys::lease_token.eq(Uuid::from_u128(token.0)))
            .filter(keys::response_status.is_null()),
    )
    .set((
        keys::response_status.eq(i16::try_from(response.status).unwrap_or(500)),
        keys::response_body.eq(&response.body),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
    #[tracing::instrument(name = "pg.idempotency.claim", skip_all)]
    async fn claim(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &Fingerprint,
        locked_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim> {
        let scope = scope.clone();
        let fingerprint = fingerprint.0.clone();
        run(&self.pool, move |conn| {
            // A record may vanish between a conflict and the read (released by a failed
            // request, or purged), or commit after this statement's snapshot was taken;
            // then the claim is simply tried again.
            for _ in 0..3 {
                let token = new_token();
                let row = retrying(conn, |conn| {
                    statement(CLAIM)
                        .bind::<BigInt, _>(scope.user_id.get())
                        .bind::<Text, _>(&scope.method)
                        .bind::<Text, _>(&scope.path)
                        .bind::<Text, _>(scope.key.as_str())
                        .bind::<Bytea, _>(&fingerprint)
                        .bind::<SqlUuid, _>(Uuid::from_u128(token.0))
                        .bind::<Timestamptz, _>(locked_until)
                        .bind::<Timestamptz, _>(now)
                        .get_result::<ClaimRow>(conn)
                        .optional()
                })
                .map_err(db_error)?;
                match row {
                    Some(row) if row.acquired => return Ok(Claim::Acquired(token)),
                    Some(row) => return Ok(Claim::Existing(row.record.into())),
                    None => {}
                }
            }
            Err(anyhow::anyhow!(
                "idempotency key kept vanishing while claimed"
            ))
        })
        .await
    }

    #[tracing::instrument(name = "pg.idempotency.take_over", skip_all)]
    async fn take_over(
        &self,
        scope: &IdempotencyScope,
        stale: LeaseToken,
        locked_until: DateTime<Utc>,
    ) -> anyhow::Result<Option<LeaseToken>> {
        let scope = scope.clone();
        run(&self.pool, move |conn| {
            let token = new_token();
            let updated = retrying(conn, |conn| {
                diesel::update(
                    scoped!(scope)
                        .filter(keys::lease_token.eq(Uuid::from_u128(stale.0)))
                        .filter(keys::response_status.is_null()),
                )
                .set((
                    keys::lease_token.eq(Uuid::from_u128(token.0)),
                    keys::locked_until.eq(locked_until),
                ))
                .execute(conn)
            })
            .map_err(db_error)?;
            Ok((updated == 1).then_some(token))
        })
        .await
    }

    #[tracing::instrument(name = "pg.idempotency.complete", skip_all)]
    async fn complete(
        &self,
        scope: &IdempotencyScope,
        token: LeaseToken,
        response: &StoredResponse,
    ) -> anyhow::Result<bool> {
        let scope = scope.clone();
        let response = response.clone();
        run(&self.pool, move |conn| {
            retrying(conn, |conn| store_response(conn, &scope, token, &response)).map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.idempotency.release", skip_all)]
    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> anyhow::Result<()> {
        let scope = scope.clone();
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                diesel::delete(
                    scoped!(scope)
                        .filter(keys::lease_token.eq(Uuid::from_u128(token.0)))
                        .filter(keys::response_status.is_null()),
                )
                .execute(conn)
            })
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.idempotency.purge", skip_all)]
    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        run(&self.pool, move |conn| {
            crate::purge::in_batches(conn, PURGE_KEYS, PURGE_LOCK_KEY, cutoff).map_err(db_error)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: i64) -> StoredResponse {
        StoredResponse {
            status: 200,
            body: format!(r#"{{"userId":12,"balance":{n}}}"#).into_bytes(),
        }
    }

    #[test]
    fn a_response_showing_the_number_once_is_filled_byte_for_byte() {
        let slot = NumberSlot::probe(json).unwrap();
        assert_eq!(slot.prefix, br#"{"userId":12,"balance":"#.to_vec());
        assert_eq!(slot.suffix, b"}".to_vec());
        for n in [0, 7, 10, 1_111, 99_999_999, 100_000_000] {
            assert_eq!(slot.fill(n), json(n).body);
        }
    }

    #[test]
    fn any_other_shape_has_no_slot() {
        let twice = |n: i64| StoredResponse {
            status: 200,
            body: format!(r#"{{"a":{n},"b":{n}}}"#).into_bytes(),
        };
        assert_eq!(NumberSlot::probe(twice), None);
        let hex = |n: i64| StoredResponse {
            status: 200,
            body: format!(r#"{{"a":"{n:x}"}}"#).into_bytes(),
        };
        assert_eq!(NumberSlot::probe(hex), None);
        let padded = |n: i64| StoredResponse {
            status: 200,
            body: format!(r#"{{"a":{n:010}}}"#).into_bytes(),
        };
        assert_eq!(NumberSlot::probe(padded), None);
        let absent = |_: i64| StoredResponse {
            status: 200,
            body: b"{}".to_vec(),
        };
        assert_eq!(NumberSlot::probe(absent), None);
    }
}

//! [`IdempotencyStore`] on PostgreSQL, and [`complete_in_tx`], which other stores call
//! to save a response in the same transaction as the effect it describes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::idempotency::{
    Completion, Fingerprint, IdempotencyRecord, IdempotencyScope, LeaseLost, LeaseToken,
    StoredResponse,
};
use domain::ports::{Claim, IdempotencyStore};
use uuid::Uuid;

use crate::error::{TxError, db_error};
use crate::pool::{PgPool, run};
use crate::schema::idempotency_keys as keys;

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

#[derive(Queryable)]
struct RecordRow {
    fingerprint: Vec<u8>,
    lease_token: Uuid,
    locked_until: DateTime<Utc>,
    response_status: Option<i16>,
    response_body: Option<Vec<u8>>,
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
    F: FnOnce(&mut PgConnection) -> Result<T, TxError<E>> + Send + 'static,
{
    run(pool, move |conn| {
        conn.transaction(|conn| {
            let outcome = work(conn)?;
            if let Some(completion) = &completion {
                complete_in_tx(conn, completion, &outcome)?;
            }
            Ok(outcome)
        })
        .map_err(TxError::into_domain)
    })
    .await
}

/// Saves `completion`'s rendering of `outcome` as the key's response, inside the
/// caller's transaction. Fails with [`LeaseLost`] (rolling the caller back) when the
/// key is no longer held under the completion's token.
pub(crate) fn complete_in_tx<T, E: From<anyhow::Error>>(
    conn: &mut PgConnection,
    completion: &Completion<T>,
    outcome: &T,
) -> Result<(), TxError<E>> {
    let response = (completion.render)(outcome);
    if store_response(conn, &completion.scope, completion.token, &response)? {
        Ok(())
    } else {
        Err(TxError::Domain(E::from(anyhow::Error::new(LeaseLost))))
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
            // A record may vanish between the insert and the read (released by a failed
            // request, or purged); then the insert is simply tried again.
            for _ in 0..3 {
                let token = new_token();
                let inserted = diesel::insert_into(keys::table)
                    .values((
                        keys::user_id.eq(scope.user_id.get()),
                        keys::method.eq(&scope.method),
                        keys::path.eq(&scope.path),
                        keys::key.eq(scope.key.as_str()),
                        keys::fingerprint.eq(&fingerprint),
                        keys::lease_token.eq(Uuid::from_u128(token.0)),
                        keys::locked_until.eq(locked_until),
                        keys::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .map_err(db_error)?;
                if inserted == 1 {
                    return Ok(Claim::Acquired(token));
                }
                let existing = scoped!(scope)
                    .select((
                        keys::fingerprint,
                        keys::lease_token,
                        keys::locked_until,
                        keys::response_status,
                        keys::response_body,
                    ))
                    .first::<RecordRow>(conn)
                    .optional()
                    .map_err(db_error)?;
                if let Some(row) = existing {
                    return Ok(Claim::Existing(row.into()));
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
            let updated = diesel::update(
                scoped!(scope)
                    .filter(keys::lease_token.eq(Uuid::from_u128(stale.0)))
                    .filter(keys::response_status.is_null()),
            )
            .set((
                keys::lease_token.eq(Uuid::from_u128(token.0)),
                keys::locked_until.eq(locked_until),
            ))
            .execute(conn)
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
            store_response(conn, &scope, token, &response).map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.idempotency.release", skip_all)]
    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> anyhow::Result<()> {
        let scope = scope.clone();
        run(&self.pool, move |conn| {
            diesel::delete(
                scoped!(scope)
                    .filter(keys::lease_token.eq(Uuid::from_u128(token.0)))
                    .filter(keys::response_status.is_null()),
            )
            .execute(conn)
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.idempotency.purge", skip_all)]
    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        run(&self.pool, move |conn| {
            diesel::delete(keys::table.filter(keys::created_at.lt(cutoff)))
                .execute(conn)
                .map(|n| n as u64)
                .map_err(db_error)
        })
        .await
    }
}

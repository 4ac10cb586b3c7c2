//! [`PointStore`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use domain::idempotency::Completion;
use domain::points::{
    Balance, BalanceLimitExceeded, Charged, Credit, PointHistoryEntry, PointKind,
};
use domain::ports::{CreditError, PointStore};
use domain::user::ForUser;
use domain::{OrderId, Page, PageRequest, UserId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};

use crate::error::{TxError, db_error};
use crate::idempotency::transact_idempotent;
use crate::pool::{PgPool, run};
use crate::schema::point_wallets;

/// Point wallets and history in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgPointStore {
    pool: PgPool,
}

impl PgPointStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Adds the amount to the wallet while its balance is at most the ceiling, and records
/// the CHARGE with the balance after, in one statement. The guarded UPDATE is the whole
/// concurrency story: it takes the wallet's row lock, so concurrent credits queue on it
/// and each sees the balance the previous one left.
const CREDIT: &str = "\
    WITH credited AS ( \
        UPDATE point_wallets SET balance = balance + $2, updated_at = $4 \
        WHERE user_id = $1 AND balance <= $3 RETURNING balance), \
    recorded AS ( \
        INSERT INTO point_history (user_id, kind, amount, balance_after, created_at) \
        SELECT $1, $5, $2, balance, $4 FROM credited) \
    SELECT balance FROM credited";

#[derive(QueryableByName)]
struct BalanceRow {
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

fn credit_now(
    conn: &mut PgConnection,
    credit: Credit,
    now: DateTime<Utc>,
) -> Result<Charged, TxError<CreditError>> {
    let user = credit.user_id.get();
    let balance = diesel::sql_query(CREDIT)
        .bind::<BigInt, _>(user)
        .bind::<BigInt, _>(credit.amount.get())
        .bind::<BigInt, _>(credit.ceiling.get())
        .bind::<Timestamptz, _>(now)
        .bind::<Text, _>(PointKind::Charge.as_str())
        .get_result::<BalanceRow>(conn)
        .optional()?;
    let Some(BalanceRow { balance }) = balance else {
        // The failure path only: tell an unknown user from a full wallet.
        let known: bool =
            diesel::select(exists(point_wallets::table.find(user))).get_result(conn)?;
        return Err(TxError::Domain(if known {
            CreditError::LimitExceeded(BalanceLimitExceeded)
        } else {
            CreditError::UserNotFound
        }));
    };
    Ok(Charged {
        user_id: credit.user_id,
        balance: Balance::from_trusted(balance),
    })
}

/// A page of a user's history with its count and whether the user exists, in one
/// statement (an empty page still carries the count).
const HISTORY_PAGE: &str = "\
    SELECT c.user_exists, c.total_count, h.id, h.kind, h.amount, h.balance_after, \
           h.order_id, h.created_at \
    FROM (SELECT EXISTS (SELECT 1 FROM point_wallets WHERE user_id = $1) AS user_exists, \
                 (SELECT count(*) FROM point_history WHERE user_id = $1) AS total_count) c \
    LEFT JOIN LATERAL ( \
        SELECT * FROM point_history WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3) h \
    ON true \
    ORDER BY h.id DESC";

#[derive(QueryableByName)]
struct HistoryPageRow {
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(sql_type = BigInt)]
    total_count: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    kind: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    balance_after: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    order_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_at: Option<DateTime<Utc>>,
}

impl HistoryPageRow {
    /// The entry, or `None` for the row of an empty page.
    fn into_entry(self) -> anyhow::Result<Option<PointHistoryEntry>> {
        let (Some(id), Some(kind), Some(amount), Some(balance_after), Some(created_at)) = (
            self.id,
            self.kind,
            self.amount,
            self.balance_after,
            self.created_at,
        ) else {
            return Ok(None);
        };
        let kind = PointKind::parse(&kind)
            .ok_or_else(|| anyhow::anyhow!("unknown point history kind {kind:?}"))?;
        Ok(Some(PointHistoryEntry {
            id,
            kind,
            amount,
            balance_after: Balance::from_trusted(balance_after),
            order_id: self.order_id.map(OrderId::from_trusted),
            created_at,
        }))
    }
}

#[async_trait]
impl PointStore for PgPointStore {
    #[tracing::instrument(name = "pg.points.balance", skip_all, fields(user_id = %user))]
    async fn balance(&self, user: UserId) -> anyhow::Result<Option<Balance>> {
        run(&self.pool, move |conn| {
            point_wallets::table
                .find(user.get())
                .select(point_wallets::balance)
                .first::<i64>(conn)
                .optional()
                .map(|b| b.map(Balance::from_trusted))
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.points.history", skip_all, fields(user_id = %user))]
    async fn history(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> anyhow::Result<ForUser<Page<PointHistoryEntry>>> {
        run(&self.pool, move |conn| {
            let rows = diesel::sql_query(HISTORY_PAGE)
                .bind::<BigInt, _>(user.get())
                .bind::<BigInt, _>(page.offset())
                .bind::<BigInt, _>(page.limit())
                .load::<HistoryPageRow>(conn)
                .map_err(db_error)?;
            let Some((true, total_count)) = rows.first().map(|r| (r.user_exists, r.total_count))
            else {
                return Ok(ForUser::UnknownUser);
            };
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(entry) = row.into_entry()? {
                    items.push(entry);
                }
            }
            Ok(ForUser::Found(Page {
                items,
                request: page,
                total_count,
            }))
        })
        .await
    }

    #[tracing::instrument(name = "pg.points.credit", skip_all, fields(user_id = %credit.user_id))]
    async fn credit(
        &self,
        credit: Credit,
        now: DateTime<Utc>,
        completion: Option<Completion<Charged>>,
    ) -> Result<Charged, CreditError> {
        match completion {
            // One autocommit statement: the credit and its history row, or nothing.
            None => run(&self.pool, move |conn| {
                credit_now(conn, credit, now).map_err(TxError::into_domain)
            })
            .await,
            // The key's response must commit with the credit, and it is rendered from
            // the balance the credit computes: a transaction of the two.
            Some(completion) => {
                transact_idempotent(&self.pool, Some(completion), move |conn| {
                    credit_now(conn, credit, now)
                })
                .await
            }
        }
    }
}

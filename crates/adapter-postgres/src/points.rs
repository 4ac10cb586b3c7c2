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
use domain::{OrderId, Page, PageRequest, UserId};

use crate::error::{TxError, db_error};
use crate::idempotency::transact_idempotent;
use crate::pool::{PgPool, run};
use crate::schema::{point_history, point_wallets};

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

#[derive(Queryable)]
struct HistoryRow {
    id: i64,
    kind: String,
    amount: i64,
    balance_after: i64,
    order_id: Option<i64>,
    created_at: DateTime<Utc>,
}

impl HistoryRow {
    fn into_entry(self) -> anyhow::Result<PointHistoryEntry> {
        let kind = PointKind::parse(&self.kind)
            .ok_or_else(|| anyhow::anyhow!("unknown point history kind {:?}", self.kind))?;
        Ok(PointHistoryEntry {
            id: self.id,
            kind,
            amount: self.amount,
            balance_after: Balance::from_trusted(self.balance_after),
            order_id: self.order_id.map(OrderId::from_trusted),
            created_at: self.created_at,
        })
    }
}

/// Applies a credit inside an open transaction. The guarded UPDATE is the whole
/// concurrency story: it takes the wallet's row lock, so concurrent credits queue on
/// it and each sees the balance the previous one left.
fn credit_tx(
    conn: &mut PgConnection,
    credit: Credit,
    now: DateTime<Utc>,
) -> Result<Charged, TxError<CreditError>> {
    let user = credit.user_id.get();
    let balance = diesel::update(
        point_wallets::table
            .filter(point_wallets::user_id.eq(user))
            .filter(point_wallets::balance.le(credit.ceiling.get())),
    )
    .set((
        point_wallets::balance.eq(point_wallets::balance + credit.amount.get()),
        point_wallets::updated_at.eq(now),
    ))
    .returning(point_wallets::balance)
    .get_result::<i64>(conn)
    .optional()?;
    let Some(balance) = balance else {
        let known: bool =
            diesel::select(exists(point_wallets::table.find(user))).get_result(conn)?;
        return Err(TxError::Domain(if known {
            CreditError::LimitExceeded(BalanceLimitExceeded)
        } else {
            CreditError::UserNotFound
        }));
    };
    diesel::insert_into(point_history::table)
        .values((
            point_history::user_id.eq(user),
            point_history::kind.eq(PointKind::Charge.as_str()),
            point_history::amount.eq(credit.amount.get()),
            point_history::balance_after.eq(balance),
            point_history::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(Charged {
        user_id: credit.user_id,
        balance: Balance::from_trusted(balance),
    })
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
    ) -> anyhow::Result<Page<PointHistoryEntry>> {
        run(&self.pool, move |conn| {
            let of_user = point_history::table.filter(point_history::user_id.eq(user.get()));
            let total_count: i64 = of_user.count().get_result(conn).map_err(db_error)?;
            let rows: Vec<HistoryRow> = of_user
                .select((
                    point_history::id,
                    point_history::kind,
                    point_history::amount,
                    point_history::balance_after,
                    point_history::order_id,
                    point_history::created_at,
                ))
                .order(point_history::id.desc())
                .offset(page.offset())
                .limit(page.limit())
                .load(conn)
                .map_err(db_error)?;
            Ok(Page {
                items: rows
                    .into_iter()
                    .map(HistoryRow::into_entry)
                    .collect::<anyhow::Result<_>>()?,
                request: page,
                total_count,
            })
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
        transact_idempotent(&self.pool, completion, move |conn| {
            credit_tx(conn, credit, now)
        })
        .await
    }
}

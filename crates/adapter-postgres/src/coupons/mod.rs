//! [`CouponStore`] on PostgreSQL: striped remaining quantities and grouped issues.
//!
//! - [`claim`]: a campaign's remaining quantity is split over stripes, so concurrent
//!   claims on one hot coupon lock different rows and commit in parallel.
//! - [`issue`]: a lone issue is one statement between `BEGIN` and `COMMIT` that inserts
//!   the copy (only for a known user without one) and claims its unit; a group of one
//!   coupon's issues is one transaction of a few statements.
//! - [`batcher`]: the [`IssueBatcher`] groups issues that arrive while earlier ones are
//!   being written; `bootstrap` starts it and stops it on shutdown.
//! - [`terms`]: campaigns' terms kept in memory, so refusals cost no round trip.
//! - [`rows`]: the reading statements and their rows mapped into domain values.
//!
//! Every guarantee is the database's (the `UNIQUE (user_id, coupon_id)` constraint,
//! guarded claims, `CHECK (remaining >= 0)`), so any number of instances may run.

mod batcher;
mod claim;
mod issue;
mod rows;
mod terms;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt};
use domain::coupon::{Coupon, CouponIssue, NewCoupon, UserCoupon};
use domain::idempotency::Completion;
use domain::ports::{CouponStore, IssueError};
use domain::user::ForUser;
use domain::{CouponId, UserId};
use tokio::sync::oneshot;

pub use batcher::{IssueBatcher, IssueBatcherLimits};

use crate::error::db_error;
use crate::group::{Fetch, Grouped, LANES, MAX_GROUP};
use crate::pool::{PgPool, run, with_connection};
use crate::schema::{coupon_stock_stripes as stripes, coupons};
use crate::statement::statement;
use batcher::{Pending, Refused};
use claim::stripe_sizes;
use rows::{
    COPIES_OF_USER, COPIES_OF_USERS, CopyOfUserRow, CouponRow, FIND_COUPON, HOLDING, HoldingRow,
};
use terms::TermsCache;

/// Coupons in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgCouponStore {
    pool: PgPool,
    terms: TermsCache,
    /// Groups concurrent issues; without one, each issue is written alone.
    batcher: Option<IssueBatcher>,
    /// A user's coupons, grouped while reads of them overlap.
    copies: Grouped<i64, Vec<UserCoupon>>,
}

/// The copies of a group of users: one statement (`u.id = ANY($1)`; `= $1` for a user
/// alone), one connection; a user who does not exist has no entry.
fn copies_of_users(pool: PgPool) -> Fetch<i64, Vec<UserCoupon>> {
    Arc::new(move |users: Vec<i64>| {
        with_connection(&pool, move |conn| {
            let rows: Vec<CopyOfUserRow> = match users.as_slice() {
                // Alone: the one-user statement, as cheap as before grouping.
                [user] => statement(COPIES_OF_USER)
                    .bind::<BigInt, _>(*user)
                    .load(conn),
                _ => statement(COPIES_OF_USERS)
                    .bind::<Array<BigInt>, _>(users)
                    .load(conn),
            }
            .map_err(db_error)?;
            rows::copies_by_user(rows)
        })
    })
}

impl PgCouponStore {
    /// A store that writes each issue in a transaction of its own.
    pub fn new(pool: PgPool) -> Self {
        Self {
            copies: Grouped::new(copies_of_users(pool.clone()), LANES, MAX_GROUP),
            pool,
            terms: TermsCache::default(),
            batcher: None,
        }
    }

    /// A store whose concurrent issues of one coupon are grouped by `batcher` (started
    /// on the same database). Once the batcher has stopped, issues are written alone.
    pub fn grouped(pool: PgPool, batcher: IssueBatcher) -> Self {
        Self {
            batcher: Some(batcher),
            ..Self::new(pool)
        }
    }

    async fn write(
        &self,
        issue: CouponIssue,
        completion: Option<Completion<UserCoupon>>,
    ) -> Result<UserCoupon, IssueError> {
        let Some(batcher) = &self.batcher else {
            return issue::issue_alone(&self.pool, issue, completion).await;
        };
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            request: (issue, completion),
            reply,
        };
        match batcher.submit(pending) {
            Ok(()) => {}
            // Too many waiting: refuse at once, nothing written.
            Err(Refused::Full) => return Err(IssueError::Overloaded),
            Err(Refused::Stopped(returned)) => {
                // The batcher has stopped: write this one alone.
                let (issue, completion) = returned.request;
                return issue::issue_alone(&self.pool, issue, completion).await;
            }
        }
        outcome.await.unwrap_or_else(|_| {
            Err(IssueError::Unknown(anyhow::anyhow!(
                "coupon issue was dropped"
            )))
        })
    }
}

#[async_trait]
impl CouponStore for PgCouponStore {
    #[tracing::instrument(name = "pg.coupons.create", skip_all)]
    async fn create(&self, coupon: NewCoupon, now: DateTime<Utc>) -> anyhow::Result<Coupon> {
        let created = run(&self.pool, move |conn| {
            conn.transaction(|conn| {
                let total = coupon.total_quantity.get();
                let (id, starts_at, ends_at): (i64, DateTime<Utc>, DateTime<Utc>) =
                    diesel::insert_into(coupons::table)
                        .values((
                            coupons::name.eq(coupon.name.as_str()),
                            coupons::discount_type.eq(coupon.discount.kind()),
                            coupons::discount_value.eq(coupon.discount.value()),
                            coupons::total_quantity.eq(total),
                            coupons::starts_at.eq(coupon.starts_at),
                            coupons::ends_at.eq(coupon.ends_at),
                            coupons::created_at.eq(now),
                        ))
                        .returning((coupons::id, coupons::starts_at, coupons::ends_at))
                        .get_result(conn)?;
                let rows: Vec<_> = stripe_sizes(total)
                    .into_iter()
                    .zip(0_i16..)
                    .map(|(remaining, stripe)| {
                        (
                            stripes::coupon_id.eq(id),
                            stripes::stripe.eq(stripe),
                            stripes::remaining.eq(remaining),
                        )
                    })
                    .collect();
                diesel::insert_into(stripes::table)
                    .values(&rows)
                    .execute(conn)?;
                Ok(Coupon {
                    id: CouponId::from_trusted(id),
                    name: coupon.name,
                    discount: coupon.discount,
                    total_quantity: total,
                    remaining_quantity: total,
                    // As stored (PostgreSQL keeps microseconds).
                    starts_at,
                    ends_at,
                })
            })
            .map_err(db_error)
        })
        .await?;
        self.terms.remember(&created);
        Ok(created)
    }

    #[tracing::instrument(name = "pg.coupons.find", skip_all, fields(coupon_id = %id))]
    async fn find(&self, id: CouponId) -> anyhow::Result<Option<Coupon>> {
        let found = run(&self.pool, move |conn| {
            statement(FIND_COUPON)
                .bind::<BigInt, _>(id.get())
                .get_result::<CouponRow>(conn)
                .optional()
                .map_err(db_error)?
                .map(CouponRow::into_coupon)
                .transpose()
        })
        .await?;
        if let Some(coupon) = &found {
            self.terms.remember(coupon);
        }
        Ok(found)
    }

    #[tracing::instrument(name = "pg.coupons.terms", skip_all, fields(coupon_id = %id))]
    async fn terms(&self, id: CouponId) -> anyhow::Result<Option<Coupon>> {
        match self.terms.get(id) {
            Some(coupon) => Ok(Some(coupon)),
            None => self.find(id).await,
        }
    }

    #[tracing::instrument(name = "pg.coupons.issue", skip_all, fields(coupon_id = %issue.coupon_id, user_id = %issue.user_id))]
    async fn issue(
        &self,
        issue: CouponIssue,
        completion: Option<Completion<UserCoupon>>,
    ) -> Result<UserCoupon, IssueError> {
        let coupon = issue.coupon_id;
        let outcome = self.write(issue, completion).await;
        if matches!(outcome, Err(IssueError::SoldOut)) {
            // Final: later requests are refused without touching the database's stripes.
            self.terms.mark_sold_out(coupon);
        }
        outcome
    }

    #[tracing::instrument(name = "pg.coupons.holds", skip_all)]
    async fn holds(&self, user: UserId, coupon: CouponId) -> anyhow::Result<ForUser<bool>> {
        run(&self.pool, move |conn| {
            statement(HOLDING)
                .bind::<BigInt, _>(user.get())
                .bind::<BigInt, _>(coupon.get())
                .get_result::<HoldingRow>(conn)
                .map(|row| row.holds())
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.coupons.of_user", skip_all, fields(user_id = %user))]
    async fn of_user(&self, user: UserId) -> anyhow::Result<ForUser<Vec<UserCoupon>>> {
        Ok(match self.copies.get(user.get()).await? {
            Some(copies) => ForUser::Found(copies),
            None => ForUser::UnknownUser,
        })
    }
}

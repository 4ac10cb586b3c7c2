//! [`CouponStore`] on PostgreSQL, with striped remaining quantities.
//!
//! A campaign's remaining quantity is split over up to [`STRIPES`] rows of
//! `coupon_stock_stripes`. Issuing claims one unit from the first stripe with units
//! left that no other transaction holds (`FOR UPDATE SKIP LOCKED`), so concurrent
//! issues of one hot coupon mostly touch different rows and commit in parallel instead
//! of queueing on one row lock. Only when every stripe with units left is held does an
//! issue wait, on one of them, and re-check it after the lock. The remaining quantity is
//! the sum over the stripes, read without locks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use domain::coupon::{
    Coupon, CouponIssue, CouponName, Discount, NewCoupon, StoredCouponState, UserCoupon,
};
use domain::idempotency::Completion;
use domain::ports::{CouponStore, IssueError};
use domain::{CouponId, UserCouponId, UserId};

use crate::error::{TxError, db_error};
use crate::idempotency::complete_in_tx;
use crate::pool::{PgPool, run};
use crate::schema::{coupon_stock_stripes as stripes, coupons, user_coupons};

/// The most stripes a campaign's quantity is split over.
pub const STRIPES: i64 = 32;

/// Upper bound on claim attempts; each failed attempt means another transaction took
/// the unit it waited for, so the loop ends long before this in practice.
const MAX_CLAIM_ATTEMPTS: usize = 1_000;

/// Coupons in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgCouponStore {
    pool: PgPool,
}

impl PgCouponStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// How `total` units are spread: `min(total, STRIPES)` stripes, as even as possible.
fn stripe_sizes(total: i64) -> Vec<i64> {
    let count = total.clamp(1, STRIPES);
    let (base, extra) = (total / count, total % count);
    (0..count).map(|i| base + i64::from(i < extra)).collect()
}

fn discount_of(kind: &str, value: i64) -> anyhow::Result<Discount> {
    Discount::new(kind, value).map_err(|e| anyhow::anyhow!("stored coupon has {e}"))
}

#[derive(QueryableByName)]
struct CouponRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    discount_type: String,
    #[diesel(sql_type = BigInt)]
    discount_value: i64,
    #[diesel(sql_type = BigInt)]
    total_quantity: i64,
    #[diesel(sql_type = BigInt)]
    remaining_quantity: i64,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
}

impl CouponRow {
    fn into_coupon(self) -> anyhow::Result<Coupon> {
        Ok(Coupon {
            id: CouponId::from_trusted(self.id),
            name: CouponName::from_trusted(self.name),
            discount: discount_of(&self.discount_type, self.discount_value)?,
            total_quantity: self.total_quantity,
            remaining_quantity: self.remaining_quantity,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        })
    }
}

const FIND_COUPON: &str = "\
    SELECT c.id, c.name, c.discount_type, c.discount_value, c.total_quantity, \
           (SELECT COALESCE(SUM(s.remaining), 0)::BIGINT FROM coupon_stock_stripes s WHERE s.coupon_id = c.id) \
               AS remaining_quantity, \
           c.starts_at, c.ends_at \
    FROM coupons c WHERE c.id = $1";

#[derive(Queryable)]
struct UserCouponRow {
    id: i64,
    user_id: i64,
    coupon_id: i64,
    status: String,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    name: String,
    discount_type: String,
    discount_value: i64,
}

impl UserCouponRow {
    fn into_user_coupon(self) -> anyhow::Result<UserCoupon> {
        Ok(UserCoupon {
            id: UserCouponId::from_trusted(self.id),
            user_id: UserId::from_trusted(self.user_id),
            coupon_id: CouponId::from_trusted(self.coupon_id),
            name: CouponName::from_trusted(self.name),
            discount: discount_of(&self.discount_type, self.discount_value)?,
            state: match self.status.as_str() {
                "USED" => StoredCouponState::Used,
                _ => StoredCouponState::Available,
            },
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
        })
    }
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Nullable<BigInt>)]
    #[expect(dead_code, reason = "only whether a row came back matters")]
    stripe: Option<i64>,
}

/// Takes one unit of `coupon`'s remaining quantity inside the open transaction.
/// Returns false when none remains.
fn claim_unit(conn: &mut PgConnection, coupon: i64) -> QueryResult<bool> {
    // Any stripe with units that nobody else holds: no waiting at all.
    const CLAIM_FREE: &str = "\
        UPDATE coupon_stock_stripes SET remaining = remaining - 1 \
        WHERE coupon_id = $1 AND stripe = ( \
            SELECT stripe FROM coupon_stock_stripes \
            WHERE coupon_id = $1 AND remaining > 0 \
            ORDER BY stripe LIMIT 1 FOR UPDATE SKIP LOCKED) \
        RETURNING stripe::BIGINT AS stripe";
    // Every stripe with units is held by an issue in flight, which may commit or roll
    // back: wait for one, then re-check its units under the lock.
    const CLAIM_WAITING: &str = "\
        UPDATE coupon_stock_stripes SET remaining = remaining - 1 \
        WHERE coupon_id = $1 AND remaining > 0 AND stripe = ( \
            SELECT stripe FROM coupon_stock_stripes \
            WHERE coupon_id = $1 AND remaining > 0 \
            ORDER BY stripe LIMIT 1) \
        RETURNING stripe::BIGINT AS stripe";
    for _ in 0..MAX_CLAIM_ATTEMPTS {
        for sql in [CLAIM_FREE, CLAIM_WAITING] {
            let claimed = diesel::sql_query(sql)
                .bind::<BigInt, _>(coupon)
                .get_results::<Claimed>(conn)?;
            if !claimed.is_empty() {
                return Ok(true);
            }
            let left: bool = diesel::select(exists(
                stripes::table
                    .filter(stripes::coupon_id.eq(coupon))
                    .filter(stripes::remaining.gt(0)),
            ))
            .get_result(conn)?;
            if !left {
                return Ok(false);
            }
        }
    }
    Err(diesel::result::Error::QueryBuilderError(
        "could not claim a coupon unit: contention did not settle".into(),
    ))
}

fn issue_tx(
    conn: &mut PgConnection,
    issue: &CouponIssue,
) -> Result<UserCoupon, TxError<IssueError>> {
    // The copy first: a user asking twice conflicts on UNIQUE (user_id, coupon_id)
    // without touching the stripes.
    let id: Option<i64> = diesel::insert_into(user_coupons::table)
        .values((
            user_coupons::user_id.eq(issue.user_id.get()),
            user_coupons::coupon_id.eq(issue.coupon_id.get()),
            user_coupons::status.eq("AVAILABLE"),
            user_coupons::issued_at.eq(issue.issued_at),
            user_coupons::expires_at.eq(issue.expires_at),
        ))
        .on_conflict((user_coupons::user_id, user_coupons::coupon_id))
        .do_nothing()
        .returning(user_coupons::id)
        .get_result(conn)
        .optional()?;
    let Some(id) = id else {
        return Err(TxError::Domain(IssueError::AlreadyIssued));
    };
    if !claim_unit(conn, issue.coupon_id.get())? {
        return Err(TxError::Domain(IssueError::SoldOut));
    }
    Ok(UserCoupon {
        id: UserCouponId::from_trusted(id),
        user_id: issue.user_id,
        coupon_id: issue.coupon_id,
        name: issue.name.clone(),
        discount: issue.discount,
        state: StoredCouponState::Available,
        issued_at: issue.issued_at,
        expires_at: issue.expires_at,
        used_at: None,
    })
}

#[async_trait]
impl CouponStore for PgCouponStore {
    #[tracing::instrument(name = "pg.coupons.create", skip_all)]
    async fn create(&self, coupon: NewCoupon, now: DateTime<Utc>) -> anyhow::Result<Coupon> {
        run(&self.pool, move |conn| {
            conn.transaction(|conn| {
                let total = coupon.total_quantity.get();
                let id: i64 = diesel::insert_into(coupons::table)
                    .values((
                        coupons::name.eq(coupon.name.as_str()),
                        coupons::discount_type.eq(coupon.discount.kind()),
                        coupons::discount_value.eq(coupon.discount.value()),
                        coupons::total_quantity.eq(total),
                        coupons::starts_at.eq(coupon.starts_at),
                        coupons::ends_at.eq(coupon.ends_at),
                        coupons::created_at.eq(now),
                    ))
                    .returning(coupons::id)
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
                    starts_at: coupon.starts_at,
                    ends_at: coupon.ends_at,
                })
            })
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.coupons.find", skip_all, fields(coupon_id = %id))]
    async fn find(&self, id: CouponId) -> anyhow::Result<Option<Coupon>> {
        run(&self.pool, move |conn| {
            diesel::sql_query(FIND_COUPON)
                .bind::<BigInt, _>(id.get())
                .get_result::<CouponRow>(conn)
                .optional()
                .map_err(db_error)?
                .map(CouponRow::into_coupon)
                .transpose()
        })
        .await
    }

    #[tracing::instrument(name = "pg.coupons.issue", skip_all, fields(coupon_id = %issue.coupon_id, user_id = %issue.user_id))]
    async fn issue(
        &self,
        issue: CouponIssue,
        completion: Option<Completion<UserCoupon>>,
    ) -> Result<UserCoupon, IssueError> {
        run(&self.pool, move |conn| {
            conn.transaction(|conn| {
                let issued = issue_tx(conn, &issue)?;
                if let Some(completion) = &completion {
                    complete_in_tx(conn, completion, &issued)?;
                }
                Ok(issued)
            })
            .map_err(TxError::into_domain)
        })
        .await
    }

    #[tracing::instrument(name = "pg.coupons.holds", skip_all)]
    async fn holds(&self, user: UserId, coupon: CouponId) -> anyhow::Result<bool> {
        run(&self.pool, move |conn| {
            diesel::select(exists(
                user_coupons::table
                    .filter(user_coupons::user_id.eq(user.get()))
                    .filter(user_coupons::coupon_id.eq(coupon.get())),
            ))
            .get_result(conn)
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.coupons.of_user", skip_all, fields(user_id = %user))]
    async fn of_user(&self, user: UserId) -> anyhow::Result<Vec<UserCoupon>> {
        run(&self.pool, move |conn| {
            let rows: Vec<UserCouponRow> = user_coupons::table
                .inner_join(coupons::table)
                .filter(user_coupons::user_id.eq(user.get()))
                .order(user_coupons::id.asc())
                .select((
                    user_coupons::id,
                    user_coupons::user_id,
                    user_coupons::coupon_id,
                    user_coupons::status,
                    user_coupons::issued_at,
                    user_coupons::expires_at,
                    user_coupons::used_at,
                    coupons::name,
                    coupons::discount_type,
                    coupons::discount_value,
                ))
                .load(conn)
                .map_err(db_error)?;
            rows.into_iter()
                .map(UserCouponRow::into_user_coupon)
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_spread_evenly_over_at_most_32_stripes() {
        assert_eq!(stripe_sizes(1), vec![1]);
        assert_eq!(stripe_sizes(3), vec![1, 1, 1]);
        let big = stripe_sizes(100);
        assert_eq!(big.len(), 32);
        assert_eq!(big.iter().sum::<i64>(), 100);
        assert!(big.iter().all(|n| *n == 3 || *n == 4));
    }
}

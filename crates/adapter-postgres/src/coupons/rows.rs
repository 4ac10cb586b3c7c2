//! Row mapping: the statements that read coupons and copies, and their rows turned
//! into domain values. A stored value the domain does not know (a discount type, a
//! copy's status) is an error, never a guess.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use domain::coupon::{Coupon, CouponName, Discount, StoredCouponState, UserCoupon};
use domain::user::ForUser;
use domain::{CouponId, UserCouponId, UserId};

fn discount_of(kind: &str, value: i64) -> anyhow::Result<Discount> {
    Discount::new(kind, value).map_err(|e| anyhow::anyhow!("stored coupon has {e}"))
}

fn state_of(status: &str) -> anyhow::Result<StoredCouponState> {
    StoredCouponState::parse(status).context("reading a user coupon")
}

/// A campaign with its remaining quantity summed over its stripes, in one statement.
pub(super) const FIND_COUPON: &str = "\
    SELECT c.id, c.name, c.discount_type, c.discount_value, c.total_quantity, \
           (SELECT COALESCE(SUM(s.remaining), 0)::BIGINT FROM coupon_stock_stripes s WHERE s.coupon_id = c.id) \
               AS remaining_quantity, \
           c.starts_at, c.ends_at \
    FROM coupons c WHERE c.id = $1";

#[derive(QueryableByName)]
pub(super) struct CouponRow {
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
    pub(super) fn into_coupon(self) -> anyhow::Result<Coupon> {
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

/// [`COPIES_OF_USERS`] for one user (`$1`), the statement of a read alone.
pub(super) const COPIES_OF_USER: &str = "\
    SELECT uc.id, u.id AS user_id, uc.coupon_id, uc.status, uc.issued_at, uc.expires_at, \
           uc.used_at, c.name, c.discount_type, c.discount_value \
    FROM users u \
    LEFT JOIN (user_coupons uc JOIN coupons c ON c.id = uc.coupon_id) ON uc.user_id = u.id \
    WHERE u.id = $1 \
    ORDER BY uc.id";

/// The copies of a group of users, each user's oldest first, in one statement that also
/// says which users exist: no row for an unknown user, one row of NULLs for a user with no
/// copies.
pub(super) const COPIES_OF_USERS: &str = "\
    SELECT uc.id, u.id AS user_id, uc.coupon_id, uc.status, uc.issued_at, uc.expires_at, \
           uc.used_at, c.name, c.discount_type, c.discount_value \
    FROM users u \
    LEFT JOIN (user_coupons uc JOIN coupons c ON c.id = uc.coupon_id) ON uc.user_id = u.id \
    WHERE u.id = ANY($1) \
    ORDER BY u.id, uc.id";

/// One row of [`COPIES_OF_USERS`]: every copy column is NULL when the user has none.
#[derive(QueryableByName)]
pub(super) struct CopyOfUserRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    coupon_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    issued_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    used_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    discount_type: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    discount_value: Option<i64>,
}

impl CopyOfUserRow {
    /// The copy on this row, or `None` on the row of a user with no copies.
    fn into_user_coupon(self) -> anyhow::Result<Option<UserCoupon>> {
        let Some(id) = self.id else {
            return Ok(None);
        };
        // The inner join makes these NOT NULL whenever the copy's id is.
        let missing = || anyhow::anyhow!("user coupon {id} read with NULL columns");
        Ok(Some(UserCoupon {
            id: UserCouponId::from_trusted(id),
            user_id: UserId::from_trusted(self.user_id),
            coupon_id: CouponId::from_trusted(self.coupon_id.ok_or_else(missing)?),
            name: CouponName::from_trusted(self.name.ok_or_else(missing)?),
            discount: discount_of(
                &self.discount_type.ok_or_else(missing)?,
                self.discount_value.ok_or_else(missing)?,
            )?,
            state: state_of(&self.status.ok_or_else(missing)?)?,
            issued_at: self.issued_at.ok_or_else(missing)?,
            expires_at: self.expires_at.ok_or_else(missing)?,
            used_at: self.used_at,
        }))
    }
}

/// The copies on the rows of [`COPIES_OF_USERS`], by user; a user with no row at all does
/// not exist.
pub(super) fn copies_by_user(
    rows: Vec<CopyOfUserRow>,
) -> anyhow::Result<HashMap<i64, Vec<UserCoupon>>> {
    let mut by_user: HashMap<i64, Vec<UserCoupon>> = HashMap::new();
    for row in rows {
        let copies = by_user.entry(row.user_id).or_default();
        copies.extend(row.into_user_coupon()?);
    }
    Ok(by_user)
}

/// Whether a user exists and holds a copy of a campaign, in one statement.
pub(super) const HOLDING: &str = "\
    SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists, \
           EXISTS (SELECT 1 FROM user_coupons WHERE user_id = $1 AND coupon_id = $2) AS holds";

#[derive(QueryableByName)]
pub(super) struct HoldingRow {
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(sql_type = Bool)]
    holds: bool,
}

impl HoldingRow {
    pub(super) fn holds(&self) -> ForUser<bool> {
        if self.user_exists {
            ForUser::Found(self.holds)
        } else {
            ForUser::UnknownUser
        }
    }
}

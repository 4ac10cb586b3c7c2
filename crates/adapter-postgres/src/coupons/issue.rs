//! Writing issues: a lone issue in one statement between `BEGIN` and `COMMIT`, a group
//! of one coupon's issues in one transaction of a few statements.
//!
//! Both insert the copy before they claim its unit, so every transaction takes the
//! `UNIQUE (user_id, coupon_id)` entry first and a stripe second, in the same order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use domain::UserCouponId;
use domain::coupon::{CouponIssue, StoredCouponState, UserCoupon};
use domain::idempotency::Completion;
use domain::ports::IssueError;

use super::claim::claim_units;
use crate::error::TxError;
use crate::idempotency::complete_in_tx;
use crate::pool::{PgPool, run};
use crate::schema::user_coupons;
use crate::statement::statement;

/// One issue and, with an idempotency key, the completion saved with it.
pub(super) type Request = (CouponIssue, Option<Completion<UserCoupon>>);

/// What became of one issue of a group.
pub(super) enum Outcome {
    Done(Result<UserCoupon, IssueError>),
    /// Not decided in this group (the units left are held by others): write it alone.
    Retry,
}

/// A lone issue in one statement: the copy is inserted only for a known user without
/// one, a unit is claimed only for an inserted copy, and only from a stripe nobody else
/// holds (it never waits). The statement also reads what a refusal needs, so no
/// refusal costs another round trip: whether the user exists, and whether any unit was
/// left when it started (units never come back, so none left means sold out).
const ISSUE_ALONE: &str = "\
    WITH known AS ( \
        SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists), \
    copy AS ( \
        INSERT INTO user_coupons (user_id, coupon_id, status, issued_at, expires_at) \
        SELECT $1, $2, $3, $4, $5 FROM known WHERE known.user_exists \
        ON CONFLICT (user_id, coupon_id) DO NOTHING \
        RETURNING id), \
    free AS MATERIALIZED ( \
        SELECT stripe FROM coupon_stock_stripes \
        WHERE coupon_id = $2 AND remaining > 0 AND EXISTS (SELECT 1 FROM copy) \
        ORDER BY stripe LIMIT 1 FOR UPDATE SKIP LOCKED), \
    claim AS ( \
        UPDATE coupon_stock_stripes s SET remaining = s.remaining - 1 \
        FROM free WHERE s.coupon_id = $2 AND s.stripe = free.stripe AND s.remaining > 0 \
        RETURNING s.stripe) \
    SELECT known.user_exists, \
           (SELECT id FROM copy) AS copy_id, \
           EXISTS (SELECT 1 FROM claim) AS claimed, \
           EXISTS (SELECT 1 FROM coupon_stock_stripes WHERE coupon_id = $2 AND remaining > 0) \
               AS units_left \
    FROM known";

#[derive(QueryableByName)]
struct Alone {
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    copy_id: Option<i64>,
    #[diesel(sql_type = Bool)]
    claimed: bool,
    #[diesel(sql_type = Bool)]
    units_left: bool,
}

/// Why a lone issue's transaction was rolled back.
enum Undone {
    Refused(IssueError),
    /// A copy was inserted but every stripe with units was held by others.
    Contended,
}

impl From<anyhow::Error> for Undone {
    fn from(err: anyhow::Error) -> Self {
        Self::Refused(IssueError::Unknown(err))
    }
}

/// Writes one issue: `BEGIN`, [`ISSUE_ALONE`], `COMMIT` (or `ROLLBACK` when refused),
/// plus the idempotency completion's statement when there is one. When the units left
/// are all held by other transactions, it goes round again through [`issue_group`],
/// whose claim waits for them.
pub(super) async fn issue_alone(
    pool: &PgPool,
    issue: CouponIssue,
    completion: Option<Completion<UserCoupon>>,
) -> Result<UserCoupon, IssueError> {
    let (outcome, request) = run(pool, move |conn| {
        let outcome = crate::retry::transaction(conn, |conn| {
            let row: Alone = statement(ISSUE_ALONE)
                .bind::<BigInt, _>(issue.user_id.get())
                .bind::<BigInt, _>(issue.coupon_id.get())
                .bind::<Text, _>(StoredCouponState::Available.as_str())
                .bind::<Timestamptz, _>(issue.issued_at)
                .bind::<Timestamptz, _>(issue.expires_at)
                .get_result(conn)?;
            match row.copy_id {
                Some(id) if row.claimed => {
                    let copy = issue.copy(UserCouponId::from_trusted(id));
                    if let Some(completion) = &completion {
                        complete_in_tx(conn, completion, &copy)?;
                    }
                    Ok(copy)
                }
                Some(_) if row.units_left => Err(TxError::Domain(Undone::Contended)),
                Some(_) => Err(TxError::Domain(Undone::Refused(IssueError::SoldOut))),
                None if row.user_exists => {
                    Err(TxError::Domain(Undone::Refused(IssueError::AlreadyIssued)))
                }
                None => Err(TxError::Domain(Undone::Refused(IssueError::UserNotFound))),
            }
        });
        Ok::<_, IssueError>((outcome, (issue, completion)))
    })
    .await?;
    match outcome {
        Ok(copy) => Ok(copy),
        Err(TxError::Db(err)) => Err(IssueError::Unknown(crate::error::db_error(err))),
        Err(TxError::Domain(Undone::Refused(refusal))) => Err(refusal),
        Err(TxError::Domain(Undone::Contended)) => issue_waiting(pool, request).await,
    }
}

/// Writes one issue through [`issue_group`], whose claim waits for held stripes.
async fn issue_waiting(pool: &PgPool, request: Request) -> Result<UserCoupon, IssueError> {
    let outcomes = run(pool, move |conn| {
        crate::retry::transaction(conn, |conn| {
            issue_group(conn, std::slice::from_ref(&request))
        })
        .map_err(TxError::into_domain)
    })
    .await?;
    match outcomes.into_iter().next() {
        Some(Outcome::Done(result)) => result,
        // A group of one waits for units until it gets one or none is left.
        Some(Outcome::Retry) | None => Err(IssueError::Unknown(anyhow::anyhow!(
            "a lone coupon issue was left undecided"
        ))),
    }
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
}

#[derive(QueryableByName)]
struct Known {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Issues a group of one coupon, in arrival order, inside the open transaction: one
/// multi-row insert of the copies (the unique constraint drops second copies), one
/// claim of as many units as copies were inserted, and — if fewer units remain — the
/// deletion of the copies of the latest arrivals, who are sold out.
pub(super) fn issue_group(
    conn: &mut PgConnection,
    requests: &[Request],
) -> Result<Vec<Outcome>, TxError<IssueError>> {
    let Some((first, _)) = requests.first() else {
        return Ok(Vec::new());
    };
    let coupon = first.coupon_id.get();
    let users: Vec<i64> = requests.iter().map(|(i, _)| i.user_id.get()).collect();
    let times: Vec<DateTime<Utc>> = requests.iter().map(|(i, _)| i.issued_at).collect();

    // The copies; an unknown user or a second copy is skipped. Rows go in user order, so
    // two groups sharing users take their unique-index entries in the same order.
    let inserted: Vec<Inserted> = statement(
        "INSERT INTO user_coupons (user_id, coupon_id, status, issued_at, expires_at) \
         SELECT t.user_id, $3, $5, t.issued_at, $4 \
         FROM unnest($1::BIGINT[], $2::TIMESTAMPTZ[]) WITH ORDINALITY AS t(user_id, issued_at, ord) \
         WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id) \
         ORDER BY t.user_id \
         ON CONFLICT (user_id, coupon_id) DO NOTHING \
         RETURNING id, user_id",
    )
    .bind::<Array<BigInt>, _>(&users)
    .bind::<Array<Timestamptz>, _>(&times)
    .bind::<BigInt, _>(coupon)
    .bind::<Timestamptz, _>(first.expires_at)
    .bind::<Text, _>(StoredCouponState::Available.as_str())
    .get_results(conn)?;

    // Per request, in arrival order: its copy, if it is the first request of its user.
    let mut copies: HashMap<i64, i64> = inserted.iter().map(|r| (r.user_id, r.id)).collect();
    let copy_of: Vec<Option<i64>> = users.iter().map(|u| copies.remove(u)).collect();
    let wanted = copy_of.iter().flatten().count();
    let claim = claim_units(conn, coupon, i64::try_from(wanted).unwrap_or(i64::MAX))?;

    // Units go to the earliest arrivals. Short of units, the latest lose their copies and
    // are sold out, or, when units remain but are held by others, go round again alone.
    let mut units = usize::try_from(claim.got).unwrap_or(0);
    let got_unit: Vec<bool> = copy_of
        .iter()
        .map(|copy| {
            let got = copy.is_some() && units > 0;
            units -= usize::from(got);
            got
        })
        .collect();
    let lost: Vec<i64> = copy_of
        .iter()
        .zip(&got_unit)
        .filter_map(|(copy, got)| copy.filter(|_| !got))
        .collect();
    if !lost.is_empty() {
        diesel::delete(user_coupons::table.filter(user_coupons::id.eq_any(&lost))).execute(conn)?;
    }

    // Requests without a copy: unknown users, or users who already hold one.
    let missing: Vec<i64> = users
        .iter()
        .zip(&copy_of)
        .filter(|(_, copy)| copy.is_none())
        .map(|(user, _)| *user)
        .collect();
    let known: Vec<i64> = if missing.is_empty() {
        Vec::new()
    } else {
        statement("SELECT id FROM users WHERE id = ANY($1)")
            .bind::<Array<BigInt>, _>(&missing)
            .get_results::<Known>(conn)?
            .into_iter()
            .map(|k| k.id)
            .collect()
    };

    let mut outcomes = Vec::with_capacity(requests.len());
    // Users whose first request in this group got no unit.
    let mut unserved: Vec<i64> = Vec::new();
    for ((((issue, completion), user), copy), got) in
        requests.iter().zip(&users).zip(&copy_of).zip(&got_unit)
    {
        let outcome = match copy {
            Some(id) if *got => {
                let copy = issue.copy(UserCouponId::from_trusted(*id));
                if let Some(completion) = completion {
                    complete_in_tx(conn, completion, &copy)?;
                }
                Outcome::Done(Ok(copy))
            }
            Some(_) => {
                unserved.push(*user);
                if claim.sold_out {
                    Outcome::Done(Err(IssueError::SoldOut))
                } else {
                    Outcome::Retry
                }
            }
            None if !known.contains(user) => Outcome::Done(Err(IssueError::UserNotFound)),
            // A repeat of a user whose first request got no unit: decide it alone.
            None if unserved.contains(user) => Outcome::Retry,
            None => Outcome::Done(Err(IssueError::AlreadyIssued)),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

//! [`CouponStore`] on PostgreSQL: striped remaining quantities and grouped issues.
//!
//! **Stripes.** A campaign's remaining quantity is split over up to [`STRIPES`] rows of
//! `coupon_stock_stripes`. A claim takes units from the first stripe with units left
//! that no other transaction holds (`FOR UPDATE SKIP LOCKED`), so concurrent claims on
//! one hot coupon touch different rows and commit in parallel instead of queueing on one
//! row lock. Only when every stripe with units left is held does a claim wait, on one of
//! them, and re-check it under the lock. The remaining quantity is the sum over the
//! stripes, read without locks.
//!
//! **Groups.** Issues that arrive while earlier ones are being written are grouped per
//! coupon and written in one transaction: one multi-row insert of the copies (the
//! `UNIQUE (user_id, coupon_id)` constraint drops second copies), one claim of as many
//! units as copies were inserted, and — if fewer units remain — the deletion of the
//! copies of the latest arrivals, who are sold out. Grouping only changes how many
//! issues share a commit; every guarantee is still the database's (unique constraint,
//! guarded claims, `CHECK (remaining >= 0)`), so any number of instances may run. A lone
//! issue is a group of one. A group that fails as a whole (say one issue's idempotency
//! lease was taken over) is retried one issue at a time, so each gets its own outcome.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use domain::coupon::{
    Coupon, CouponIssue, CouponName, Discount, NewCoupon, StoredCouponState, UserCoupon,
};
use domain::idempotency::Completion;
use domain::ports::{CouponStore, IssueError};
use domain::{CouponId, UserCouponId, UserId};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::error::{TxError, db_error};
use crate::idempotency::complete_in_tx;
use crate::pool::{PgPool, run};
use crate::schema::{coupon_stock_stripes as stripes, coupons, user_coupons};

/// The most stripes a campaign's quantity is split over.
pub const STRIPES: i64 = 32;

/// Upper bound on claim attempts; each failed attempt means another transaction took
/// the unit it waited for, so the loop ends long before this in practice.
const MAX_CLAIM_ATTEMPTS: usize = 1_000;

/// The most issues written in one transaction.
const MAX_GROUP: usize = 128;

/// Groups written at once; while all are busy, new issues queue and form larger groups.
const GROUPS_IN_FLIGHT: usize = 8;

/// Campaigns whose terms are kept in memory before the cache starts afresh.
const TERMS_CACHE_CAPACITY: usize = 10_000;

/// Coupons in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgCouponStore {
    pool: PgPool,
    /// Terms of campaigns seen by this instance. Only a shortcut for refusals: terms
    /// never change, and a remaining quantity of 0 is final. Correctness never depends
    /// on it (the claim re-checks everything in the database).
    terms: Arc<Mutex<HashMap<i64, Coupon>>>,
    /// The runtime the grouping task runs on (the one the store was built in).
    runtime: Option<tokio::runtime::Handle>,
    queue: Arc<OnceLock<mpsc::UnboundedSender<Pending>>>,
}

impl PgCouponStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            terms: Arc::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            queue: Arc::default(),
        }
    }

    fn remember(&self, coupon: &Coupon) {
        if let Ok(mut terms) = self.terms.lock() {
            if terms.len() >= TERMS_CACHE_CAPACITY {
                terms.clear();
            }
            terms.insert(coupon.id.get(), coupon.clone());
        }
    }

    fn mark_sold_out(&self, coupon: CouponId) {
        if let Ok(mut terms) = self.terms.lock()
            && let Some(known) = terms.get_mut(&coupon.get())
        {
            known.remaining_quantity = 0;
        }
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Pending> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = group_issues(self.pool.clone(), rx);
            match &self.runtime {
                Some(runtime) => drop(runtime.spawn(task)),
                None => drop(tokio::spawn(task)),
            }
            tx
        })
    }
}

/// One issue waiting for its group.
struct Pending {
    issue: CouponIssue,
    completion: Option<Completion<UserCoupon>>,
    reply: oneshot::Sender<Result<UserCoupon, IssueError>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("issue", &self.issue)
            .finish_non_exhaustive()
    }
}

/// Takes queued issues, as many as are waiting (up to [`MAX_GROUP`]) once a slot
/// is free, and writes them per coupon. Ends when the store is dropped.
async fn group_issues(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut taken = vec![first];
        while taken.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => taken.push(next),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut by_coupon: Vec<Vec<Pending>> = Vec::new();
            for pending in taken {
                match by_coupon.iter_mut().find(|g| {
                    g.first()
                        .is_some_and(|p| p.issue.coupon_id == pending.issue.coupon_id)
                }) {
                    Some(group) => group.push(pending),
                    None => by_coupon.push(vec![pending]),
                }
            }
            for group in by_coupon {
                write_group(&pool, group).await;
            }
            drop(slot);
        });
    }
}

/// Writes one coupon's group and answers each issue; falls back to one issue per
/// transaction when the group fails as a whole.
async fn write_group(pool: &PgPool, group: Vec<Pending>) {
    let single = group.len() == 1;
    let (requests, replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|p| ((p.issue, p.completion), p.reply))
        .unzip();
    let result = run(pool, move |conn| {
        let outcome = conn.transaction(|conn| issue_group(conn, &requests));
        Ok::<_, anyhow::Error>((outcome, requests))
    })
    .instrument(tracing::info_span!(
        "pg.coupons.issue_group",
        size = replies.len()
    ))
    .await;
    match result {
        Err(err) => {
            // No connection: every issue in the group fails the same way.
            let unavailable = domain::error::is_unavailable(&err);
            for reply in replies {
                let cause = if unavailable {
                    anyhow::Error::new(domain::StoreUnavailable).context(format!("{err:#}"))
                } else {
                    anyhow::anyhow!("{err:#}")
                };
                let _ = reply.send(Err(IssueError::Unknown(cause)));
            }
        }
        Ok((Ok(outcomes), requests)) => {
            let mut again = Vec::new();
            for ((outcome, reply), request) in outcomes.into_iter().zip(replies).zip(requests) {
                match outcome {
                    Outcome::Done(result) => {
                        let _ = reply.send(result);
                    }
                    Outcome::Retry => again.push((request, reply)),
                }
            }
            write_one_by_one(pool, again).await;
        }
        Ok((Err(err), _)) if single => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(err.into_domain()));
            }
        }
        Ok((Err(_), requests)) => {
            write_one_by_one(pool, requests.into_iter().zip(replies).collect()).await;
        }
    }
}

/// Writes each issue in a transaction of its own (a group of one never retries).
async fn write_one_by_one(
    pool: &PgPool,
    issues: Vec<(Request, oneshot::Sender<Result<UserCoupon, IssueError>>)>,
) {
    for ((issue, completion), reply) in issues {
        Box::pin(write_group(
            pool,
            vec![Pending {
                issue,
                completion,
                reply,
            }],
        ))
        .await;
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

#[derive(Queryable, Selectable)]
#[diesel(table_name = user_coupons)]
struct UserCouponRow {
    id: i64,
    user_id: i64,
    coupon_id: i64,
    status: String,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    #[diesel(select_expression = coupons::name, select_expression_type = coupons::name)]
    name: String,
    #[diesel(select_expression = coupons::discount_type, select_expression_type = coupons::discount_type)]
    discount_type: String,
    #[diesel(select_expression = coupons::discount_value, select_expression_type = coupons::discount_value)]
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
struct Taken {
    #[diesel(sql_type = BigInt)]
    take: i64,
}

/// How a claim ended.
struct Claim {
    got: i64,
    /// No unit is left anywhere (not merely held by others).
    sold_out: bool,
}

/// Takes up to `wanted` units of `coupon`'s remaining quantity inside the open
/// transaction.
///
/// It waits for a held stripe only while it holds none itself: a transaction never
/// holds one stripe while waiting for another, so claims cannot deadlock. A claim that
/// got some units and finds the rest held stops short (`sold_out` false).
fn claim_units(conn: &mut PgConnection, coupon: i64, wanted: i64) -> QueryResult<Claim> {
    // From a stripe with units that nobody else holds: no waiting at all.
    // The stripe is chosen in a MATERIALIZED CTE, evaluated exactly once: a locking
    // `LIMIT 1` subquery in FROM may be rescanned per outer row by some plans, taking a
    // unit from every stripe it passes.
    const CLAIM_FREE: &str = "\
        WITH x AS MATERIALIZED ( \
            SELECT stripe, LEAST(remaining, $2) AS take FROM coupon_stock_stripes \
            WHERE coupon_id = $1 AND remaining > 0 \
            ORDER BY stripe LIMIT 1 FOR UPDATE SKIP LOCKED) \
        UPDATE coupon_stock_stripes s SET remaining = s.remaining - x.take \
        FROM x WHERE s.coupon_id = $1 AND s.stripe = x.stripe \
        RETURNING x.take";
    // Every stripe with units is held by a claim in flight, which may commit or roll
    // back: wait for one, then re-check its units under the lock, one unit at a time.
    const CLAIM_WAITING: &str = "\
        UPDATE coupon_stock_stripes SET remaining = remaining - 1 \
        WHERE coupon_id = $1 AND remaining > 0 AND stripe = ( \
            SELECT stripe FROM coupon_stock_stripes \
            WHERE coupon_id = $1 AND remaining > 0 ORDER BY stripe LIMIT 1) \
        RETURNING 1::BIGINT AS take";
    let mut got = 0;
    for _ in 0..MAX_CLAIM_ATTEMPTS {
        if got == wanted {
            return Ok(Claim {
                got,
                sold_out: false,
            });
        }
        for sql in [CLAIM_FREE, CLAIM_WAITING] {
            if sql == CLAIM_WAITING && got > 0 {
                return Ok(Claim {
                    got,
                    sold_out: false,
                });
            }
            let taken = diesel::sql_query(sql)
                .bind::<BigInt, _>(coupon)
                .bind::<BigInt, _>(wanted - got)
                .get_results::<Taken>(conn)?;
            if let Some(t) = taken.first() {
                got += t.take;
                break;
            }
            let left: bool = diesel::select(exists(
                stripes::table
                    .filter(stripes::coupon_id.eq(coupon))
                    .filter(stripes::remaining.gt(0)),
            ))
            .get_result(conn)?;
            if !left {
                return Ok(Claim {
                    got,
                    sold_out: true,
                });
            }
        }
    }
    Err(diesel::result::Error::QueryBuilderError(
        "could not claim coupon units: contention did not settle".into(),
    ))
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

type Request = (CouponIssue, Option<Completion<UserCoupon>>);

/// Issues a group of one coupon, in arrival order, inside the open transaction.
fn issue_group(
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
    let inserted: Vec<Inserted> = diesel::sql_query(
        "INSERT INTO user_coupons (user_id, coupon_id, status, issued_at, expires_at) \
         SELECT t.user_id, $3, 'AVAILABLE', t.issued_at, $4 \
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
        diesel::sql_query("SELECT id FROM users WHERE id = ANY($1)")
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
                let issued = UserCoupon {
                    id: UserCouponId::from_trusted(*id),
                    user_id: issue.user_id,
                    coupon_id: issue.coupon_id,
                    name: issue.name.clone(),
                    discount: issue.discount,
                    state: StoredCouponState::Available,
                    issued_at: issue.issued_at,
                    expires_at: issue.expires_at,
                    used_at: None,
                };
                if let Some(completion) = completion {
                    complete_in_tx(conn, completion, &issued)?;
                }
                Outcome::Done(Ok(issued))
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

/// What became of one issue of a group.
enum Outcome {
    Done(Result<UserCoupon, IssueError>),
    /// Not decided in this group (the units left are held by others): write it alone.
    Retry,
}

#[async_trait]
impl CouponStore for PgCouponStore {
    #[tracing::instrument(name = "pg.coupons.create", skip_all)]
    async fn create(&self, coupon: NewCoupon, now: DateTime<Utc>) -> anyhow::Result<Coupon> {
        run(&self.pool, move |conn| {
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
        .await
    }

    #[tracing::instrument(name = "pg.coupons.find", skip_all, fields(coupon_id = %id))]
    async fn find(&self, id: CouponId) -> anyhow::Result<Option<Coupon>> {
        let found = run(&self.pool, move |conn| {
            diesel::sql_query(FIND_COUPON)
                .bind::<BigInt, _>(id.get())
                .get_result::<CouponRow>(conn)
                .optional()
                .map_err(db_error)?
                .map(CouponRow::into_coupon)
                .transpose()
        })
        .await?;
        if let Some(coupon) = &found {
            self.remember(coupon);
        }
        Ok(found)
    }

    #[tracing::instrument(name = "pg.coupons.terms", skip_all, fields(coupon_id = %id))]
    async fn terms(&self, id: CouponId) -> anyhow::Result<Option<Coupon>> {
        let cached = self
            .terms
            .lock()
            .ok()
            .and_then(|t| t.get(&id.get()).cloned());
        match cached {
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
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            issue,
            completion,
            reply,
        };
        let coupon = pending.issue.coupon_id;
        if let Err(mpsc::error::SendError(pending)) = self.queue().send(pending) {
            // The grouping task is gone (its runtime shut down): write this one alone.
            write_group(&self.pool, vec![pending]).await;
        }
        let outcome = outcome.await.unwrap_or_else(|_| {
            Err(IssueError::Unknown(anyhow::anyhow!(
                "coupon issue was dropped"
            )))
        });
        if matches!(outcome, Err(IssueError::SoldOut)) {
            // Final: later requests are refused without touching the database's stripes.
            self.mark_sold_out(coupon);
        }
        outcome
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

    #[tracing::instrument(name = "pg.coupons.user_coupon", skip_all, fields(user_coupon_id = %id))]
    async fn user_coupon(&self, id: UserCouponId) -> anyhow::Result<Option<UserCoupon>> {
        run(&self.pool, move |conn| {
            user_coupons::table
                .inner_join(coupons::table)
                .filter(user_coupons::id.eq(id.get()))
                .select(UserCouponRow::as_select())
                .first::<UserCouponRow>(conn)
                .optional()
                .map_err(db_error)?
                .map(UserCouponRow::into_user_coupon)
                .transpose()
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
                .select(UserCouponRow::as_select())
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

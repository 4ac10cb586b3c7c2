//! [`PointStore`] on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use domain::idempotency::{Completion, LeaseLost, StoredResponse};
use domain::points::{
    Balance, BalanceLimitExceeded, Charged, Credit, PointHistoryEntry, PointKind,
};
use domain::ports::{CreditError, PointStore};
use domain::user::ForUser;
use domain::{OrderId, Page, PageRequest, UserId};

use crate::error::{TxError, db_error};
use crate::group::{Fetch, Grouped, LANES, MAX_GROUP};
use crate::idempotency::{NumberSlot, transact_idempotent};
use crate::pool::{PgPool, run, with_connection};
use crate::retry::{retrying, transaction};
use crate::schema::point_wallets;
use crate::statement::statement;

/// Point wallets and history in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgPointStore {
    pool: PgPool,
    /// Balance reads, grouped while they overlap.
    balances: Grouped<i64, i64>,
    /// Charges without an idempotency key, grouped while they overlap.
    charges: Grouped<ChargeKey, Result<i64, ChargeRefusal>>,
}

impl PgPointStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            balances: Grouped::new(balances_of(pool.clone()), LANES, MAX_GROUP),
            charges: Grouped::new(charges_of(pool.clone()), LANES, MAX_GROUP),
            pool,
        }
    }
}

/// The balances of a group of users: one statement (`user_id = ANY($1)`; `= $1` for a user
/// alone), one connection.
fn balances_of(pool: PgPool) -> Fetch<i64, i64> {
    Arc::new(move |users: Vec<i64>| {
        with_connection(&pool, move |conn| {
            let columns = (point_wallets::user_id, point_wallets::balance);
            match users.as_slice() {
                // Alone: the one-key statement, as cheap as before grouping.
                [user] => point_wallets::table
                    .find(*user)
                    .select(columns)
                    .load::<(i64, i64)>(conn),
                _ => point_wallets::table
                    .filter(point_wallets::user_id.eq_any(users))
                    .select(columns)
                    .load::<(i64, i64)>(conn),
            }
            .map(|rows| rows.into_iter().collect())
            .map_err(db_error)
        })
    })
}

/// Adds the amount to the wallet while its balance is at most the ceiling, and records
/// the CHARGE with the balance after, in one statement. The guarded UPDATE is the whole
/// concurrency story: it takes the wallet's row lock, so concurrent credits queue on it
/// and each sees the balance the previous one left.
const CREDIT: &str = "\
    WITH credited AS ( \
        UPDATE point_wallets SET balance = balance + $2, updated_at = $4 \
        WHERE user_id = $1 AND balance <= $3 RETURNING user_id, balance), \
    recorded AS ( \
        INSERT INTO point_history (user_id, kind, amount, balance_after, created_at) \
        SELECT user_id, $5, $2, balance, $4 FROM credited) \
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
    let balance = retrying(conn, |conn| {
        statement(CREDIT)
            .bind::<BigInt, _>(user)
            .bind::<BigInt, _>(credit.amount.get())
            .bind::<BigInt, _>(credit.ceiling.get())
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(PointKind::Charge.as_str())
            .get_result::<BalanceRow>(conn)
            .optional()
    })?;
    let Some(BalanceRow { balance }) = balance else {
        return Err(TxError::Domain(refusal(conn, &credit)?));
    };
    Ok(Charged {
        user_id: credit.user_id,
        balance: Balance::from_trusted(balance),
    })
}

/// One charge of a group: the credit and the instance's time of it. `ticket` tells apart
/// charges that are otherwise equal, so each gets its own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ChargeKey {
    ticket: u64,
    credit: Credit,
    at: DateTime<Utc>,
}

/// Numbers the charges of this process, for [`ChargeKey::ticket`].
static TICKETS: AtomicU64 = AtomicU64::new(0);

/// Why a charge of a group credited nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChargeRefusal {
    UserNotFound,
    LimitExceeded,
}

impl From<ChargeRefusal> for CreditError {
    fn from(refusal: ChargeRefusal) -> Self {
        match refusal {
            ChargeRefusal::UserNotFound => Self::UserNotFound,
            ChargeRefusal::LimitExceeded => Self::LimitExceeded(BalanceLimitExceeded),
        }
    }
}

/// [`CREDIT`] for several users at once (or one), each at most once. It takes the wallets
/// nobody else holds (`SKIP LOCKED`: a statement of charges never waits for a row lock, so
/// these statements cannot deadlock, and a wallet held elsewhere delays no charge but its
/// own); each taken wallet gains its amount while its balance is at most its ceiling, with
/// its CHARGE history row, both stamped with the charge's own time. One row per user: was
/// the wallet taken, its balance after (NULL when the credit would pass the cap), and
/// whether the user exists at all.
const CREDIT_UNHELD: &str = "\
    WITH wanted AS ( \
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[]) \
            AS w (user_id, amount, ceiling, at)), \
    taken AS MATERIALIZED ( \
        SELECT user_id FROM point_wallets WHERE user_id IN (SELECT user_id FROM wanted) \
        FOR UPDATE SKIP LOCKED), \
    credited AS ( \
        UPDATE point_wallets p SET balance = p.balance + w.amount, updated_at = w.at \
        FROM taken k JOIN wanted w ON w.user_id = k.user_id \
        WHERE p.user_id = k.user_id AND p.balance <= w.ceiling \
        RETURNING p.user_id, p.balance, w.amount, w.at), \
    recorded AS ( \
        INSERT INTO point_history (user_id, kind, amount, balance_after, created_at) \
        SELECT user_id, $5, amount, balance, at FROM credited) \
    SELECT w.user_id, k.user_id IS NOT NULL AS taken, c.balance, \
           k.user_id IS NOT NULL \
               OR EXISTS (SELECT 1 FROM point_wallets p WHERE p.user_id = w.user_id) AS known \
    FROM wanted w LEFT JOIN taken k ON k.user_id = w.user_id \
         LEFT JOIN credited c ON c.user_id = w.user_id";

/// [`CREDIT_UNHELD`] for one charge, with scalar parameters and nothing but the balance
/// after: the form a charge alone sends, planned once per connection (the array form's plan
/// depends on the arrays' length, so it is planned again on every run). No row when the
/// credit did not apply; [`not_credited`] then says why.
const CREDIT_ONE_UNHELD: &str = "\
    WITH credited AS ( \
        UPDATE point_wallets SET balance = balance + $2, updated_at = $4 \
        WHERE user_id = (SELECT user_id FROM point_wallets WHERE user_id = $1 \
                         FOR UPDATE SKIP LOCKED) \
          AND balance <= $3 \
        RETURNING user_id, balance), \
    recorded AS ( \
        INSERT INTO point_history (user_id, kind, amount, balance_after, created_at) \
        SELECT user_id, $5, $2, balance, $4 FROM credited) \
    SELECT balance FROM credited";

/// Whether a user has a wallet, and whether its committed balance is at most `$2` (a
/// credit's ceiling): [`not_credited`].
const NOT_CREDITED: &str = "\
    SELECT EXISTS (SELECT 1 FROM point_wallets WHERE user_id = $1) AS known, \
           EXISTS (SELECT 1 FROM point_wallets WHERE user_id = $1 AND balance <= $2) AS fits";

#[derive(QueryableByName)]
struct NotCreditedRow {
    #[diesel(sql_type = Bool)]
    known: bool,
    #[diesel(sql_type = Bool)]
    fits: bool,
}

/// One charge by [`CREDIT_ONE_UNHELD`]: its answer, or `None` when another transaction held
/// the wallet.
fn credit_one_unheld(
    conn: &mut PgConnection,
    charge: &ChargeKey,
) -> QueryResult<Option<Result<i64, ChargeRefusal>>> {
    let user = charge.credit.user_id.get();
    let credited = retrying(conn, |conn| {
        statement(CREDIT_ONE_UNHELD)
            .bind::<BigInt, _>(user)
            .bind::<BigInt, _>(charge.credit.amount.get())
            .bind::<BigInt, _>(charge.credit.ceiling.get())
            .bind::<Timestamptz, _>(charge.at)
            .bind::<Text, _>(PointKind::Charge.as_str())
            .get_result::<BalanceRow>(conn)
            .optional()
    })?;
    if let Some(BalanceRow { balance }) = credited {
        return Ok(Some(Ok(balance)));
    }
    Ok(
        match not_credited(conn, user, charge.credit.ceiling.get())? {
            NotCredited::UnknownUser => Some(Err(ChargeRefusal::UserNotFound)),
            NotCredited::Full => Some(Err(ChargeRefusal::LimitExceeded)),
            NotCredited::Held => None,
        },
    )
}

#[derive(QueryableByName)]
struct UnheldRow {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Bool)]
    taken: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    balance: Option<i64>,
    #[diesel(sql_type = Bool)]
    known: bool,
}

/// The charges of a group, alone or together: one [`CREDIT_UNHELD`] per round
/// ([`CREDIT_ONE_UNHELD`] for a round of one), each round
/// taking a user's charges one at a time in arrival order. One round is one autocommit
/// statement; several (a user charged twice in the group) are one transaction, so a group
/// commits, or fails, as one. A member whose wallet another transaction holds gets no
/// answer, and neither do that user's later charges in the group: each then goes alone,
/// waiting for the wallet ([`PointStore::credit`]), while its group's lane serves others.
fn charges_of(pool: PgPool) -> Fetch<ChargeKey, Result<i64, ChargeRefusal>> {
    Arc::new(move |charges: Vec<ChargeKey>| {
        with_connection(&pool, move |conn| {
            let rounds = rounds(&charges);
            if rounds.len() == 1 {
                credit_rounds(conn, &rounds)
            } else {
                transaction(conn, |conn| credit_rounds(conn, &rounds))
            }
            .map_err(db_error)
        })
    })
}

/// `charges` in rounds, each user at most once a round, a user's charges in arrival order.
fn rounds(charges: &[ChargeKey]) -> Vec<Vec<ChargeKey>> {
    let mut rounds: Vec<Vec<ChargeKey>> = Vec::new();
    let mut seen: HashMap<i64, usize> = HashMap::with_capacity(charges.len());
    for charge in charges {
        let round = seen.entry(charge.credit.user_id.get()).or_insert(0);
        match rounds.get_mut(*round) {
            Some(members) => members.push(*charge),
            None => rounds.push(vec![*charge]),
        }
        *round += 1;
    }
    rounds
}

/// Runs the rounds; answers every member but those whose wallet was held elsewhere.
fn credit_rounds(
    conn: &mut PgConnection,
    rounds: &[Vec<ChargeKey>],
) -> QueryResult<HashMap<ChargeKey, Result<i64, ChargeRefusal>>> {
    let mut answers = HashMap::new();
    // Users whose wallet a round found held: their later charges go alone too, after
    // their earlier ones.
    let mut held: HashSet<i64> = HashSet::new();
    for round in rounds {
        let round: Vec<&ChargeKey> = round
            .iter()
            .filter(|c| !held.contains(&c.credit.user_id.get()))
            .collect();
        if round.is_empty() {
            continue;
        }
        if let [one] = round.as_slice() {
            match credit_one_unheld(conn, one)? {
                Some(answer) => {
                    answers.insert(**one, answer);
                }
                None => {
                    held.insert(one.credit.user_id.get());
                }
            }
            continue;
        }
        let column = |f: fn(&ChargeKey) -> i64| round.iter().map(|c| f(c)).collect::<Vec<_>>();
        let rows: HashMap<i64, UnheldRow> = retrying(conn, |conn| {
            statement(CREDIT_UNHELD)
                .bind::<Array<BigInt>, _>(column(|c| c.credit.user_id.get()))
                .bind::<Array<BigInt>, _>(column(|c| c.credit.amount.get()))
                .bind::<Array<BigInt>, _>(column(|c| c.credit.ceiling.get()))
                .bind::<Array<Timestamptz>, _>(round.iter().map(|c| c.at).collect::<Vec<_>>())
                .bind::<Text, _>(PointKind::Charge.as_str())
                .load::<UnheldRow>(conn)
        })?
        .into_iter()
        .map(|row| (row.user_id, row))
        .collect();
        for charge in round {
            let user = charge.credit.user_id.get();
            let answer = match rows.get(&user) {
                Some(UnheldRow {
                    taken: true,
                    balance: Some(balance),
                    ..
                }) => Ok(*balance),
                Some(UnheldRow { taken: true, .. }) => Err(ChargeRefusal::LimitExceeded),
                Some(UnheldRow { known: false, .. }) => Err(ChargeRefusal::UserNotFound),
                // Held by another transaction (or, impossibly, missing from the answer).
                _ => {
                    held.insert(user);
                    continue;
                }
            };
            answers.insert(*charge, answer);
        }
    }
    Ok(answers)
}

/// [`CREDIT`] that also stores the idempotency key's response, in the same statement: only
/// while the key is still held under the request's lease (its row locked first, so a
/// take-over waits for this statement or wins before it), the credit, its history row and
/// the response rendered around the balance after ([`NumberSlot`]) commit together.
const CREDIT_AND_COMPLETE: &str = "\
    WITH held AS ( \
        SELECT 1 FROM idempotency_keys \
        WHERE user_id = $6 AND method = $7 AND path = $8 AND key = $9 \
          AND lease_token = $10 AND response_status IS NULL \
        FOR UPDATE), \
    credited AS ( \
        UPDATE point_wallets SET balance = balance + $2, updated_at = $4 \
        WHERE user_id = $1 AND balance <= $3 AND EXISTS (SELECT 1 FROM held) \
        RETURNING user_id, balance), \
    recorded AS ( \
        INSERT INTO point_history (user_id, kind, amount, balance_after, created_at) \
        SELECT user_id, $5, $2, balance, $4 FROM credited), \
    completed AS ( \
        UPDATE idempotency_keys k \
        SET response_status = $11, \
            response_body = $12 || convert_to(c.balance::text, 'UTF8') || $13 \
        FROM credited c \
        WHERE k.user_id = $6 AND k.method = $7 AND k.path = $8 AND k.key = $9 \
          AND k.lease_token = $10 \
        RETURNING k.response_status, k.response_body) \
    SELECT EXISTS (SELECT 1 FROM held) AS held, (SELECT balance FROM credited) AS balance, \
        (SELECT response_status FROM completed) AS response_status, \
        (SELECT response_body FROM completed) AS response_body";

#[derive(QueryableByName)]
struct CompletedCredit {
    #[diesel(sql_type = Bool)]
    held: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    balance: Option<i64>,
    /// The response as stored, read back from the statement that stored it.
    #[diesel(sql_type = Nullable<SmallInt>)]
    response_status: Option<i16>,
    #[diesel(sql_type = Nullable<Bytea>)]
    response_body: Option<Vec<u8>>,
}

fn credit_and_complete(
    conn: &mut PgConnection,
    credit: Credit,
    now: DateTime<Utc>,
    completion: &Completion<Charged>,
    slot: &NumberSlot,
) -> Result<Charged, CreditError> {
    let user = credit.user_id.get();
    let scope = &completion.scope;
    let row = retrying(conn, |conn| {
        statement(CREDIT_AND_COMPLETE)
            .bind::<BigInt, _>(user)
            .bind::<BigInt, _>(credit.amount.get())
            .bind::<BigInt, _>(credit.ceiling.get())
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(PointKind::Charge.as_str())
            .bind::<BigInt, _>(scope.user_id.get())
            .bind::<Text, _>(&scope.method)
            .bind::<Text, _>(&scope.path)
            .bind::<Text, _>(scope.key.as_str())
            .bind::<SqlUuid, _>(uuid::Uuid::from_u128(completion.token.0))
            .bind::<SmallInt, _>(slot.status)
            .bind::<Bytea, _>(&slot.prefix)
            .bind::<Bytea, _>(&slot.suffix)
            .get_result::<CompletedCredit>(conn)
    })
    .map_err(db_error)?;
    match row {
        CompletedCredit { held: false, .. } => {
            Err(CreditError::Unknown(anyhow::Error::new(LeaseLost)))
        }
        CompletedCredit {
            balance: Some(balance),
            response_status,
            response_body,
            ..
        } => {
            if let (Some(status), Some(body)) = (response_status, response_body) {
                completion.keep(StoredResponse {
                    status: u16::try_from(status).unwrap_or_default(),
                    body,
                });
            }
            Ok(Charged {
                user_id: credit.user_id,
                balance: Balance::from_trusted(balance),
            })
        }
        CompletedCredit { balance: None, .. } => Err(refusal(conn, &credit).map_err(db_error)?),
    }
}

/// Why a credit applied nothing, read after it (the failure path only).
enum NotCredited {
    UnknownUser,
    /// No room at the committed balance: the refusal stands at that balance, whoever held
    /// the wallet meanwhile.
    Full,
    /// Room: a credit that skipped held wallets found this one held. (After a credit that
    /// waited for the wallet, room means a debit committed since: it was refused as full.)
    Held,
}

/// Why a credit for `user` under `ceiling` applied nothing: one read.
fn not_credited(conn: &mut PgConnection, user: i64, ceiling: i64) -> QueryResult<NotCredited> {
    let why: NotCreditedRow = statement(NOT_CREDITED)
        .bind::<BigInt, _>(user)
        .bind::<BigInt, _>(ceiling)
        .get_result(conn)?;
    Ok(match why {
        NotCreditedRow { known: false, .. } => NotCredited::UnknownUser,
        NotCreditedRow { fits: false, .. } => NotCredited::Full,
        NotCreditedRow { .. } => NotCredited::Held,
    })
}

/// The refusal of a credit that waited for its wallet ([`CREDIT`], [`CREDIT_AND_COMPLETE`]).
fn refusal(conn: &mut PgConnection, credit: &Credit) -> QueryResult<CreditError> {
    Ok(
        match not_credited(conn, credit.user_id.get(), credit.ceiling.get())? {
            NotCredited::UnknownUser => CreditError::UserNotFound,
            NotCredited::Full | NotCredited::Held => {
                CreditError::LimitExceeded(BalanceLimitExceeded)
            }
        },
    )
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
        Ok(self
            .balances
            .get(user.get())
            .await?
            .map(Balance::from_trusted))
    }

    #[tracing::instrument(name = "pg.points.history", skip_all, fields(user_id = %user))]
    async fn history(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> anyhow::Result<ForUser<Page<PointHistoryEntry>>> {
        run(&self.pool, move |conn| {
            let rows = statement(HISTORY_PAGE)
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
            // One autocommit statement, the credit and its history row or nothing, shared
            // with the charges that overlap it (`charges_of`).
            None => {
                let key = ChargeKey {
                    ticket: TICKETS.fetch_add(1, Ordering::Relaxed),
                    credit,
                    at: now,
                };
                match self.charges.get(key).await.map_err(CreditError::Unknown)? {
                    Some(Ok(balance)) => Ok(Charged {
                        user_id: credit.user_id,
                        balance: Balance::from_trusted(balance),
                    }),
                    Some(Err(refusal)) => Err(refusal.into()),
                    // Another transaction held the wallet: alone, waiting for it.
                    None => {
                        run(&self.pool, move |conn| {
                            credit_now(conn, credit, now).map_err(TxError::into_domain)
                        })
                        .await
                    }
                }
            }
            // The key's response commits with the credit. It shows the balance the
            // credit computes, so the statement writes it in around that number.
            Some(completion) => {
                let user_id = credit.user_id;
                let slot = NumberSlot::probe(|n| {
                    completion.render(&Charged {
                        user_id,
                        balance: Balance::from_trusted(n),
                    })
                });
                match slot {
                    Some(slot) => {
                        run(&self.pool, move |conn| {
                            credit_and_complete(conn, credit, now, &completion, &slot)
                        })
                        .await
                    }
                    // A response of another shape: the credit, then the response, in
                    // one transaction.
                    None => {
                        transact_idempotent(&self.pool, Some(completion), move |conn| {
                            credit_now(conn, credit, now)
                        })
                        .await
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::points::ChargeAmount;

    use super::*;

    fn key(ticket: u64, user: i64) -> ChargeKey {
        ChargeKey {
            ticket,
            credit: Credit::new(UserId::new(user).unwrap(), ChargeAmount::new(1).unwrap()),
            at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_round_holds_each_user_once_and_a_users_charges_go_in_arrival_order() {
        let charges = [
            key(0, 1),
            key(1, 2),
            key(2, 1),
            key(3, 3),
            key(4, 1),
            key(5, 2),
        ];
        let tickets = |round: &Vec<ChargeKey>| round.iter().map(|c| c.ticket).collect::<Vec<_>>();
        let split = rounds(&charges);
        assert_eq!(
            split.iter().map(tickets).collect::<Vec<_>>(),
            [vec![0, 1, 3], vec![2, 5], vec![4]]
        );
        assert_eq!(rounds(&charges[1..2]).len(), 1);
    }
}

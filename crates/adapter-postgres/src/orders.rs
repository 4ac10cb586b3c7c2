//! [`OrderStore`] on PostgreSQL.
//!
//! Round trips per operation (success path): place 4 (`BEGIN`, take the stock, store
//! the order, `COMMIT`), pay 4 (`BEGIN`, move the order to PAID, debit + history +
//! event, `COMMIT`), cancel 1, an expiry batch 1, a read 1. A refusal costs one more
//! statement, a diagnosing read that names it. Placements and payments without an
//! idempotency key that overlap are grouped: 4 round trips for the whole group (`BEGIN`,
//! lock and read, write every member the domain accepted, `COMMIT`).
//!
//! Lock order, the same everywhere, so transactions cannot deadlock: order rows (in id
//! order), then product rows in ascending id, then user coupons, then the wallet. A
//! user coupon is only ever waited for by a transaction that found it AVAILABLE, which
//! no transaction restoring it (it was USED) can be holding it for. A group of payments,
//! and a payment without a key run as a group of one, waits for no row (`SKIP LOCKED`);
//! only a payment its group could not decide then waits, alone and outside the group.
//!
//! Every deadline is the database's clock: `now()` (the transaction's start) stamps a
//! new order, `statement_timestamp()` decides and stamps payment and expiry.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::coupon::{Discount, StoredCouponState};
use domain::idempotency::Completion;
use domain::order::{
    Allotment, AppliedCoupon, FoundOrder, FoundUserCoupon, HeldCoupon, Order, OrderFindings,
    OrderLine, OrderPayment, OrderPlacement, OrderPlan, OrderQuantity, OrderStatus, PayRefusal,
    Payment, PaymentDenied, PlaceFindings, PlaceRefusal, PricingError, ProductSnapshot, Settled,
    Settlement,
};
use domain::outbox::OrderPaid;
use domain::points::{Balance, PointKind};
use domain::ports::{CancelError, OrderStore, PayError, PlaceError};
use domain::product::{Price, ProductName};
use domain::user::ForUser;
use domain::{Money, OrderId, Page, PageRequest, ProductId, UserCouponId, UserId};

use crate::error::{TxError, db_error};
use crate::group::{Fetch, Grouped, LANES, MAX_GROUP};
use crate::idempotency::in_tx_completing;
use crate::pool::{PgPool, run, with_connection};
use crate::retry::{retrying, transaction};
use crate::statement::statement;

/// Orders in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOrderStore {
    pool: PgPool,
    /// Reads of one order by (user, order id), grouped while they overlap.
    orders: Grouped<(i64, i64), ForUser<Option<Order>>>,
    /// Placements without an idempotency key, grouped while they overlap.
    placements: Grouped<PlaceKey, Result<Order, PlaceRefusal>>,
    /// Payments without an idempotency key, grouped while they overlap.
    payments: Grouped<PayKey, Result<Payment, PaymentDenied>>,
}

impl PgOrderStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            orders: Grouped::new(orders_of(pool.clone()), LANES, MAX_GROUP),
            placements: Grouped::new(placements_of(pool.clone()), LANES, MAX_GROUP),
            payments: Grouped::new(payments_of(pool.clone()), LANES, MAX_GROUP),
            pool,
        }
    }
}

/// A group of (user, order id) reads: one statement, one row per pair saying whether the
/// user exists and holding the order when it is that user's.
fn orders_of(pool: PgPool) -> Fetch<(i64, i64), ForUser<Option<Order>>> {
    Arc::new(move |keys: Vec<(i64, i64)>| {
        with_connection(&pool, move |conn| {
            let (users, ids): (Vec<i64>, Vec<i64>) = keys.into_iter().unzip();
            let rows = match (users.as_slice(), ids.as_slice()) {
                // Alone: the one-order statement, as cheap as before grouping.
                ([user], [id]) => statement(FIND)
                    .bind::<BigInt, _>(*user)
                    .bind::<BigInt, _>(*id)
                    .load::<Keyed>(conn),
                _ => statement(FIND_MANY)
                    .bind::<Array<BigInt>, _>(users)
                    .bind::<Array<BigInt>, _>(ids)
                    .load::<Keyed>(conn),
            }
            .map_err(db_error)?;
            let mut found = HashMap::with_capacity(rows.len());
            for row in rows {
                let answer = if row.user_exists {
                    ForUser::Found(row.order.into_order()?)
                } else {
                    ForUser::UnknownUser
                };
                found.insert((row.key_user, row.key_order), answer);
            }
            Ok(found)
        })
    })
}

/// The columns of an order and its lines (as parallel arrays, in product order), read
/// from a row source named `o` that has the `orders` columns.
macro_rules! order_columns {
    () => {
        "o.id, o.user_id, o.status, o.total_amount, o.discount_amount, o.pay_amount, \
         o.user_coupon_id, o.created_at, o.expires_at, o.paid_at, \
         l.line_product_ids, l.line_names, l.line_prices, l.line_quantities, l.line_amounts"
    };
}

/// The lines of order `o`, for `order_columns!`.
macro_rules! lines_of_o {
    () => {
        "LEFT JOIN LATERAL ( \
             SELECT array_agg(product_id ORDER BY product_id) AS line_product_ids, \
                    array_agg(product_name ORDER BY product_id) AS line_names, \
                    array_agg(unit_price ORDER BY product_id) AS line_prices, \
                    array_agg(quantity ORDER BY product_id) AS line_quantities, \
                    array_agg(amount ORDER BY product_id) AS line_amounts \
             FROM order_lines WHERE order_id = o.id) l ON true"
    };
}

/// A statement's text with the stored names of statuses spliced in where it says
/// `{not_paid}`, `{paid}`, `{expired}`, `{cancelled}` (orders), `{available}`, `{used}`
/// (user coupons) or `{use_kind}` (a history row's kind), listed after the text (the
/// compiler checks the list against the text): each name comes from its enum's
/// one `as_str`, so the SQL and the parse that reads it back cannot disagree. Spliced in
/// as literals, once per process, not bound as parameters: the planner then sees
/// `status = 'NOT_PAID'` in every plan, generic ones included, and can use the partial
/// index on unpaid orders; and the text stays fixed, so each connection still prepares
/// it once.
macro_rules! statuses {
    ($sql:expr, $($name:ident),+ $(,)?) => {
        format!($sql, $($name = stored_name!($name)),+)
    };
}

/// The stored name behind each placeholder of [`statuses!`].
macro_rules! stored_name {
    (not_paid) => {
        OrderStatus::NotPaid.as_str()
    };
    (paid) => {
        OrderStatus::Paid.as_str()
    };
    (expired) => {
        OrderStatus::Expired.as_str()
    };
    (cancelled) => {
        OrderStatus::Cancelled.as_str()
    };
    (available) => {
        StoredCouponState::Available.as_str()
    };
    (used) => {
        StoredCouponState::Used.as_str()
    };
    (use_kind) => {
        PointKind::Use.as_str()
    };
}

/// Puts back what the orders in the CTE `left_unpaid (id, user_coupon_id)` held: the
/// stock of their lines (product rows locked in ascending id first) and their coupons.
/// Used right after the orders' own guarded move out of NOT_PAID, in that statement;
/// its text holds the placeholder `{available}` for [`statuses!`].
macro_rules! restore_effects {
    () => {
        "returned AS ( \
             SELECT product_id, sum(quantity) AS quantity FROM order_lines \
             WHERE order_id IN (SELECT id FROM left_unpaid) GROUP BY product_id), \
         locked AS MATERIALIZED ( \
             SELECT id FROM products WHERE id IN (SELECT product_id FROM returned) \
             ORDER BY id FOR UPDATE), \
         restocked AS ( \
             UPDATE products p SET stock = p.stock + r.quantity, updated_at = statement_timestamp() \
             FROM returned r JOIN locked k ON k.id = r.product_id WHERE p.id = r.product_id), \
         coupons_back AS ( \
             UPDATE user_coupons SET status = '{available}', used_at = NULL \
             WHERE id IN (SELECT user_coupon_id FROM left_unpaid WHERE user_coupon_id IS NOT NULL))"
    };
}

/// An order row with its lines, every column nullable so one shape serves reads that
/// may find no order.
#[derive(QueryableByName)]
struct OrderRecord {
    #[diesel(sql_type = Nullable<BigInt>)]
    id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    user_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    total_amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    discount_amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pay_amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    user_coupon_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    paid_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Array<BigInt>>)]
    line_product_ids: Option<Vec<i64>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    line_names: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<BigInt>>)]
    line_prices: Option<Vec<i64>>,
    #[diesel(sql_type = Nullable<Array<BigInt>>)]
    line_quantities: Option<Vec<i64>>,
    #[diesel(sql_type = Nullable<Array<BigInt>>)]
    line_amounts: Option<Vec<i64>>,
}

fn missing(column: &str) -> anyhow::Error {
    anyhow::anyhow!("stored order has no {column}")
}

impl OrderRecord {
    /// The order, or `None` when the row holds none (an outer join that found nothing).
    fn into_order(self) -> anyhow::Result<Option<Order>> {
        let Some(id) = self.id else {
            return Ok(None);
        };
        let product_ids = self.line_product_ids.unwrap_or_default();
        let names = self.line_names.unwrap_or_default();
        let prices = self.line_prices.unwrap_or_default();
        let quantities = self.line_quantities.unwrap_or_default();
        let amounts = self.line_amounts.unwrap_or_default();
        let lines = product_ids
            .into_iter()
            .zip(names)
            .zip(prices.into_iter().zip(quantities).zip(amounts))
            .map(|((product_id, name), ((price, quantity), amount))| {
                Ok(OrderLine {
                    product_id: ProductId::from_trusted(product_id),
                    product_name: ProductName::from_trusted(name),
                    unit_price: Price::from_trusted(price),
                    quantity: OrderQuantity::new(quantity)
                        .map_err(|e| anyhow::anyhow!("stored order line has {e}"))?,
                    amount: Money::from_trusted(amount),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let status = self.status.ok_or_else(|| missing("status"))?;
        Ok(Some(Order {
            id: OrderId::from_trusted(id),
            user_id: UserId::from_trusted(self.user_id.ok_or_else(|| missing("user"))?),
            status: OrderStatus::parse(&status)?,
            lines,
            total_amount: Money::from_trusted(self.total_amount.ok_or_else(|| missing("total"))?),
            discount_amount: Money::from_trusted(
                self.discount_amount.ok_or_else(|| missing("discount"))?,
            ),
            pay_amount: Money::from_trusted(self.pay_amount.ok_or_else(|| missing("pay amount"))?),
            user_coupon_id: self.user_coupon_id.map(UserCouponId::from_trusted),
            created_at: self.created_at.ok_or_else(|| missing("created_at"))?,
            expires_at: self.expires_at.ok_or_else(|| missing("expires_at"))?,
            paid_at: self.paid_at,
        }))
    }

    fn into_stored(self) -> anyhow::Result<Order> {
        self.into_order()?
            .ok_or_else(|| anyhow::anyhow!("the statement returned no order"))
    }
}

// ---------------------------------------------------------------------------------
// Placing
// ---------------------------------------------------------------------------------

/// Takes the stock of every line whose product has enough, product rows locked in
/// ascending id, and returns what it took with the name and price it snapshots, plus
/// the named user coupon's discount terms (immutable, so read without a lock).
const TAKE_STOCK: &str = "\
    WITH wanted AS ( \
        SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS w (product_id, quantity)), \
    locked AS MATERIALIZED ( \
        SELECT p.id FROM products p JOIN wanted w ON w.product_id = p.id \
        WHERE p.stock >= w.quantity ORDER BY p.id FOR UPDATE OF p), \
    taken AS ( \
        UPDATE products p SET stock = p.stock - w.quantity, updated_at = now() \
        FROM locked k JOIN wanted w ON w.product_id = k.id \
        WHERE p.id = k.id AND p.stock >= w.quantity \
        RETURNING p.id, p.name, p.price) \
    SELECT t.id, t.name, t.price, c.discount_type, c.discount_value \
    FROM taken t LEFT JOIN ( \
        SELECT c.discount_type, c.discount_value FROM user_coupons uc \
        JOIN coupons c ON c.id = uc.coupon_id WHERE uc.id = $3) c ON true";

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = Nullable<Text>)]
    discount_type: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    discount_value: Option<i64>,
}

/// Uses the coupon (only the user's, AVAILABLE and unexpired), then stores the order
/// and its lines; returns what the database chose for the order (its id and its clock's
/// stamps), or nothing when the coupon could not be used. The rest of the order is the
/// plan the statement stored, so it is not read back.
static STORE_ORDER: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        "WITH used AS ( \
         UPDATE user_coupons SET status = '{used}', used_at = now() \
         WHERE id = $2 AND user_id = $1 AND status = '{available}' AND expires_at > now() \
         RETURNING id), \
     o AS ( \
         INSERT INTO orders (user_id, status, total_amount, discount_amount, pay_amount, \
                             user_coupon_id, created_at, expires_at, updated_at) \
         SELECT $1, '{not_paid}', $3, $4, $5, $2, now(), \
                now() + $6 * interval '1 microsecond', now() \
         WHERE $2::bigint IS NULL OR EXISTS (SELECT 1 FROM used) \
         RETURNING id, created_at, expires_at), \
     stored_lines AS ( \
         INSERT INTO order_lines (order_id, product_id, product_name, unit_price, quantity, amount) \
         SELECT o.id, x.* FROM o, \
                unnest($7::bigint[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[]) \
                AS x (product_id, product_name, unit_price, quantity, amount)) \
     SELECT id, created_at, expires_at FROM o",
        used,
        available,
        not_paid
    )
});

/// Why a placing attempt stopped before storing the order.
enum Stopped {
    /// Some lines' stock was not taken (missing product or too little stock).
    Short(ProductId),
    /// The coupon was not used (not found, not the user's, used or expired).
    Coupon,
    /// The order's user does not exist (the order's foreign key).
    User,
    /// Not a refusal: the key's response could not be stored (its lease was lost), or an
    /// amount left the range of money.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stopped {
    fn from(err: anyhow::Error) -> Self {
        Self::Failed(err)
    }
}

impl Stopped {
    /// The refusal the attempt itself saw, to answer when the diagnosing read finds
    /// nothing of higher precedence; a failure is no refusal.
    fn into_refusal(self) -> anyhow::Result<PlaceRefusal> {
        match self {
            Self::Short(product) => Ok(PlaceRefusal::OutOfStock(product)),
            Self::Coupon => Ok(PlaceRefusal::CouponNotUsable),
            Self::User => Ok(PlaceRefusal::UserNotFound),
            Self::Failed(err) => Err(err),
        }
    }
}

/// The order's product ids and quantities, as the two arrays the statements bind.
fn line_arrays(order: &OrderPlacement) -> (Vec<i64>, Vec<i64>) {
    order
        .items
        .lines()
        .iter()
        .map(|(p, q)| (p.get(), q.get()))
        .unzip()
}

fn place_tx(conn: &mut PgConnection, order: &OrderPlacement) -> Result<Order, TxError<Stopped>> {
    let (ids, quantities) = line_arrays(order);
    let coupon_id = order.user_coupon_id.map(UserCouponId::get);
    let taken: Vec<Taken> = statement(TAKE_STOCK)
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<BigInt>, _>(&quantities)
        .bind::<Nullable<BigInt>, _>(coupon_id)
        .load(conn)?;
    if let Some(short) = order
        .items
        .lines()
        .iter()
        .find(|(p, _)| !taken.iter().any(|t| t.id == p.get()))
    {
        return Err(TxError::Domain(Stopped::Short(short.0)));
    }
    let coupon = match (order.user_coupon_id, taken.first()) {
        (
            Some(id),
            Some(Taken {
                discount_type: Some(kind),
                discount_value: Some(value),
                ..
            }),
        ) => {
            let discount = Discount::new(kind, *value).map_err(|e| {
                TxError::Db(DieselError::DeserializationError(
                    anyhow::anyhow!("stored coupon has {e}").into(),
                ))
            })?;
            Some(AppliedCoupon { id, discount })
        }
        (Some(_), _) => return Err(TxError::Domain(Stopped::Coupon)),
        (None, _) => None,
    };
    let snapshots: Vec<ProductSnapshot> = taken
        .into_iter()
        .map(|t| ProductSnapshot {
            id: ProductId::from_trusted(t.id),
            name: ProductName::from_trusted(t.name),
            price: Price::from_trusted(t.price),
        })
        .collect();
    let plan = OrderPlan::price(order.user_id, &order.items, &snapshots, coupon).map_err(
        |err| match err {
            PricingError::MissingProduct(product) => TxError::Domain(Stopped::Short(product)),
            PricingError::OutOfRange => TxError::Domain(Stopped::Failed(err.into())),
        },
    )?;
    let timeout_micros = order.payment_timeout.num_microseconds().unwrap_or(i64::MAX);
    let lines = &plan.lines;
    let stored = statement(&STORE_ORDER)
        .bind::<BigInt, _>(plan.user_id.get())
        .bind::<Nullable<BigInt>, _>(coupon_id)
        .bind::<BigInt, _>(plan.total_amount.get())
        .bind::<BigInt, _>(plan.discount_amount.get())
        .bind::<BigInt, _>(plan.pay_amount.get())
        .bind::<BigInt, _>(timeout_micros)
        .bind::<Array<BigInt>, _>(lines.iter().map(|l| l.product_id.get()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            lines
                .iter()
                .map(|l| l.product_name.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(lines.iter().map(|l| l.unit_price.get()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(lines.iter().map(|l| l.quantity.get()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(lines.iter().map(|l| l.amount.get()).collect::<Vec<_>>())
        .get_result::<NewOrder>(conn)
        .optional()
        .map_err(|err| match err {
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                TxError::Domain(Stopped::User)
            }
            other => TxError::Db(other),
        })?;
    let Some(stored) = stored else {
        return Err(TxError::Domain(Stopped::Coupon));
    };
    Ok(stored.order_of(plan))
}

/// What [`STORE_ORDER`] (and [`STORE_PLACED`], per member) returns of an order it stored.
#[derive(QueryableByName)]
struct NewOrder {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
}

impl NewOrder {
    /// The order `plan` became, under the id and stamps the store gave it.
    fn order_of(self, plan: OrderPlan) -> Order {
        plan.placed(
            OrderId::from_trusted(self.id),
            self.created_at,
            self.expires_at,
        )
    }
}

/// One placement in its own transaction (completing its idempotency key, when it has
/// one); on a refusal, the read that names it. One checkout.
fn place_one(
    conn: &mut PgConnection,
    order: &OrderPlacement,
    completion: Option<&Completion<Order>>,
) -> Result<Order, PlaceError> {
    match in_tx_completing(conn, completion, |conn| place_tx(conn, order)) {
        Ok(order) => Ok(order),
        Err(TxError::Db(err)) => Err(PlaceError::Unknown(db_error(err))),
        Err(TxError::Domain(stopped)) => {
            let fallback = stopped.into_refusal()?;
            let findings = diagnose_place(conn, order)?;
            Err(PlaceError::Refused(
                findings.refusal(order.user_id, fallback),
            ))
        }
    }
}

/// One placement of a group; its `ticket` is what tells it apart (`Eq` and `Hash` look
/// at nothing else).
#[derive(Debug, Clone)]
struct PlaceKey {
    ticket: u64,
    order: Arc<OrderPlacement>,
}

impl PartialEq for PlaceKey {
    fn eq(&self, other: &Self) -> bool {
        self.ticket == other.ticket
    }
}

impl Eq for PlaceKey {}

impl Hash for PlaceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ticket.hash(state);
    }
}

/// The placements of a group. Alone: [`place_one`], as before grouping. Together, in one
/// transaction whatever their number (`BEGIN`, [`TAKE_PLACEABLE`], [`STORE_PLACED`],
/// `COMMIT`): their products and user coupons are locked, the domain's [`Allotment`]
/// decides each placement in arrival order against them, and one statement writes every
/// order it placed. A member it leaves undecided (it names a user, product or coupon that
/// does not exist) gets no answer and goes alone.
///
/// Unlike a group of payments, a group of placements waits for its rows: many orders
/// name the same products (a sale), and a group that skipped a held product would send
/// every member that names it alone, each to wait for it in turn. It locks as every
/// placement does, products in ascending id and then user coupons, so it cannot deadlock
/// with them, nor with a cancel or an expiry (orders, then products, then coupons).
fn placements_of(pool: PgPool) -> Fetch<PlaceKey, Result<Order, PlaceRefusal>> {
    grouped_writes(
        pool,
        |conn, one: &PlaceKey| match place_one(conn, &one.order, None) {
            Ok(order) => Ok(Some(Ok(order))),
            Err(PlaceError::Refused(refusal)) => Ok(Some(Err(refusal))),
            Err(PlaceError::Unknown(err)) => Err(err),
        },
        allot,
    )
}

/// What a group's transaction answers: each member it decided, by key.
type GroupAnswers<K, V> = Result<HashMap<K, V>, TxError<anyhow::Error>>;

/// The [`Fetch`] of a group of writes on one connection: a call alone by `alone` (`None`
/// when it could not be decided), several in one transaction by `together` (run again from
/// `BEGIN` after a deadlock or serialization failure), answering the calls they decided.
fn grouped_writes<K, V>(
    pool: PgPool,
    alone: fn(&mut PgConnection, &K) -> anyhow::Result<Option<V>>,
    together: fn(&mut PgConnection, &[K]) -> GroupAnswers<K, V>,
) -> Fetch<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Send + 'static,
{
    Arc::new(move |calls: Vec<K>| {
        with_connection(&pool, move |conn| {
            if let [one] = calls.as_slice() {
                let answer = alone(conn, one)?;
                return Ok(answer
                    .map(|v| HashMap::from([(one.clone(), v)]))
                    .unwrap_or_default());
            }
            transaction(conn, |conn| together(conn, &calls)).map_err(|err| match err {
                TxError::Db(err) => db_error(err),
                TxError::Domain(err) => err,
            })
        })
    })
}

/// Locks the products among `$1` (in ascending id) and then the user coupons among `$2`,
/// and reads which users among `$3` exist: one row of parallel arrays (products and
/// coupons in id order), with the transaction's time, which decides a coupon's expiry and
/// stamps the orders.
const TAKE_PLACEABLE: &str = "\
    WITH products_taken AS MATERIALIZED ( \
         SELECT id, name, price, stock FROM products WHERE id = ANY($1) \
         ORDER BY id FOR UPDATE), \
     coupons_taken AS MATERIALIZED ( \
         SELECT uc.id, uc.user_id, uc.status, uc.expires_at, c.discount_type, c.discount_value \
         FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id \
         WHERE uc.id = ANY($2) ORDER BY uc.id FOR UPDATE OF uc) \
     SELECT ARRAY(SELECT id FROM products_taken ORDER BY id) AS product_ids, \
            ARRAY(SELECT name FROM products_taken ORDER BY id) AS product_names, \
            ARRAY(SELECT price FROM products_taken ORDER BY id) AS product_prices, \
            ARRAY(SELECT stock FROM products_taken ORDER BY id) AS product_stocks, \
            ARRAY(SELECT id FROM coupons_taken ORDER BY id) AS coupon_ids, \
            ARRAY(SELECT user_id FROM coupons_taken ORDER BY id) AS coupon_owners, \
            ARRAY(SELECT status FROM coupons_taken ORDER BY id) AS coupon_statuses, \
            ARRAY(SELECT expires_at FROM coupons_taken ORDER BY id) AS coupon_expiries, \
            ARRAY(SELECT discount_type FROM coupons_taken ORDER BY id) AS discount_types, \
            ARRAY(SELECT discount_value FROM coupons_taken ORDER BY id) AS discount_values, \
            ARRAY(SELECT id FROM users WHERE id = ANY($3)) AS known_users, \
            now() AS now";

#[derive(QueryableByName)]
struct Placeable {
    #[diesel(sql_type = Array<BigInt>)]
    product_ids: Vec<i64>,
    #[diesel(sql_type = Array<Text>)]
    product_names: Vec<String>,
    #[diesel(sql_type = Array<BigInt>)]
    product_prices: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    product_stocks: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    coupon_ids: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    coupon_owners: Vec<i64>,
    #[diesel(sql_type = Array<Text>)]
    coupon_statuses: Vec<String>,
    #[diesel(sql_type = Array<Timestamptz>)]
    coupon_expiries: Vec<DateTime<Utc>>,
    #[diesel(sql_type = Array<Text>)]
    discount_types: Vec<String>,
    #[diesel(sql_type = Array<BigInt>)]
    discount_values: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    known_users: Vec<i64>,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

impl Placeable {
    /// What was taken, for the domain to decide on.
    fn into_allotment(self) -> anyhow::Result<Allotment> {
        let products = self
            .product_ids
            .into_iter()
            .zip(self.product_names)
            .zip(self.product_prices.into_iter().zip(self.product_stocks))
            .map(|((id, name), (price, stock))| {
                (
                    ProductSnapshot {
                        id: ProductId::from_trusted(id),
                        name: ProductName::from_trusted(name),
                        price: Price::from_trusted(price),
                    },
                    stock,
                )
            });
        let coupons = self
            .coupon_ids
            .into_iter()
            .zip(self.coupon_owners)
            .zip(self.coupon_statuses.into_iter().zip(self.coupon_expiries))
            .zip(self.discount_types.into_iter().zip(self.discount_values))
            .map(|(((id, owner), (status, expires_at)), (kind, value))| {
                Ok((
                    UserCouponId::from_trusted(id),
                    HeldCoupon {
                        found: FoundUserCoupon {
                            owner: UserId::from_trusted(owner),
                            state: StoredCouponState::parse(&status)?,
                            expires_at,
                        },
                        discount: Discount::new(&kind, value)
                            .map_err(|e| anyhow::anyhow!("stored coupon has {e}"))?,
                    },
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Allotment::new(
            self.now,
            products,
            coupons,
            self.known_users.into_iter().map(UserId::from_trusted),
        ))
    }
}

/// Stores the orders an [`Allotment`] placed: member `n` (the 1-based position in the
/// arrays `$1`..`$6`: user, user coupon or NULL, total, discount, pay amount, payment
/// timeout in microseconds) gets an order id from the orders' sequence; each product in
/// `$7` loses `$8` units of stock (the sum over the members); each named coupon becomes
/// USED; every order is stored NOT_PAID with its lines (`$9`..`$14`: member, product, name,
/// unit price, quantity, amount), each line joined to the order and the product this
/// statement wrote. Answers each member's order id and stamps, with how many products and
/// coupons it updated and how many lines it stored.
static STORE_PLACED: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        "WITH members AS MATERIALIZED ( \
         SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS id, p.* \
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
                     $6::bigint[]) WITH ORDINALITY \
             AS p (user_id, user_coupon_id, total_amount, discount_amount, pay_amount, \
                   timeout, member)), \
     taken AS ( \
         UPDATE products p SET stock = p.stock - t.quantity, updated_at = now() \
         FROM unnest($7::bigint[], $8::bigint[]) AS t (product_id, quantity) \
         WHERE p.id = t.product_id AND p.stock >= t.quantity \
         RETURNING p.id), \
     used AS ( \
         UPDATE user_coupons uc SET status = '{used}', used_at = now() \
         FROM members p \
         WHERE uc.id = p.user_coupon_id AND uc.user_id = p.user_id \
           AND uc.status = '{available}' AND uc.expires_at > now() \
         RETURNING uc.id), \
     o AS ( \
         INSERT INTO orders (id, user_id, status, total_amount, discount_amount, pay_amount, \
                             user_coupon_id, created_at, expires_at, updated_at) \
         SELECT id, user_id, '{not_paid}', total_amount, discount_amount, pay_amount, \
                user_coupon_id, now(), now() + timeout * interval '1 microsecond', now() \
         FROM members \
         RETURNING id, created_at, expires_at), \
     stored_lines AS ( \
         INSERT INTO order_lines (order_id, product_id, product_name, unit_price, quantity, amount) \
         SELECT o.id, t.id, l.product_name, l.unit_price, l.quantity, l.amount \
         FROM unnest($9::bigint[], $10::bigint[], $11::text[], $12::bigint[], $13::bigint[], \
                     $14::bigint[]) \
             AS l (member, product_id, product_name, unit_price, quantity, amount) \
         JOIN members p ON p.member = l.member JOIN o ON o.id = p.id \
         JOIN taken t ON t.id = l.product_id \
         RETURNING order_id) \
     SELECT p.member, o.id, o.created_at, o.expires_at, \
            (SELECT count(*) FROM taken) AS products_taken, \
            (SELECT count(*) FROM used) AS coupons_used, \
            (SELECT count(*) FROM stored_lines) AS lines_stored \
     FROM members p JOIN o ON o.id = p.id",
        used,
        available,
        not_paid
    )
});

#[derive(QueryableByName)]
struct Placed {
    #[diesel(sql_type = BigInt)]
    member: i64,
    #[diesel(embed)]
    order: NewOrder,
    #[diesel(sql_type = BigInt)]
    products_taken: i64,
    #[diesel(sql_type = BigInt)]
    coupons_used: i64,
    #[diesel(sql_type = BigInt)]
    lines_stored: i64,
}

/// The columns of [`STORE_PLACED`].
#[derive(Default)]
struct Placing {
    user_ids: Vec<i64>,
    coupon_ids: Vec<Option<i64>>,
    totals: Vec<i64>,
    discounts: Vec<i64>,
    pays: Vec<i64>,
    timeouts: Vec<i64>,
    /// Units taken per product, over every order placed.
    stock: HashMap<i64, i64>,
    line_members: Vec<i64>,
    line_products: Vec<i64>,
    line_names: Vec<String>,
    line_prices: Vec<i64>,
    line_quantities: Vec<i64>,
    line_amounts: Vec<i64>,
}

impl Placing {
    fn push(&mut self, order: &OrderPlacement, plan: &OrderPlan) {
        self.user_ids.push(plan.user_id.get());
        self.coupon_ids.push(plan.coupon.map(|c| c.id.get()));
        self.totals.push(plan.total_amount.get());
        self.discounts.push(plan.discount_amount.get());
        self.pays.push(plan.pay_amount.get());
        self.timeouts
            .push(order.payment_timeout.num_microseconds().unwrap_or(i64::MAX));
        let member = i64::try_from(self.user_ids.len()).unwrap_or(i64::MAX);
        for line in &plan.lines {
            *self.stock.entry(line.product_id.get()).or_insert(0) += line.quantity.get();
            self.line_members.push(member);
            self.line_products.push(line.product_id.get());
            self.line_names.push(line.product_name.as_str().to_owned());
            self.line_prices.push(line.unit_price.get());
            self.line_quantities.push(line.quantity.get());
            self.line_amounts.push(line.amount.get());
        }
    }
}

/// A group's placements, in the transaction the caller opened: answers every member the
/// [`Allotment`] decided.
fn allot(
    conn: &mut PgConnection,
    placements: &[PlaceKey],
) -> GroupAnswers<PlaceKey, Result<Order, PlaceRefusal>> {
    let ids = |of: &dyn Fn(&OrderPlacement) -> Vec<i64>| {
        let mut ids: Vec<i64> = placements.iter().flat_map(|k| of(&k.order)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let held = statement(TAKE_PLACEABLE)
        .bind::<Array<BigInt>, _>(ids(&|o| line_arrays(o).0))
        .bind::<Array<BigInt>, _>(ids(&|o| {
            o.user_coupon_id
                .map(UserCouponId::get)
                .into_iter()
                .collect()
        }))
        .bind::<Array<BigInt>, _>(ids(&|o| vec![o.user_id.get()]))
        .get_result::<Placeable>(conn)?;
    let mut allotment = held.into_allotment().map_err(TxError::Domain)?;
    let mut answers = HashMap::with_capacity(placements.len());
    let mut placing = Placing::default();
    let mut plans = Vec::new();
    for key in placements {
        match allotment.place(&key.order) {
            None => {}
            Some(Err(refusal)) => {
                answers.insert(key.clone(), Err(refusal));
            }
            Some(Ok(plan)) => {
                placing.push(&key.order, &plan);
                plans.push(Some((key.clone(), plan)));
            }
        }
    }
    if plans.is_empty() {
        return Ok(answers);
    }
    let (products, coupons, lines) = (
        placing.stock.len(),
        placing.coupon_ids.iter().flatten().count(),
        placing.line_members.len(),
    );
    let (stock_ids, stock_quantities): (Vec<i64>, Vec<i64>) = placing.stock.into_iter().unzip();
    let stored = statement(&STORE_PLACED)
        .bind::<Array<BigInt>, _>(placing.user_ids)
        .bind::<Array<Nullable<BigInt>>, _>(placing.coupon_ids)
        .bind::<Array<BigInt>, _>(placing.totals)
        .bind::<Array<BigInt>, _>(placing.discounts)
        .bind::<Array<BigInt>, _>(placing.pays)
        .bind::<Array<BigInt>, _>(placing.timeouts)
        .bind::<Array<BigInt>, _>(stock_ids)
        .bind::<Array<BigInt>, _>(stock_quantities)
        .bind::<Array<BigInt>, _>(placing.line_members)
        .bind::<Array<BigInt>, _>(placing.line_products)
        .bind::<Array<Text>, _>(placing.line_names)
        .bind::<Array<BigInt>, _>(placing.line_prices)
        .bind::<Array<BigInt>, _>(placing.line_quantities)
        .bind::<Array<BigInt>, _>(placing.line_amounts)
        .load::<Placed>(conn)?;
    // The rows were taken for this transaction, so the writes match what was read; if
    // they ever did not, nothing is kept.
    let wrote = stored.first().map_or((0, 0, 0), |row| {
        (row.products_taken, row.coupons_used, row.lines_stored)
    });
    let wanted = [products, coupons, lines].map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    if stored.len() != plans.len() || [wrote.0, wrote.1, wrote.2] != wanted {
        return Err(TxError::Domain(anyhow::anyhow!(
            "a placed group stored {} of {} orders and (products, coupons, lines) {wrote:?} of {wanted:?}",
            stored.len(),
            plans.len()
        )));
    }
    for row in stored {
        let member = usize::try_from(row.member - 1).ok();
        let Some((key, plan)) = member.and_then(|m| plans.get_mut(m)).and_then(Option::take) else {
            return Err(TxError::Domain(anyhow::anyhow!(
                "a placed group answered member {} twice or out of range",
                row.member
            )));
        };
        answers.insert(key, Ok(row.order.order_of(plan)));
    }
    Ok(answers)
}

/// Reads what is wrong with an order that could not be placed, after its rollback.
const DIAGNOSE_PLACE: &str = "\
    SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists, \
           uc.user_id AS coupon_owner, uc.status AS coupon_status, \
           uc.expires_at AS coupon_expires_at, \
           ARRAY(SELECT w.product_id FROM unnest($3::bigint[]) AS w (product_id) \
                 WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = w.product_id) \
                 ORDER BY w.product_id) AS missing_products, \
           ARRAY(SELECT w.product_id FROM unnest($3::bigint[], $4::bigint[]) AS w (product_id, quantity) \
                 JOIN products p ON p.id = w.product_id WHERE p.stock < w.quantity \
                 ORDER BY w.product_id) AS short_products, \
           statement_timestamp() AS now \
    FROM (SELECT 1) AS one LEFT JOIN user_coupons uc ON uc.id = $2";

#[derive(QueryableByName)]
struct PlaceDiagnosis {
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    coupon_owner: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    coupon_status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    coupon_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Array<BigInt>)]
    missing_products: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    short_products: Vec<i64>,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

fn diagnose_place(
    conn: &mut PgConnection,
    order: &OrderPlacement,
) -> anyhow::Result<PlaceFindings> {
    let (ids, quantities) = line_arrays(order);
    let found: PlaceDiagnosis = statement(DIAGNOSE_PLACE)
        .bind::<BigInt, _>(order.user_id.get())
        .bind::<Nullable<BigInt>, _>(order.user_coupon_id.map(UserCouponId::get))
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<BigInt>, _>(&quantities)
        .get_result(conn)
        .map_err(db_error)?;
    let coupon = match (order.user_coupon_id, found.coupon_owner) {
        (None, _) => None,
        (Some(_), None) => Some(None),
        (Some(_), Some(owner)) => {
            let status = found.coupon_status.unwrap_or_default();
            Some(Some(FoundUserCoupon {
                owner: UserId::from_trusted(owner),
                state: StoredCouponState::parse(&status)?,
                expires_at: found
                    .coupon_expires_at
                    .ok_or_else(|| missing("coupon expiry"))?,
            }))
        }
    };
    let findings = PlaceFindings {
        user_exists: found.user_exists,
        coupon,
        missing_products: found
            .missing_products
            .into_iter()
            .map(ProductId::from_trusted)
            .collect(),
        short_products: found
            .short_products
            .into_iter()
            .map(ProductId::from_trusted)
            .collect(),
        now: found.now,
    };
    Ok(findings)
}

// ---------------------------------------------------------------------------------
// Paying, cancelling, expiring
// ---------------------------------------------------------------------------------

/// The text of [`MARK_PAID`], the order row named by `$order` (a parameter, or a subquery
/// that locks it).
macro_rules! mark_paid {
    ($order:literal) => {
        concat!(
            "WITH o AS ( \
         UPDATE orders SET status = '{paid}', paid_at = statement_timestamp(), \
                           updated_at = statement_timestamp() \
         WHERE id = ",
            $order,
            " AND user_id = $2 AND status = '{not_paid}' \
           AND expires_at > statement_timestamp() \
         RETURNING *) \
     SELECT ",
            order_columns!(),
            " FROM o ",
            lines_of_o!()
        )
    };
}

/// Moves the user's order to PAID while it is NOT_PAID and before its deadline, both
/// by the database's clock; returns it as paid, with its lines.
static MARK_PAID: LazyLock<String> = LazyLock::new(|| statuses!(mark_paid!("$1"), paid, not_paid));

/// [`MARK_PAID`] only if no other transaction holds the order (`SKIP LOCKED`): no row
/// either way when it does.
static MARK_PAID_UNHELD: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        mark_paid!("(SELECT id FROM orders WHERE id = $1 FOR UPDATE SKIP LOCKED)"),
        paid,
        not_paid
    )
});

/// The text of [`DEBIT_FOR_ORDER`]: `$taken` a CTE (or nothing) before the debit,
/// `$wallet` the wallet row it debits, `$held` whether that wallet was there to debit.
macro_rules! debit_for_order {
    ($taken:literal, $wallet:literal, $held:literal) => {
        concat!(
            "WITH ",
            $taken,
            "debited AS ( \
        UPDATE point_wallets SET balance = balance - $2, updated_at = $3 \
        WHERE user_id = ",
            $wallet,
            " AND balance >= $2 RETURNING user_id, balance), \
    used AS ( \
        INSERT INTO point_history (user_id, kind, amount, balance_after, order_id, created_at) \
        SELECT user_id, '{use_kind}', $2, balance, $4, $3 FROM debited), \
    event AS ( \
        INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
        SELECT $5, $6, $4, $7::json, $3, $3 FROM debited) \
    SELECT (SELECT balance FROM debited) AS balance, ",
            $held,
            " AS held"
        )
    };
}

/// Debits the wallet if it covers the amount, and with it records the USE history row
/// and the ORDER_PAID event; answers the balance after (NULL when short).
static DEBIT_FOR_ORDER: LazyLock<String> =
    LazyLock::new(|| statuses!(debit_for_order!("", "$1", "true"), use_kind));

/// [`DEBIT_FOR_ORDER`] only if no other transaction holds the wallet (`SKIP LOCKED`), and
/// whether it did.
static DEBIT_UNHELD: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        debit_for_order!(
            "taken AS MATERIALIZED ( \
                 SELECT user_id FROM point_wallets WHERE user_id = $1 FOR UPDATE SKIP LOCKED), ",
            "(SELECT user_id FROM taken)",
            "EXISTS (SELECT 1 FROM taken)"
        ),
        use_kind
    )
});

#[derive(QueryableByName)]
struct Debit {
    /// The balance after; `None` when short (or the wallet was not held).
    #[diesel(sql_type = Nullable<BigInt>)]
    balance: Option<i64>,
    #[diesel(sql_type = Bool)]
    held: bool,
}

/// How a payment takes its order and wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// Waits for them while another transaction holds them.
    Wait,
    /// Only if no other transaction holds them (`SKIP LOCKED`): a payment that must never
    /// wait, as a group's lane must not.
    Unheld,
}

/// Why a payment stopped.
enum Unpaid {
    /// The guarded move to PAID touched nothing.
    NotPayable,
    InsufficientBalance,
    /// Another transaction held the wallet ([`Rows::Unheld`] only).
    WalletHeld,
    /// The key's response could not be stored (its lease was lost): not a refusal.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Unpaid {
    fn from(err: anyhow::Error) -> Self {
        Self::Failed(err)
    }
}

fn pay_tx(
    conn: &mut PgConnection,
    pay: OrderPayment,
    rows: Rows,
) -> Result<Payment, TxError<Unpaid>> {
    let (mark_paid, debit) = match rows {
        Rows::Wait => (&MARK_PAID, &DEBIT_FOR_ORDER),
        Rows::Unheld => (&MARK_PAID_UNHELD, &DEBIT_UNHELD),
    };
    let paid = statement(mark_paid)
        .bind::<BigInt, _>(pay.order_id.get())
        .bind::<BigInt, _>(pay.user_id.get())
        .get_result::<OrderRecord>(conn)
        .optional()?;
    let Some(paid) = paid else {
        return Err(TxError::Domain(Unpaid::NotPayable));
    };
    let order = paid
        .into_stored()
        .map_err(|e| TxError::Db(DieselError::DeserializationError(e.into())))?;
    let paid_at = order
        .paid_at
        .ok_or_else(|| TxError::Db(DieselError::DeserializationError(missing("paid_at").into())))?;
    // Time-ordered (UUIDv7): each event's key goes in at the right edge of the outbox's
    // primary key, where the last ones went, not on a random page of it.
    let event_id = uuid::Uuid::now_v7();
    let event = OrderPaid::new(event_id.to_string(), &order, paid_at)
        .to_json()
        .map_err(|e| TxError::Db(DieselError::SerializationError(e.into())))?;
    let debited = statement(debit)
        .bind::<BigInt, _>(order.user_id.get())
        .bind::<BigInt, _>(order.pay_amount.get())
        .bind::<Timestamptz, _>(paid_at)
        .bind::<BigInt, _>(order.id.get())
        .bind::<SqlUuid, _>(event_id)
        .bind::<Text, _>(OrderPaid::EVENT_TYPE)
        .bind::<Text, _>(event)
        .get_result::<Debit>(conn)?;
    let balance = match debited {
        Debit {
            balance: Some(balance),
            ..
        } => balance,
        Debit { held: false, .. } => return Err(TxError::Domain(Unpaid::WalletHeld)),
        Debit { balance: None, .. } => return Err(TxError::Domain(Unpaid::InsufficientBalance)),
    };
    Ok(Payment {
        order_id: order.id,
        user_id: order.user_id,
        paid_amount: order.pay_amount,
        balance: Balance::from_trusted(balance),
        paid_at,
    })
}

/// One payment in its own transaction (completing its idempotency key, when it has one);
/// on a refusal, the read that names it. One checkout. `None` when, taking only
/// [`Rows::Unheld`], its order or wallet was held elsewhere: nothing changed.
fn pay_one(
    conn: &mut PgConnection,
    pay: OrderPayment,
    completion: Option<&Completion<Payment>>,
    rows: Rows,
) -> Result<Option<Payment>, PayError> {
    match in_tx_completing(conn, completion, |conn| pay_tx(conn, pay, rows)) {
        Ok(payment) => Ok(Some(payment)),
        Err(TxError::Db(err)) => Err(PayError::Unknown(db_error(err))),
        Err(TxError::Domain(Unpaid::Failed(err))) => Err(PayError::Unknown(err)),
        Err(TxError::Domain(Unpaid::InsufficientBalance)) => Err(PayError::InsufficientBalance),
        Err(TxError::Domain(Unpaid::WalletHeld)) => Ok(None),
        Err(TxError::Domain(Unpaid::NotPayable)) => {
            let findings = diagnose_order(conn, pay.user_id, pay.order_id)?;
            match (findings.payable(pay.user_id), rows) {
                (Err(refusal), _) => Err(PayError::Refused(refusal)),
                // Payable as committed, yet not moved: another transaction held it.
                (Ok(()), Rows::Unheld) => Ok(None),
                // Waiting, that cannot happen (an order never returns to NOT_PAID and its
                // deadline never moves); answer safely.
                (Ok(()), Rows::Wait) => Err(PayError::Refused(PayRefusal::NotPayable)),
            }
        }
    }
}

/// [`pay_one`] waiting for its rows: every payment that has a key, or that its group
/// could not decide.
fn pay_alone(
    conn: &mut PgConnection,
    pay: OrderPayment,
    completion: Option<&Completion<Payment>>,
) -> Result<Payment, PayError> {
    pay_one(conn, pay, completion, Rows::Wait)?.ok_or_else(|| {
        PayError::Unknown(anyhow::anyhow!("a waiting payment found its wallet held"))
    })
}

/// One payment of a group. `ticket` tells apart payments that are otherwise equal (one
/// order paid twice at once), so each gets its own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PayKey {
    ticket: u64,
    pay: OrderPayment,
}

/// Numbers the placements and payments of this process, for [`PlaceKey::ticket`] and
/// [`PayKey::ticket`].
static TICKETS: AtomicU64 = AtomicU64::new(0);

/// The payments of a group. Alone: [`pay_one`] taking only [`Rows::Unheld`] (the
/// statements of a payment before grouping, each row taken with `SKIP LOCKED`). Together, in one
/// transaction whatever their number (`BEGIN`, [`TAKE_PAYABLE`], [`PAY_SETTLED`],
/// `COMMIT`): the orders and wallets nobody else holds are taken, the domain's
/// [`Settlement`] decides each payment in arrival order against them, and one statement
/// writes every payment it made. A member it leaves undecided (its order or wallet held
/// elsewhere, not NOT_PAID, or another user's) gets no answer and goes alone.
fn payments_of(pool: PgPool) -> Fetch<PayKey, Result<Payment, PaymentDenied>> {
    grouped_writes(
        pool,
        |conn, one: &PayKey| match pay_one(conn, one.pay, None, Rows::Unheld) {
            Ok(payment) => Ok(payment.map(Ok)),
            Err(PayError::Refused(refusal)) => Ok(Some(Err(PaymentDenied::Refused(refusal)))),
            Err(PayError::InsufficientBalance) => Ok(Some(Err(PaymentDenied::InsufficientBalance))),
            Err(PayError::Unknown(err)) => Err(err),
        },
        settle,
    )
}

/// Takes the NOT_PAID orders among `$1` that no other transaction holds (`SKIP LOCKED`:
/// a group never waits for a row, so groups cannot deadlock, and a row held elsewhere
/// delays no payment but its own), and their owners' wallets likewise: each taken order
/// with its lines, its owner's balance (NULL when the wallet was not taken), and the
/// database's time, which decides expiry and stamps the payments.
static TAKE_PAYABLE: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        concat!(
            "WITH taken AS MATERIALIZED ( \
         SELECT * FROM orders WHERE id = ANY($1) AND status = '{not_paid}' \
         ORDER BY id FOR UPDATE SKIP LOCKED), \
     wallets AS MATERIALIZED ( \
         SELECT user_id, balance FROM point_wallets \
         WHERE user_id IN (SELECT user_id FROM taken) \
         ORDER BY user_id FOR UPDATE SKIP LOCKED) \
     SELECT ",
            order_columns!(),
            ", w.balance AS wallet_balance, statement_timestamp() AS now \
     FROM taken o LEFT JOIN wallets w ON w.user_id = o.user_id ",
            lines_of_o!()
        ),
        not_paid
    )
});

#[derive(QueryableByName)]
struct Payable {
    #[diesel(embed)]
    order: OrderRecord,
    #[diesel(sql_type = Nullable<BigInt>)]
    wallet_balance: Option<i64>,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

/// Writes the payments a [`Settlement`] made, each given as its order, owner, amount, the
/// owner's balance after it (in the group's order), its event's id and JSON: every order to
/// PAID, each wallet debited by its payments' sum, a USE history row and an ORDER_PAID event
/// per payment, all stamped `$7`. The history rows and events take their order and user
/// from the rows this statement updated. Answers how many orders and wallets it updated.
static PAY_SETTLED: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        "\
    WITH paying AS ( \
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
                             $5::uuid[], $6::text[]) \
            AS p (order_id, user_id, amount, balance_after, event_id, payload)), \
    paid AS ( \
        UPDATE orders o SET status = '{paid}', paid_at = $7, updated_at = $7 \
        FROM paying p \
        WHERE o.id = p.order_id AND o.user_id = p.user_id AND o.status = '{not_paid}' \
        RETURNING o.id), \
    debits AS ( \
        SELECT user_id, sum(amount)::bigint AS amount, min(balance_after) AS balance_after \
        FROM paying GROUP BY user_id), \
    debited AS ( \
        UPDATE point_wallets w SET balance = w.balance - d.amount, updated_at = $7 \
        FROM debits d \
        WHERE w.user_id = d.user_id AND w.balance - d.amount = d.balance_after \
        RETURNING w.user_id), \
    used AS ( \
        INSERT INTO point_history (user_id, kind, amount, balance_after, order_id, created_at) \
        SELECT d.user_id, '{use_kind}', p.amount, p.balance_after, o.id, $7 \
        FROM paying p JOIN paid o ON o.id = p.order_id JOIN debited d ON d.user_id = p.user_id), \
    event AS ( \
        INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
        SELECT p.event_id, $8, o.id, p.payload::json, $7, $7 \
        FROM paying p JOIN paid o ON o.id = p.order_id JOIN debited d ON d.user_id = p.user_id) \
    SELECT (SELECT count(*) FROM paid) AS paid, (SELECT count(*) FROM debited) AS debited",
        paid,
        not_paid,
        use_kind
    )
});

#[derive(QueryableByName)]
struct SettledCounts {
    #[diesel(sql_type = BigInt)]
    paid: i64,
    #[diesel(sql_type = BigInt)]
    debited: i64,
}

/// The columns of [`PAY_SETTLED`], one entry per payment made.
#[derive(Default)]
struct Paying {
    order_ids: Vec<i64>,
    user_ids: Vec<i64>,
    amounts: Vec<i64>,
    balances_after: Vec<i64>,
    event_ids: Vec<uuid::Uuid>,
    payloads: Vec<String>,
}

/// A group's payments, in the transaction the caller opened: answers every member the
/// [`Settlement`] decided.
fn settle(
    conn: &mut PgConnection,
    payments: &[PayKey],
) -> GroupAnswers<PayKey, Result<Payment, PaymentDenied>> {
    let order_ids: Vec<i64> = payments.iter().map(|k| k.pay.order_id.get()).collect();
    let taken = statement(&TAKE_PAYABLE)
        .bind::<Array<BigInt>, _>(order_ids)
        .load::<Payable>(conn)?;
    let Some(now) = taken.first().map(|row| row.now) else {
        return Ok(HashMap::new());
    };
    let mut orders = Vec::with_capacity(taken.len());
    let mut wallets = Vec::with_capacity(taken.len());
    for row in taken {
        let order = row.order.into_stored().map_err(TxError::Domain)?;
        if let Some(balance) = row.wallet_balance {
            wallets.push((order.user_id, Balance::from_trusted(balance)));
        }
        orders.push(order);
    }
    let mut settlement = Settlement::new(now, orders, wallets);
    let mut answers = HashMap::with_capacity(payments.len());
    let mut paying = Paying::default();
    for key in payments {
        let Some(decided) = settlement.pay(key.pay) else {
            continue;
        };
        let answer = match decided {
            Ok(Settled { order, payment }) => {
                // Time-ordered (UUIDv7), as a payment alone makes it.
                let event_id = uuid::Uuid::now_v7();
                let event = OrderPaid::new(event_id.to_string(), &order, now)
                    .to_json()
                    .map_err(|e| TxError::Domain(anyhow::Error::new(e)))?;
                paying.order_ids.push(order.id.get());
                paying.user_ids.push(order.user_id.get());
                paying.amounts.push(order.pay_amount.get());
                paying.balances_after.push(payment.balance.get());
                paying.event_ids.push(event_id);
                paying.payloads.push(event);
                Ok(payment)
            }
            Err(denied) => Err(denied),
        };
        answers.insert(*key, answer);
    }
    if paying.order_ids.is_empty() {
        return Ok(answers);
    }
    let (orders_paid, users) = (
        paying.order_ids.len(),
        paying.user_ids.iter().collect::<HashSet<_>>().len(),
    );
    let written = statement(&PAY_SETTLED)
        .bind::<Array<BigInt>, _>(paying.order_ids)
        .bind::<Array<BigInt>, _>(paying.user_ids)
        .bind::<Array<BigInt>, _>(paying.amounts)
        .bind::<Array<BigInt>, _>(paying.balances_after)
        .bind::<Array<SqlUuid>, _>(paying.event_ids)
        .bind::<Array<Text>, _>(paying.payloads)
        .bind::<Timestamptz, _>(now)
        .bind::<Text, _>(OrderPaid::EVENT_TYPE)
        .get_result::<SettledCounts>(conn)?;
    // The rows were taken for this transaction, so the writes match what was read; if
    // they ever did not, nothing is kept.
    if usize::try_from(written.paid).ok() != Some(orders_paid)
        || usize::try_from(written.debited).ok() != Some(users)
    {
        return Err(TxError::Domain(anyhow::anyhow!(
            "a settled group wrote {} of {orders_paid} payments and {} of {users} wallets",
            written.paid,
            written.debited
        )));
    }
    Ok(answers)
}

/// Cancels the user's order while it is NOT_PAID and puts back what it held, in one
/// statement; returns it as cancelled, with its lines.
static CANCEL: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        concat!(
            "WITH left_unpaid AS ( \
         UPDATE orders SET status = '{cancelled}', updated_at = statement_timestamp() \
         WHERE id = $1 AND user_id = $2 AND status = '{not_paid}' \
         RETURNING *), ",
            restore_effects!(),
            " SELECT ",
            order_columns!(),
            " FROM left_unpaid o ",
            lines_of_o!()
        ),
        cancelled,
        not_paid,
        available
    )
});

/// Expires up to `$1` due orders (skipping any a payment or cancel holds right now)
/// and puts back what they held, in one statement.
static EXPIRE_DUE: LazyLock<String> = LazyLock::new(|| {
    statuses!(
        concat!(
            "WITH due AS ( \
         SELECT id FROM orders \
         WHERE status = '{not_paid}' AND expires_at <= statement_timestamp() \
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED), \
     left_unpaid AS ( \
         UPDATE orders o SET status = '{expired}', updated_at = statement_timestamp() \
         FROM due WHERE o.id = due.id AND o.status = '{not_paid}' \
         RETURNING o.id, o.user_coupon_id), ",
            restore_effects!(),
            " SELECT count(*) AS expired FROM left_unpaid"
        ),
        not_paid,
        expired,
        available
    )
});

#[derive(QueryableByName)]
struct Expired {
    #[diesel(sql_type = BigInt)]
    expired: i64,
}

/// Reads why a payment or cancel of order `$2` by user `$1` changed nothing.
const DIAGNOSE_ORDER: &str = "\
    SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists, \
           o.user_id AS owner, o.status, o.expires_at, statement_timestamp() AS now \
    FROM (SELECT 1) AS one LEFT JOIN orders o ON o.id = $2";

#[derive(QueryableByName)]
struct OrderDiagnosis {
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    owner: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

fn diagnose_order(
    conn: &mut PgConnection,
    user: UserId,
    id: OrderId,
) -> anyhow::Result<OrderFindings> {
    let found: OrderDiagnosis = statement(DIAGNOSE_ORDER)
        .bind::<BigInt, _>(user.get())
        .bind::<BigInt, _>(id.get())
        .get_result(conn)
        .map_err(db_error)?;
    let order = match (found.owner, found.status, found.expires_at) {
        (Some(owner), Some(status), Some(expires_at)) => Some(FoundOrder {
            owner: UserId::from_trusted(owner),
            status: OrderStatus::parse(&status)?,
            expires_at,
        }),
        _ => None,
    };
    Ok(OrderFindings {
        user_exists: found.user_exists,
        order,
        now: found.now,
    })
}

// ---------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------

/// [`FIND_MANY`] for one pair (user `$1`, order `$2`), the statement of a read alone.
const FIND: &str = concat!(
    "SELECT $1::bigint AS key_user, $2::bigint AS key_order, \
            EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists, ",
    order_columns!(),
    " FROM (SELECT 1) AS one \
      LEFT JOIN orders o ON o.id = $2 AND o.user_id = $1 ",
    lines_of_o!()
);

/// For each pair of user `$1[i]` and order `$2[i]`: the pair, whether the user exists, and
/// the order when it is that user's, in one statement.
const FIND_MANY: &str = concat!(
    "SELECT k.user_id AS key_user, k.order_id AS key_order, \
            EXISTS (SELECT 1 FROM users WHERE id = k.user_id) AS user_exists, ",
    order_columns!(),
    " FROM unnest($1::bigint[], $2::bigint[]) AS k (user_id, order_id) \
      LEFT JOIN orders o ON o.id = k.order_id AND o.user_id = k.user_id ",
    lines_of_o!()
);

/// One page of the user's orders, newest first, with their count and whether the user
/// exists, in one statement (an empty page still carries the count).
const PAGE_OF_USER: &str = concat!(
    "SELECT c.user_exists, c.total_count, ",
    order_columns!(),
    " FROM (SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists, \
                  (SELECT count(*) FROM orders WHERE user_id = $1) AS total_count) c \
      LEFT JOIN LATERAL ( \
          SELECT * FROM orders WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3) o \
      ON true ",
    lines_of_o!(),
    " ORDER BY o.id DESC"
);

#[derive(QueryableByName)]
struct Keyed {
    #[diesel(sql_type = BigInt)]
    key_user: i64,
    #[diesel(sql_type = BigInt)]
    key_order: i64,
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(embed)]
    order: OrderRecord,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(sql_type = BigInt)]
    total_count: i64,
    #[diesel(embed)]
    order: OrderRecord,
}

/// Expects `result` to have a row; the statement always returns one.
fn the_row<T>(rows: Vec<T>) -> anyhow::Result<Vec<T>> {
    if rows.is_empty() {
        Err(anyhow::anyhow!("the statement returned no row"))
    } else {
        Ok(rows)
    }
}

#[async_trait]
impl OrderStore for PgOrderStore {
    #[tracing::instrument(name = "pg.orders.place", skip_all, fields(user_id = %order.user_id))]
    async fn place(
        &self,
        order: OrderPlacement,
        completion: Option<Completion<Order>>,
    ) -> Result<Order, PlaceError> {
        let order = Arc::new(order);
        if completion.is_none() {
            let key = PlaceKey {
                ticket: TICKETS.fetch_add(1, Ordering::Relaxed),
                order: Arc::clone(&order),
            };
            if let Some(answer) = self.placements.get(key).await? {
                return answer.map_err(PlaceError::Refused);
            }
            // Its group could not decide it (it names a user, product or coupon that
            // does not exist): alone, which names the refusal.
        }
        run(&self.pool, move |conn| {
            place_one(conn, &order, completion.as_ref())
        })
        .await
    }

    #[tracing::instrument(name = "pg.orders.find", skip_all, fields(order_id = %id))]
    async fn find(&self, user: UserId, id: OrderId) -> anyhow::Result<ForUser<Option<Order>>> {
        self.orders
            .get((user.get(), id.get()))
            .await?
            .ok_or_else(|| anyhow::anyhow!("order {id}: no row for its read"))
    }

    #[tracing::instrument(name = "pg.orders.of_user", skip_all, fields(user_id = %user))]
    async fn of_user(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> anyhow::Result<ForUser<Page<Order>>> {
        run(&self.pool, move |conn| {
            let rows = statement(PAGE_OF_USER)
                .bind::<BigInt, _>(user.get())
                .bind::<BigInt, _>(page.offset())
                .bind::<BigInt, _>(page.limit())
                .load::<Counted>(conn)
                .map_err(db_error)?;
            let rows = the_row(rows)?;
            let (user_exists, total_count) = rows
                .first()
                .map_or((false, 0), |r| (r.user_exists, r.total_count));
            if !user_exists {
                return Ok(ForUser::UnknownUser);
            }
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(order) = row.order.into_order()? {
                    items.push(order);
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

    #[tracing::instrument(name = "pg.orders.cancel", skip_all, fields(order_id = %id))]
    async fn cancel(&self, user: UserId, id: OrderId) -> Result<Order, CancelError> {
        run(&self.pool, move |conn| {
            let cancelled = retrying(conn, |conn| {
                statement(&CANCEL)
                    .bind::<BigInt, _>(id.get())
                    .bind::<BigInt, _>(user.get())
                    .get_result::<OrderRecord>(conn)
                    .optional()
            })
            .map_err(db_error)?;
            match cancelled {
                Some(order) => Ok(order.into_stored()?),
                None => Err(CancelError::Refused(
                    diagnose_order(conn, user, id)?.cancel_refusal(user),
                )),
            }
        })
        .await
    }

    #[tracing::instrument(name = "pg.orders.expire_due", skip_all)]
    async fn expire_due(&self, limit: i64) -> anyhow::Result<u64> {
        run(&self.pool, move |conn| {
            let expired = retrying(conn, |conn| {
                statement(&EXPIRE_DUE)
                    .bind::<BigInt, _>(limit)
                    .get_result::<Expired>(conn)
            })
            .map_err(db_error)?;
            Ok(expired.expired.unsigned_abs())
        })
        .await
    }

    #[tracing::instrument(name = "pg.orders.next_expiry", skip_all)]
    async fn next_expiry(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        use crate::schema::orders;
        run(&self.pool, move |conn| {
            orders::table
                .filter(orders::status.eq(OrderStatus::NotPaid.as_str()))
                .select(diesel::dsl::min(orders::expires_at))
                .get_result::<Option<DateTime<Utc>>>(conn)
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.orders.pay", skip_all, fields(order_id = %pay.order_id))]
    async fn pay(
        &self,
        pay: OrderPayment,
        completion: Option<Completion<Payment>>,
    ) -> Result<Payment, PayError> {
        if completion.is_none() {
            let key = PayKey {
                ticket: TICKETS.fetch_add(1, Ordering::Relaxed),
                pay,
            };
            if let Some(answer) = self.payments.get(key).await? {
                return answer.map_err(PayError::from);
            }
            // Its group could not decide it (its order or wallet held elsewhere, or a
            // refusal only the diagnosing read can name): alone, waiting for its rows.
        }
        run(&self.pool, move |conn| {
            pay_alone(conn, pay, completion.as_ref())
        })
        .await
    }
}

//! [`OrderStore`] on PostgreSQL.
//!
//! Lock order, the same in every transaction, so they cannot deadlock: an order row,
//! then product rows in ascending id, then the user coupon, then the wallet.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use domain::idempotency::Completion;
use domain::order::{
    Order, OrderLine, OrderPlan, OrderQuantity, OrderStatus, Payment, PaymentPlan,
};
use domain::points::{Balance, PointKind};
use domain::ports::{CancelError, OrderStore, PayError, PlaceError};
use domain::product::{Price, ProductName};
use domain::{OrderId, Page, PageRequest, ProductId, UserCouponId, UserId};

use crate::error::{TxError, db_error};
use crate::idempotency::transact_idempotent;
use crate::pool::{PgPool, run};
use crate::schema::{order_lines, orders, point_history, point_wallets, products, user_coupons};

/// Orders in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOrderStore {
    pool: PgPool,
}

impl PgOrderStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRow {
    id: i64,
    user_id: i64,
    status: String,
    total_amount: i64,
    discount_amount: i64,
    pay_amount: i64,
    user_coupon_id: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
}

#[derive(Queryable)]
struct LineRow {
    order_id: i64,
    product_id: i64,
    product_name: String,
    unit_price: i64,
    quantity: i64,
    amount: i64,
}

impl LineRow {
    fn into_line(self) -> anyhow::Result<OrderLine> {
        Ok(OrderLine {
            product_id: ProductId::from_trusted(self.product_id),
            product_name: ProductName::from_trusted(self.product_name),
            unit_price: Price::from_trusted(self.unit_price),
            quantity: OrderQuantity::new(self.quantity)
                .map_err(|e| anyhow::anyhow!("stored order line has {e}"))?,
            amount: self.amount,
        })
    }
}

fn assemble(row: OrderRow, lines: Vec<OrderLine>) -> anyhow::Result<Order> {
    Ok(Order {
        id: OrderId::from_trusted(row.id),
        user_id: UserId::from_trusted(row.user_id),
        status: OrderStatus::parse(&row.status)
            .ok_or_else(|| anyhow::anyhow!("unknown order status {:?}", row.status))?,
        lines,
        total_amount: row.total_amount,
        discount_amount: row.discount_amount,
        pay_amount: row.pay_amount,
        user_coupon_id: row.user_coupon_id.map(UserCouponId::from_trusted),
        created_at: row.created_at,
        expires_at: row.expires_at,
        paid_at: row.paid_at,
    })
}

fn lines_of(conn: &mut PgConnection, ids: &[i64]) -> QueryResult<Vec<LineRow>> {
    order_lines::table
        .filter(order_lines::order_id.eq_any(ids))
        .order((order_lines::order_id, order_lines::product_id))
        .select((
            order_lines::order_id,
            order_lines::product_id,
            order_lines::product_name,
            order_lines::unit_price,
            order_lines::quantity,
            order_lines::amount,
        ))
        .load(conn)
}

fn load_orders(conn: &mut PgConnection, rows: Vec<OrderRow>) -> anyhow::Result<Vec<Order>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut lines = lines_of(conn, &ids).map_err(db_error)?;
    rows.into_iter()
        .map(|row| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                lines.drain(..).partition(|l| l.order_id == row.id);
            lines = rest;
            let mine = mine
                .into_iter()
                .map(LineRow::into_line)
                .collect::<anyhow::Result<_>>()?;
            assemble(row, mine)
        })
        .collect()
}

fn find_order(conn: &mut PgConnection, id: i64) -> anyhow::Result<Option<Order>> {
    let row = orders::table
        .find(id)
        .select(OrderRow::as_select())
        .first::<OrderRow>(conn)
        .optional()
        .map_err(db_error)?;
    Ok(load_orders(conn, row.into_iter().collect())?.pop())
}

fn place_tx(conn: &mut PgConnection, plan: OrderPlan) -> Result<Order, TxError<PlaceError>> {
    let now = plan.created_at;
    // Lines are in product order (OrderItems sorts them): rows are locked in that order.
    for line in &plan.lines {
        let deducted = diesel::update(
            products::table
                .find(line.product_id.get())
                .filter(products::stock.ge(line.quantity.get())),
        )
        .set((
            products::stock.eq(products::stock - line.quantity.get()),
            products::updated_at.eq(now),
        ))
        .execute(conn)?;
        if deducted == 0 {
            return Err(TxError::Domain(PlaceError::OutOfStock(line.product_id)));
        }
    }
    if let Some(coupon) = &plan.coupon {
        let used = diesel::update(
            user_coupons::table
                .find(coupon.id.get())
                .filter(user_coupons::user_id.eq(plan.user_id.get()))
                .filter(user_coupons::status.eq("AVAILABLE"))
                .filter(user_coupons::expires_at.gt(now)),
        )
        .set((
            user_coupons::status.eq("USED"),
            user_coupons::used_at.eq(now),
        ))
        .execute(conn)?;
        if used == 0 {
            return Err(TxError::Domain(PlaceError::CouponNotUsable));
        }
    }
    let id: i64 = diesel::insert_into(orders::table)
        .values((
            orders::user_id.eq(plan.user_id.get()),
            orders::status.eq(OrderStatus::NotPaid.as_str()),
            orders::total_amount.eq(plan.total_amount),
            orders::discount_amount.eq(plan.discount_amount),
            orders::pay_amount.eq(plan.pay_amount),
            orders::user_coupon_id.eq(plan.coupon.map(|c| c.id.get())),
            orders::created_at.eq(now),
            orders::expires_at.eq(plan.expires_at),
            orders::updated_at.eq(now),
        ))
        .returning(orders::id)
        .get_result(conn)?;
    let rows: Vec<_> = plan
        .lines
        .iter()
        .map(|l| {
            (
                order_lines::order_id.eq(id),
                order_lines::product_id.eq(l.product_id.get()),
                order_lines::product_name.eq(l.product_name.as_str()),
                order_lines::unit_price.eq(l.unit_price.get()),
                order_lines::quantity.eq(l.quantity.get()),
                order_lines::amount.eq(l.amount),
            )
        })
        .collect();
    diesel::insert_into(order_lines::table)
        .values(&rows)
        .execute(conn)?;
    let stored = find_order(conn, id).map_err(|e| TxError::Domain(PlaceError::Unknown(e)))?;
    stored.ok_or_else(|| TxError::Domain(PlaceError::Unknown(anyhow::anyhow!("order vanished"))))
}

fn cancel_tx(
    conn: &mut PgConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Order, TxError<CancelError>> {
    let coupon: Option<Option<i64>> = diesel::update(
        orders::table
            .find(id)
            .filter(orders::status.eq(OrderStatus::NotPaid.as_str())),
    )
    .set((
        orders::status.eq(OrderStatus::Cancelled.as_str()),
        orders::updated_at.eq(now),
    ))
    .returning(orders::user_coupon_id)
    .get_result(conn)
    .optional()?;
    let Some(coupon) = coupon else {
        return Err(TxError::Domain(CancelError::NotCancellable));
    };
    release_order_effects(conn, &[id], &coupon.into_iter().collect::<Vec<_>>(), now)?;
    find_order(conn, id)
        .map_err(|e| TxError::Domain(CancelError::Unknown(e)))?
        .ok_or_else(|| TxError::Domain(CancelError::Unknown(anyhow::anyhow!("order vanished"))))
}

/// Puts the stock of `orders` back and makes their coupons available again. Called
/// once, right after the orders' own guarded move out of NOT_PAID, in that transaction.
/// Stock is restored per product in ascending id, the order every transaction locks
/// product rows in.
fn release_order_effects(
    conn: &mut PgConnection,
    orders: &[i64],
    coupons: &[i64],
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let lines: Vec<(i64, i64)> = order_lines::table
        .filter(order_lines::order_id.eq_any(orders))
        .order(order_lines::product_id)
        .select((order_lines::product_id, order_lines::quantity))
        .load(conn)?;
    let mut per_product: Vec<(i64, i64)> = Vec::new();
    for (product, quantity) in lines {
        match per_product.last_mut() {
            Some((last, total)) if *last == product => *total += quantity,
            _ => per_product.push((product, quantity)),
        }
    }
    for (product, quantity) in per_product {
        diesel::update(products::table.find(product))
            .set((
                products::stock.eq(products::stock + quantity),
                products::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    if !coupons.is_empty() {
        diesel::update(user_coupons::table.filter(user_coupons::id.eq_any(coupons)))
            .set((
                user_coupons::status.eq("AVAILABLE"),
                user_coupons::used_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

fn expire_tx(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> QueryResult<u64> {
    // Lock due orders in id order, skipping any a payment or cancel holds right now.
    let due: Vec<(i64, Option<i64>)> = orders::table
        .filter(orders::status.eq(OrderStatus::NotPaid.as_str()))
        .filter(orders::expires_at.le(now))
        .order(orders::id)
        .limit(limit)
        .select((orders::id, orders::user_coupon_id))
        .for_update()
        .skip_locked()
        .load(conn)?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = due.iter().map(|(id, _)| *id).collect();
    let coupons: Vec<i64> = due.iter().filter_map(|(_, c)| *c).collect();
    let expired = diesel::update(
        orders::table
            .filter(orders::id.eq_any(&ids))
            .filter(orders::status.eq(OrderStatus::NotPaid.as_str())),
    )
    .set((
        orders::status.eq(OrderStatus::Expired.as_str()),
        orders::updated_at.eq(now),
    ))
    .execute(conn)?;
    release_order_effects(conn, &ids, &coupons, now)?;
    Ok(expired as u64)
}

fn pay_tx(conn: &mut PgConnection, plan: &PaymentPlan) -> Result<Payment, TxError<PayError>> {
    let (order, user, now) = (plan.order_id.get(), plan.user_id.get(), plan.now);
    let amount: Option<i64> = diesel::update(
        orders::table
            .find(order)
            .filter(orders::user_id.eq(user))
            .filter(orders::status.eq(OrderStatus::NotPaid.as_str()))
            .filter(orders::expires_at.gt(now)),
    )
    .set((
        orders::status.eq(OrderStatus::Paid.as_str()),
        orders::paid_at.eq(now),
        orders::updated_at.eq(now),
    ))
    .returning(orders::pay_amount)
    .get_result(conn)
    .optional()?;
    let Some(amount) = amount else {
        // Someone else moved it first (a payment, a cancel, the expiry): say which.
        let current = find_order(conn, order).map_err(|e| TxError::Domain(PayError::Unknown(e)))?;
        let refusal = current
            .and_then(|o| o.check_payable(now).err())
            .unwrap_or(domain::order::PayRefusal::NotPayable);
        return Err(TxError::Domain(PayError::Refused(refusal)));
    };
    let balance: Option<i64> = diesel::update(
        point_wallets::table
            .find(user)
            .filter(point_wallets::balance.ge(amount)),
    )
    .set((
        point_wallets::balance.eq(point_wallets::balance - amount),
        point_wallets::updated_at.eq(now),
    ))
    .returning(point_wallets::balance)
    .get_result(conn)
    .optional()?;
    let Some(balance) = balance else {
        return Err(TxError::Domain(PayError::InsufficientBalance));
    };
    diesel::insert_into(point_history::table)
        .values((
            point_history::user_id.eq(user),
            point_history::kind.eq(PointKind::Use.as_str()),
            point_history::amount.eq(amount),
            point_history::balance_after.eq(balance),
            point_history::order_id.eq(Some(order)),
            point_history::created_at.eq(now),
        ))
        .execute(conn)?;
    write_order_paid_event(conn, order, now)?;
    Ok(Payment {
        order_id: plan.order_id,
        user_id: plan.user_id,
        paid_amount: amount,
        balance: Balance::from_trusted(balance),
        paid_at: now,
    })
}

/// The ORDER_PAID event (API.md's data-platform body) into the transactional outbox.
fn write_order_paid_event(
    conn: &mut PgConnection,
    order: i64,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let event_id = uuid::Uuid::new_v4();
    diesel::sql_query(
        "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
         SELECT $1, 'ORDER_PAID', o.id, jsonb_build_object( \
             'eventId', $1::text, 'eventType', 'ORDER_PAID', \
             'occurredAt', to_char($2 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             'order', jsonb_build_object( \
                 'orderId', o.id, 'userId', o.user_id, \
                 'items', (SELECT jsonb_agg(jsonb_build_object('productId', l.product_id, 'quantity', l.quantity, \
                                   'unitPrice', l.unit_price, 'amount', l.amount) ORDER BY l.product_id) \
                           FROM order_lines l WHERE l.order_id = o.id), \
                 'totalAmount', o.total_amount, 'discountAmount', o.discount_amount, \
                 'payAmount', o.pay_amount, \
                 'paidAt', to_char(o.paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))), \
             $2, $2 \
         FROM orders o WHERE o.id = $3",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(order)
    .execute(conn)
    .map(drop)
}

#[async_trait]
impl OrderStore for PgOrderStore {
    #[tracing::instrument(name = "pg.orders.place", skip_all, fields(user_id = %plan.user_id))]
    async fn place(
        &self,
        plan: OrderPlan,
        completion: Option<Completion<Order>>,
    ) -> Result<Order, PlaceError> {
        transact_idempotent(&self.pool, completion, move |conn| place_tx(conn, plan)).await
    }

    #[tracing::instrument(name = "pg.orders.find", skip_all, fields(order_id = %id))]
    async fn find(&self, id: OrderId) -> anyhow::Result<Option<Order>> {
        run(&self.pool, move |conn| find_order(conn, id.get())).await
    }

    #[tracing::instrument(name = "pg.orders.of_user", skip_all, fields(user_id = %user))]
    async fn of_user(&self, user: UserId, page: PageRequest) -> anyhow::Result<Page<Order>> {
        run(&self.pool, move |conn| {
            let mine = orders::table.filter(orders::user_id.eq(user.get()));
            let total_count: i64 = mine.count().get_result(conn).map_err(db_error)?;
            let rows: Vec<OrderRow> = mine
                .select(OrderRow::as_select())
                .order(orders::id.desc())
                .offset(page.offset())
                .limit(page.limit())
                .load(conn)
                .map_err(db_error)?;
            Ok(Page {
                items: load_orders(conn, rows)?,
                request: page,
                total_count,
            })
        })
        .await
    }

    #[tracing::instrument(name = "pg.orders.cancel", skip_all, fields(order_id = %id))]
    async fn cancel(&self, id: OrderId, now: DateTime<Utc>) -> Result<Order, CancelError> {
        run(&self.pool, move |conn| {
            conn.transaction(|conn| cancel_tx(conn, id.get(), now))
                .map_err(TxError::into_domain)
        })
        .await
    }

    #[tracing::instrument(name = "pg.orders.expire_due", skip_all)]
    async fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> anyhow::Result<u64> {
        run(&self.pool, move |conn| {
            conn.transaction(|conn| expire_tx(conn, now, limit))
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.orders.pay", skip_all, fields(order_id = %plan.order_id))]
    async fn pay(
        &self,
        plan: PaymentPlan,
        completion: Option<Completion<Payment>>,
    ) -> Result<Payment, PayError> {
        transact_idempotent(&self.pool, completion, move |conn| pay_tx(conn, &plan)).await
    }
}

//! [`SalesStore`] on PostgreSQL. Business days are computed by PostgreSQL from the IANA
//! zone name (`AT TIME ZONE`), which also validates the name.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text, Timestamptz};
use domain::ProductId;
use domain::order::OrderStatus;
use domain::ports::SalesStore;
use domain::product::{Price, ProductName, Stock};
use domain::sales::{BestSeller, SalesWindow};

use crate::error::db_error;
use crate::pool::{PgPool, run};
use crate::retry::retrying;
use crate::statement::statement;

/// Sales statistics in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSalesStore {
    pool: PgPool,
}

impl PgSalesStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Rolls paid orders up into `daily_product_sales` from business day `$2` in zone `$1`,
/// stamped `$3`. Recomputed from the orders, so a rerun replaces rather than adds. Paid
/// orders never leave PAID, so a day's quantity only ever grows. Rows are upserted (and so
/// locked) in key order whatever plan groups them: instances rolling up at the same time
/// wait for each other instead of deadlocking. The PAID status's stored name is spliced
/// in from [`OrderStatus::as_str`] once, as a literal (the planner can then use the
/// partial index on paid orders in every plan).
static ROLL_UP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "\
    INSERT INTO daily_product_sales (business_date, product_id, quantity, updated_at) \
    SELECT (o.paid_at AT TIME ZONE $1)::date, l.product_id, SUM(l.quantity)::BIGINT, $3 \
    FROM orders o JOIN order_lines l ON l.order_id = o.id \
    WHERE o.status = '{paid}' AND o.paid_at >= ($2::timestamp AT TIME ZONE $1) \
    GROUP BY 1, 2 ORDER BY 1, 2 \
    ON CONFLICT (business_date, product_id) \
    DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = EXCLUDED.updated_at",
        paid = OrderStatus::Paid.as_str()
    )
});

#[derive(QueryableByName)]
struct Today {
    #[diesel(sql_type = Date)]
    today: NaiveDate,
}

#[derive(QueryableByName)]
struct Ranked {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = BigInt)]
    stock: i64,
    #[diesel(sql_type = BigInt)]
    sold: i64,
}

#[async_trait]
impl SalesStore for PgSalesStore {
    async fn business_today(&self, timezone: String) -> anyhow::Result<NaiveDate> {
        run(&self.pool, move |conn| {
            statement("SELECT (now() AT TIME ZONE $1)::date AS today")
                .bind::<Text, _>(&timezone)
                .get_result::<Today>(conn)
                .map(|t| t.today)
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.sales.roll_up", skip_all)]
    async fn roll_up(
        &self,
        timezone: String,
        from: NaiveDate,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        run(&self.pool, move |conn| {
            retrying(conn, |conn| {
                statement(&ROLL_UP)
                    .bind::<Text, _>(&timezone)
                    .bind::<Date, _>(from)
                    .bind::<Timestamptz, _>(now)
                    .execute(conn)
            })
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.sales.top", skip_all)]
    async fn top(&self, window: SalesWindow, limit: i64) -> anyhow::Result<Vec<BestSeller>> {
        run(&self.pool, move |conn| {
            let rows: Vec<Ranked> = statement(
                "SELECT p.id, p.name, p.price, p.stock, SUM(d.quantity)::BIGINT AS sold \
                 FROM daily_product_sales d JOIN products p ON p.id = d.product_id \
                 WHERE d.business_date BETWEEN $1 AND $2 \
                 GROUP BY p.id HAVING SUM(d.quantity) > 0 \
                 ORDER BY sold DESC, p.id ASC LIMIT $3",
            )
            .bind::<Date, _>(window.from)
            .bind::<Date, _>(window.to)
            .bind::<BigInt, _>(limit)
            .load(conn)
            .map_err(db_error)?;
            Ok(rows
                .into_iter()
                .map(|r| BestSeller {
                    product_id: ProductId::from_trusted(r.id),
                    name: ProductName::from_trusted(r.name),
                    price: Price::from_trusted(r.price),
                    stock: Stock::from_trusted(r.stock),
                    sales_quantity: r.sold,
                })
                .collect())
        })
        .await
    }
}

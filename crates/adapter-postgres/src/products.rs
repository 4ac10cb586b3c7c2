//! [`ProductRepository`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use domain::ports::{ProductRepository, RestockError};
use domain::product::{
    Description, NewProduct, Price, Product, ProductName, ProductPatch, Restock, Stock,
};
use domain::{Page, PageRequest, ProductId};

use crate::error::db_error;
use crate::pool::{PgPool, run};
use crate::schema::products;

/// The catalogue in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgProductRepository {
    pool: PgPool,
}

impl PgProductRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = products)]
pub(crate) struct ProductRow {
    id: i64,
    name: String,
    description: String,
    price: i64,
    stock: i64,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: ProductId::from_trusted(row.id),
            name: ProductName::from_trusted(row.name),
            description: Description::from_trusted(row.description),
            price: Price::from_trusted(row.price),
            stock: Stock::from_trusted(row.stock),
        }
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = products)]
struct ProductChanges<'a> {
    name: Option<&'a str>,
    description: Option<&'a str>,
    price: Option<i64>,
    updated_at: DateTime<Utc>,
}

#[async_trait]
impl ProductRepository for PgProductRepository {
    #[tracing::instrument(name = "pg.products.create", skip_all)]
    async fn create(&self, product: NewProduct, now: DateTime<Utc>) -> anyhow::Result<Product> {
        run(&self.pool, move |conn| {
            diesel::insert_into(products::table)
                .values((
                    products::name.eq(product.name.as_str()),
                    products::description.eq(product.description.as_str()),
                    products::price.eq(product.price.get()),
                    products::stock.eq(product.stock.get()),
                    products::created_at.eq(now),
                    products::updated_at.eq(now),
                ))
                .returning(ProductRow::as_returning())
                .get_result::<ProductRow>(conn)
                .map(Product::from)
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.products.find", skip_all, fields(product_id = %id))]
    async fn find(&self, id: ProductId) -> anyhow::Result<Option<Product>> {
        run(&self.pool, move |conn| {
            products::table
                .find(id.get())
                .select(ProductRow::as_select())
                .first::<ProductRow>(conn)
                .optional()
                .map(|row| row.map(Product::from))
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.products.find_many", skip_all)]
    async fn find_many(&self, ids: Vec<ProductId>) -> anyhow::Result<Vec<Product>> {
        run(&self.pool, move |conn| {
            let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
            products::table
                .filter(products::id.eq_any(ids))
                .select(ProductRow::as_select())
                .load::<ProductRow>(conn)
                .map(|rows| rows.into_iter().map(Product::from).collect())
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.products.list", skip_all)]
    async fn list(&self, page: PageRequest) -> anyhow::Result<Page<Product>> {
        run(&self.pool, move |conn| {
            let total_count: i64 = products::table.count().get_result(conn).map_err(db_error)?;
            let rows: Vec<ProductRow> = products::table
                .select(ProductRow::as_select())
                .order(products::id.asc())
                .offset(page.offset())
                .limit(page.limit())
                .load(conn)
                .map_err(db_error)?;
            Ok(Page {
                items: rows.into_iter().map(Product::from).collect(),
                request: page,
                total_count,
            })
        })
        .await
    }

    #[tracing::instrument(name = "pg.products.update", skip_all, fields(product_id = %id))]
    async fn update(
        &self,
        id: ProductId,
        patch: ProductPatch,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Product>> {
        run(&self.pool, move |conn| {
            let changes = ProductChanges {
                name: patch.name.as_ref().map(ProductName::as_str),
                description: patch.description.as_ref().map(Description::as_str),
                price: patch.price.map(Price::get),
                updated_at: now,
            };
            diesel::update(products::table.find(id.get()))
                .set(&changes)
                .returning(ProductRow::as_returning())
                .get_result::<ProductRow>(conn)
                .optional()
                .map(|row| row.map(Product::from))
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.products.restock", skip_all, fields(product_id = %restock.product_id))]
    async fn restock(&self, restock: Restock, now: DateTime<Utc>) -> Result<Product, RestockError> {
        run(&self.pool, move |conn| {
            let id = restock.product_id.get();
            let updated = diesel::update(
                products::table
                    .find(id)
                    .filter(products::stock.le(restock.ceiling.get())),
            )
            .set((
                products::stock.eq(products::stock + restock.quantity.get()),
                products::updated_at.eq(now),
            ))
            .returning(ProductRow::as_returning())
            .get_result::<ProductRow>(conn)
            .optional()
            .map_err(db_error)?;
            if let Some(row) = updated {
                return Ok(row.into());
            }
            let known: bool = diesel::select(exists(products::table.find(id)))
                .get_result(conn)
                .map_err(db_error)?;
            Err(if known {
                RestockError::StockLimitExceeded
            } else {
                RestockError::ProductNotFound
            })
        })
        .await
    }
}

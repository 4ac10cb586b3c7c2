//! [`ProductRepository`] on PostgreSQL.
//!
//! Every method is one statement on one pooled connection; a refused restock adds one
//! diagnosing read, to tell an unknown product from a full one. The catalogue's size is kept
//! in `catalogue_stats` by the statement that creates a product, so a page reads its
//! total with its rows instead of counting the table, and costs the same at 1,000 or
//! 1,000,000 products.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use domain::page::{KeysetPage, KeysetRequest};
use domain::ports::{ProductRepository, RestockError};
use domain::product::{
    Description, NewProduct, Price, Product, ProductName, ProductPatch, Restock, Stock,
};
use domain::{Page, PageRequest, ProductId};

use crate::error::db_error;
use crate::group::{Fetch, Grouped, LANES, MAX_GROUP};
use crate::pool::{PgPool, run};
use crate::reads::Reads;
use crate::retry::retrying;
use crate::schema::products;
use crate::statement::statement;

/// The catalogue in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgProductRepository {
    pool: PgPool,
    /// Where the page and detail reads go (the primary, or a read replica).
    reads: Reads,
    /// Product details, grouped while they overlap.
    details: Grouped<i64, Product>,
    /// Catalogue pages by (offset, limit): the count and the page's products.
    pages: Grouped<(i64, i64), PageCut>,
}

/// A group of pages by (offset, limit): one statement and one connection for the lot,
/// each page with the catalogue's count. A page alone: [`LIST_PAGE`]. Overlapping pages:
/// [`LIST_POSITIONS`], which walks the catalogue once, as far as the deepest page reaches,
/// and answers each wanted position once; the pages are cut from those rows here.
fn pages_of(reads: Reads) -> Fetch<(i64, i64), PageCut> {
    Arc::new(move |keys: Vec<(i64, i64)>| {
        if let [(offset, limit)] = keys[..] {
            // Alone: the one-page statement, as cheap as before grouping.
            let rows = reads.run_here(
                |_| false,
                |conn| {
                    statement(LIST_PAGE)
                        .bind::<BigInt, _>(offset)
                        .bind::<BigInt, _>(limit)
                        .load::<PageRow>(conn)
                        .map_err(db_error)
                },
            )?;
            let (total_count, products) = count_and_products(rows)?;
            let cut = PageCut {
                total_count,
                range: 0..products.len(),
                products: Arc::new(products),
            };
            return Ok(HashMap::from([((offset, limit), cut)]));
        }
        let (positions, end) = positions_of(&keys);
        let rows = reads.run_here(
            |_| false,
            |conn| {
                statement(LIST_POSITIONS)
                    .bind::<Array<BigInt>, _>(&positions)
                    .bind::<BigInt, _>(end)
                    .load::<PositionedRow>(conn)
                    .map_err(db_error)
            },
        )?;
        let (total_count, mut placed) = count_and_placed(rows)?;
        placed.sort_unstable_by_key(|(position, _)| *position);
        let (positions, products): (Vec<i64>, Vec<Product>) = placed.into_iter().unzip();
        let products = Arc::new(products);
        Ok(keys
            .into_iter()
            .map(|(offset, limit)| {
                let first = positions.partition_point(|position| *position < offset);
                let end =
                    positions.partition_point(|position| *position < offset.saturating_add(limit));
                let cut = PageCut {
                    total_count,
                    range: first..end,
                    products: Arc::clone(&products),
                };
                ((offset, limit), cut)
            })
            .collect())
    })
}

/// A page as a group answers it: the count, and where its products lie among the rows
/// the group read, which its members share; each member copies out its own page (in its
/// own task, not on the group's lane).
#[derive(Debug, Clone)]
struct PageCut {
    total_count: i64,
    products: Arc<Vec<Product>>,
    range: std::ops::Range<usize>,
}

impl PageCut {
    fn products(&self) -> Vec<Product> {
        self.products
            .get(self.range.clone())
            .unwrap_or_default()
            .to_vec()
    }
}

/// The positions (0 = the lowest id) that pages (offset, limit) cover, each once and in
/// order, and the end of the deepest page.
fn positions_of(keys: &[(i64, i64)]) -> (Vec<i64>, i64) {
    let mut positions: Vec<i64> = keys
        .iter()
        .flat_map(|&(offset, limit)| offset..offset.saturating_add(limit))
        .collect();
    positions.sort_unstable();
    positions.dedup();
    let end = keys
        .iter()
        .map(|&(offset, limit)| offset.saturating_add(limit))
        .max()
        .unwrap_or(0);
    (positions, end)
}

impl PgProductRepository {
    pub fn new(pool: PgPool) -> Self {
        Self::reading(pool.clone(), Reads::primary(pool))
    }

    fn reading(pool: PgPool, reads: Reads) -> Self {
        Self {
            details: Grouped::new(details_of(reads.clone()), LANES, MAX_GROUP),
            pages: Grouped::new(pages_of(reads.clone()), LANES, MAX_GROUP),
            reads,
            pool,
        }
    }

    /// Reads pages and details through `reads` (a read replica while it keeps up); writes
    /// stay on the primary.
    #[must_use]
    pub fn reading_from(self, reads: Reads) -> Self {
        Self::reading(self.pool, reads)
    }
}

/// The products of a group of ids: one statement (`id = ANY($1)`; `= $1` for an id alone),
/// one connection. When
/// the replica lacks one of them (it may be one just created), the group asks the primary.
fn details_of(reads: Reads) -> Fetch<i64, Product> {
    Arc::new(move |ids: Vec<i64>| {
        // A group asks each id once.
        let wanted = ids.len();
        let (found, _) = reads.run_here(
            |(found, wanted): &(HashMap<i64, Product>, usize)| found.len() < *wanted,
            |conn| {
                match ids.as_slice() {
                    // Alone: the one-key statement, as cheap as before grouping.
                    [id] => products::table
                        .find(*id)
                        .select(ProductRow::as_select())
                        .load::<ProductRow>(conn),
                    _ => products::table
                        .filter(products::id.eq_any(&ids))
                        .select(ProductRow::as_select())
                        .load::<ProductRow>(conn),
                }
                .map(|rows| {
                    let found = rows
                        .into_iter()
                        .map(|row| (row.id, Product::from(row)))
                        .collect();
                    (found, wanted)
                })
                .map_err(db_error)
            },
        )?;
        Ok(found)
    })
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

/// A created product, as `CREATE_PRODUCT` returns it.
#[derive(QueryableByName)]
struct CreatedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    description: String,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = BigInt)]
    stock: i64,
}

impl From<CreatedRow> for Product {
    fn from(row: CreatedRow) -> Self {
        ProductRow {
            id: row.id,
            name: row.name,
            description: row.description,
            price: row.price,
            stock: row.stock,
        }
        .into()
    }
}

/// One row of a page query: the catalogue's count, and one product of the page, or
/// none when the page is empty (the count still comes back, on a row of NULLs).
#[derive(QueryableByName)]
struct PageRow {
    #[diesel(sql_type = BigInt)]
    product_count: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    description: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    price: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    stock: Option<i64>,
}

impl PageRow {
    fn into_product(self) -> Option<Product> {
        Some(
            ProductRow {
                id: self.id?,
                name: self.name?,
                description: self.description?,
                price: self.price?,
                stock: self.stock?,
            }
            .into(),
        )
    }
}

/// Splits positioned rows into the count and the products by position. No row at all
/// means the count row is gone, which only a broken migration could cause.
fn count_and_placed(rows: Vec<PositionedRow>) -> anyhow::Result<(i64, Vec<(i64, Product)>)> {
    let total_count = rows
        .first()
        .map(|row| row.row.product_count)
        .ok_or_else(|| anyhow::anyhow!("catalogue_stats has no row"))?;
    Ok((
        total_count,
        rows.into_iter()
            .filter_map(|row| Some((row.position?, row.row.into_product()?)))
            .collect(),
    ))
}

/// Splits page rows into the count and the products. No row at all means the count row
/// is gone, which only a broken migration could cause.
fn count_and_products(rows: Vec<PageRow>) -> anyhow::Result<(i64, Vec<Product>)> {
    let total_count = rows
        .first()
        .map(|row| row.product_count)
        .ok_or_else(|| anyhow::anyhow!("catalogue_stats has no row"))?;
    Ok((
        total_count,
        rows.into_iter().filter_map(PageRow::into_product).collect(),
    ))
}

/// Inserts a product and counts it, in one autocommit statement: both or neither.
/// The join with `counted` makes a missing count row fail the insert instead of
/// letting the count fall behind silently. The count row's lock serialises creations,
/// an operator action, so concurrent creations all count.
const CREATE_PRODUCT: &str = "\
    WITH created AS ( \
        INSERT INTO products (name, description, price, stock, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $5) \
        RETURNING id, name, description, price, stock \
    ), counted AS ( \
        UPDATE catalogue_stats SET product_count = product_count + 1 RETURNING product_count \
    ) \
    SELECT created.id, created.name, created.description, created.price, created.stock \
    FROM created, counted";

/// The count and one numbered page, in one statement: a page alone (overlapping pages go
/// together, by [`LIST_POSITIONS`]).
const LIST_PAGE: &str = "\
    SELECT c.product_count, p.id, p.name, p.description, p.price, p.stock \
    FROM catalogue_stats c \
    LEFT JOIN LATERAL ( \
        SELECT id, name, description, price, stock FROM products \
        ORDER BY id OFFSET $1 LIMIT $2 \
    ) p ON true \
    ORDER BY p.id";

/// The count and the products at the catalogue's positions `$1` (0 = the lowest id; in
/// order, each once) below `$2`, each row with its position, in one statement. The
/// products are walked once in id order, numbered, and stopped at `$2`: one pass however
/// many pages overlap, where each page's own `OFFSET` would walk the rows before it again.
/// The products are reached only by that ordered walk, so the plan cannot turn into a scan
/// of the whole table when the catalogue grows. The LEFT JOIN keeps the count when no
/// position holds a product (every page past the end).
const LIST_POSITIONS: &str = "\
    SELECT c.product_count, r.position, r.id, r.name, r.description, r.price, r.stock \
    FROM catalogue_stats c \
    LEFT JOIN ( \
        SELECT r.* FROM ( \
            SELECT row_number() OVER (ORDER BY id) - 1 AS position, \
                   id, name, description, price, stock \
            FROM products ORDER BY id LIMIT $2 \
        ) r \
        JOIN unnest($1::bigint[]) AS wanted (position) USING (position) \
    ) r ON true";

/// One row of [`LIST_POSITIONS`]: a product and its position, or the count alone.
#[derive(QueryableByName)]
struct PositionedRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    position: Option<i64>,
    #[diesel(embed)]
    row: PageRow,
}

/// The count and the products after a cursor, in one statement: an index range scan
/// from the cursor, as cheap deep in the catalogue as at its start.
const LIST_AFTER: &str = "\
    SELECT c.product_count, p.id, p.name, p.description, p.price, p.stock \
    FROM catalogue_stats c \
    LEFT JOIN LATERAL ( \
        SELECT id, name, description, price, stock FROM products \
        WHERE id > $1 ORDER BY id LIMIT $2 \
    ) p ON true \
    ORDER BY p.id";

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
            retrying(conn, |conn| {
                statement(CREATE_PRODUCT)
                    .bind::<Text, _>(product.name.as_str())
                    .bind::<Text, _>(product.description.as_str())
                    .bind::<BigInt, _>(product.price.get())
                    .bind::<BigInt, _>(product.stock.get())
                    .bind::<Timestamptz, _>(now)
                    .get_result::<CreatedRow>(conn)
            })
            .map(Product::from)
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.products.find", skip_all, fields(product_id = %id))]
    async fn find(&self, id: ProductId) -> anyhow::Result<Option<Product>> {
        self.details.get(id.get()).await
    }

    #[tracing::instrument(name = "pg.products.list", skip_all, fields(page = page.page()))]
    async fn list(&self, page: PageRequest) -> anyhow::Result<Page<Product>> {
        let cut = self
            .pages
            .get((page.offset(), page.limit()))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row for page {}", page.page()))?;
        Ok(Page {
            items: cut.products(),
            request: page,
            total_count: cut.total_count,
        })
    }

    #[tracing::instrument(name = "pg.products.list_after", skip_all, fields(after = request.after()))]
    async fn list_after(&self, request: KeysetRequest) -> anyhow::Result<KeysetPage<Product>> {
        let rows = self
            .reads
            .run(
                |_| false,
                move |conn| {
                    statement(LIST_AFTER)
                        .bind::<BigInt, _>(request.after())
                        .bind::<BigInt, _>(request.fetch_limit())
                        .load::<PageRow>(conn)
                        .map_err(db_error)
                },
            )
            .await?;
        let (total_count, fetched) = count_and_products(rows)?;
        Ok(KeysetPage::from_fetched(
            fetched,
            request,
            total_count,
            |p| p.id.get(),
        ))
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
            retrying(conn, |conn| {
                diesel::update(products::table.find(id.get()))
                    .set(&changes)
                    .returning(ProductRow::as_returning())
                    .get_result::<ProductRow>(conn)
                    .optional()
            })
            .map(|row| row.map(Product::from))
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.products.restock", skip_all, fields(product_id = %restock.product_id))]
    async fn restock(&self, restock: Restock, now: DateTime<Utc>) -> Result<Product, RestockError> {
        run(&self.pool, move |conn| {
            let id = restock.product_id.get();
            let updated = retrying(conn, |conn| {
                diesel::update(
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
            })
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

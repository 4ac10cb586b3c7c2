//! The product catalogue: reads for everyone, writes for operators; one use case per
//! action ([`CreateProduct`], [`GetProduct`], [`ListProducts`], [`UpdateProduct`],
//! [`RestockProduct`]).

use std::sync::Arc;

use domain::page::{KeysetPage, Paging};
use domain::ports::{Clock, ProductRepository, RestockError};
use domain::product::{NewProduct, Product, ProductPatch, Restock, RestockQuantity};
use domain::{Page, ProductId};

/// Adds a product to the catalogue (operators).
#[derive(Clone)]
pub struct CreateProduct {
    products: Arc<dyn ProductRepository>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateProductError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl CreateProduct {
    pub fn new(products: Arc<dyn ProductRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { products, clock }
    }

    /// # Errors
    /// [`CreateProductError::Unknown`] when the store fails.
    #[tracing::instrument(name = "create_product", skip_all)]
    pub async fn execute(&self, product: NewProduct) -> Result<Product, CreateProductError> {
        Ok(self.products.create(product, self.clock.now()).await?)
    }
}

/// Reads one product with its stock.
#[derive(Clone)]
pub struct GetProduct {
    products: Arc<dyn ProductRepository>,
}

#[derive(Debug, thiserror::Error)]
pub enum GetProductError {
    #[error("product not found")]
    ProductNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl GetProduct {
    pub fn new(products: Arc<dyn ProductRepository>) -> Self {
        Self { products }
    }

    /// # Errors
    /// [`GetProductError::ProductNotFound`] for an unknown id.
    #[tracing::instrument(name = "get_product", skip_all, fields(product_id = %id))]
    pub async fn execute(&self, id: ProductId) -> Result<Product, GetProductError> {
        self.products
            .find(id)
            .await?
            .ok_or(GetProductError::ProductNotFound)
    }
}

/// Lists the catalogue by id: a numbered page, or the page after a cursor.
#[derive(Clone)]
pub struct ListProducts {
    products: Arc<dyn ProductRepository>,
}

/// A page of the catalogue, of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductPage {
    Numbered(Page<Product>),
    After(KeysetPage<Product>),
}

#[derive(Debug, thiserror::Error)]
pub enum ListProductsError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ListProducts {
    pub fn new(products: Arc<dyn ProductRepository>) -> Self {
        Self { products }
    }

    /// A numbered page, or the page after a cursor (the same cost at any depth of the
    /// catalogue).
    ///
    /// # Errors
    /// [`ListProductsError::Unknown`] when the store fails.
    #[tracing::instrument(name = "list_products", skip_all, fields(paging = ?paging))]
    pub async fn execute(&self, paging: Paging) -> Result<ProductPage, ListProductsError> {
        Ok(match paging {
            Paging::Numbered(page) => ProductPage::Numbered(self.products.list(page).await?),
            Paging::After(request) => ProductPage::After(self.products.list_after(request).await?),
        })
    }
}

/// Changes a product's name, description or price (operators).
#[derive(Clone)]
pub struct UpdateProduct {
    products: Arc<dyn ProductRepository>,
    clock: Arc<dyn Clock>,
}

/// The product and the fields to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateProductCommand {
    pub product_id: ProductId,
    pub patch: ProductPatch,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateProductError {
    #[error("product not found")]
    ProductNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl UpdateProduct {
    pub fn new(products: Arc<dyn ProductRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { products, clock }
    }

    /// Changes name, description or price; an empty patch just reads the product.
    ///
    /// # Errors
    /// [`UpdateProductError::ProductNotFound`] for an unknown id.
    #[tracing::instrument(name = "update_product", skip_all, fields(product_id = %cmd.product_id))]
    pub async fn execute(&self, cmd: UpdateProductCommand) -> Result<Product, UpdateProductError> {
        let updated = if cmd.patch.is_empty() {
            self.products.find(cmd.product_id).await?
        } else {
            self.products
                .update(cmd.product_id, cmd.patch, self.clock.now())
                .await?
        };
        updated.ok_or(UpdateProductError::ProductNotFound)
    }
}

/// Adds stock to a product atomically (operators).
#[derive(Clone)]
pub struct RestockProduct {
    products: Arc<dyn ProductRepository>,
    clock: Arc<dyn Clock>,
}

/// The product and the units to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestockProductCommand {
    pub product_id: ProductId,
    pub quantity: RestockQuantity,
}

#[derive(Debug, thiserror::Error)]
pub enum RestockProductError {
    #[error("product not found")]
    ProductNotFound,
    #[error("the stock would exceed {}", domain::product::Stock::MAX)]
    StockLimitExceeded,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl RestockProduct {
    pub fn new(products: Arc<dyn ProductRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { products, clock }
    }

    /// Adds stock atomically, up to the stock maximum ([`Restock`] carries the ceiling).
    ///
    /// # Errors
    /// [`RestockProductError::ProductNotFound`],
    /// [`RestockProductError::StockLimitExceeded`] (nothing changed).
    #[tracing::instrument(name = "restock_product", skip_all, fields(product_id = %cmd.product_id, quantity = cmd.quantity.get()))]
    pub async fn execute(
        &self,
        cmd: RestockProductCommand,
    ) -> Result<Product, RestockProductError> {
        self.products
            .restock(Restock::new(cmd.product_id, cmd.quantity), self.clock.now())
            .await
            .map_err(|err| match err {
                RestockError::ProductNotFound => RestockProductError::ProductNotFound,
                RestockError::StockLimitExceeded => RestockProductError::StockLimitExceeded,
                RestockError::Unknown(e) => RestockProductError::Unknown(e),
            })
    }
}

crate::debug_opaque!(
    CreateProduct,
    GetProduct,
    ListProducts,
    UpdateProduct,
    RestockProduct
);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::PageRequest;
    use domain::page::KeysetRequest;
    use domain::ports::{MockClock, MockProductRepository};
    use domain::product::{Description, Price, ProductName, Stock};

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(Utc::now());
        Arc::new(clock)
    }

    fn product(id: i64, stock: i64) -> Product {
        Product {
            id: ProductId::new(id).unwrap(),
            name: ProductName::new("Mug").unwrap(),
            description: Description::default(),
            price: Price::new(1_000).unwrap(),
            stock: Stock::new(stock).unwrap(),
        }
    }

    fn id(raw: i64) -> ProductId {
        ProductId::new(raw).unwrap()
    }

    fn restock(product: i64, quantity: i64) -> RestockProductCommand {
        RestockProductCommand {
            product_id: id(product),
            quantity: RestockQuantity::new(quantity).unwrap(),
        }
    }

    #[tokio::test]
    async fn an_unknown_product_is_not_found() {
        let mut products = MockProductRepository::new();
        products.expect_find().returning(|_| Ok(None));
        let err = GetProduct::new(Arc::new(products))
            .execute(id(1))
            .await
            .unwrap_err();
        assert!(matches!(err, GetProductError::ProductNotFound));
    }

    #[tokio::test]
    async fn a_known_product_is_read_with_its_stock() {
        let mut products = MockProductRepository::new();
        products
            .expect_find()
            .returning(|i| Ok(Some(product(i.get(), 7))));
        let got = GetProduct::new(Arc::new(products))
            .execute(id(3))
            .await
            .unwrap();
        assert_eq!((got.id.get(), got.stock.get()), (3, 7));
    }

    #[tokio::test]
    async fn creating_stores_the_validated_product() {
        let mut products = MockProductRepository::new();
        products
            .expect_create()
            .withf(|p, _| p.name.as_str() == "Mug" && p.stock.get() == 4)
            .times(1)
            .returning(|_, _| Ok(product(1, 4)));
        let new = NewProduct {
            name: ProductName::new("Mug").unwrap(),
            description: Description::default(),
            price: Price::new(1_000).unwrap(),
            stock: Stock::new(4).unwrap(),
        };
        let created = CreateProduct::new(Arc::new(products), clock())
            .execute(new)
            .await
            .unwrap();
        assert_eq!(created.id.get(), 1);
    }

    #[tokio::test]
    async fn a_keyset_page_is_read_after_the_cursor_it_was_given() {
        let mut products = MockProductRepository::new();
        products.expect_list().never();
        products
            .expect_list_after()
            .withf(|r| (r.after(), r.size()) == (41, 2))
            .times(1)
            .returning(|r| {
                Ok(KeysetPage::from_fetched(
                    vec![product(42, 1), product(43, 1), product(44, 1)],
                    r,
                    50,
                    |p| p.id.get(),
                ))
            });
        let got = ListProducts::new(Arc::new(products))
            .execute(Paging::After(KeysetRequest::new(41, Some(2)).unwrap()))
            .await
            .unwrap();
        let ProductPage::After(got) = got else {
            panic!("a keyset request answered {got:?}");
        };
        assert_eq!(
            (got.items.len(), got.next_after, got.total_count),
            (2, Some(43), 50)
        );
    }

    #[tokio::test]
    async fn a_numbered_page_is_read_by_its_number_not_by_a_cursor() {
        let mut products = MockProductRepository::new();
        products.expect_list_after().never();
        products
            .expect_list()
            .withf(|r| (r.page(), r.size()) == (3, 2))
            .times(1)
            .returning(|r| {
                Ok(Page {
                    items: vec![product(5, 1), product(6, 1)],
                    request: r,
                    total_count: 9,
                })
            });
        let got = ListProducts::new(Arc::new(products))
            .execute(Paging::Numbered(
                PageRequest::new(Some(3), Some(2)).unwrap(),
            ))
            .await
            .unwrap();
        let ProductPage::Numbered(got) = got else {
            panic!("a numbered request answered {got:?}");
        };
        assert_eq!((got.items.len(), got.total_count), (2, 9));
    }

    #[tokio::test]
    async fn an_empty_patch_only_reads() {
        let mut products = MockProductRepository::new();
        products.expect_update().never();
        products
            .expect_find()
            .times(1)
            .returning(|i| Ok(Some(product(i.get(), 1))));
        let got = UpdateProduct::new(Arc::new(products), clock())
            .execute(UpdateProductCommand {
                product_id: id(2),
                patch: ProductPatch::default(),
            })
            .await
            .unwrap();
        assert_eq!(got.id.get(), 2);
    }

    #[tokio::test]
    async fn patching_an_unknown_product_is_not_found() {
        let mut products = MockProductRepository::new();
        products.expect_update().returning(|_, _, _| Ok(None));
        let patch = ProductPatch {
            price: Some(Price::new(5).unwrap()),
            ..ProductPatch::default()
        };
        let err = UpdateProduct::new(Arc::new(products), clock())
            .execute(UpdateProductCommand {
                product_id: id(2),
                patch,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, UpdateProductError::ProductNotFound));
    }

    #[tokio::test]
    async fn a_restock_carries_its_ceiling_and_maps_refusals() {
        let mut products = MockProductRepository::new();
        products
            .expect_restock()
            .withf(|r, _| r.quantity.get() == 5 && r.ceiling.get() == Stock::MAX - 5)
            .times(1)
            .returning(|r, _| Ok(product(r.product_id.get(), 6)));
        let got = RestockProduct::new(Arc::new(products), clock())
            .execute(restock(1, 5))
            .await
            .unwrap();
        assert_eq!(got.stock.get(), 6);

        for (refusal, check) in [
            (RestockError::ProductNotFound, "not found"),
            (RestockError::StockLimitExceeded, "limit"),
        ] {
            let mut products = MockProductRepository::new();
            let mut refusal = Some(refusal);
            products
                .expect_restock()
                .returning(move |_, _| Err(refusal.take().unwrap()));
            let err = RestockProduct::new(Arc::new(products), clock())
                .execute(restock(1, 1))
                .await
                .unwrap_err();
            match check {
                "not found" => assert!(matches!(err, RestockProductError::ProductNotFound)),
                _ => assert!(matches!(err, RestockProductError::StockLimitExceeded)),
            }
        }
    }
}

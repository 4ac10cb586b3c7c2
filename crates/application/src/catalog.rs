//! The product catalogue: reads for everyone, writes for operators.

use std::sync::Arc;

use domain::page::{KeysetPage, KeysetRequest};
use domain::ports::{Clock, ProductRepository, RestockError};
use domain::product::{NewProduct, Product, ProductPatch, Restock, RestockQuantity};
use domain::{Page, PageRequest, ProductId};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("product not found")]
    ProductNotFound,
    #[error("the stock would exceed {}", domain::product::Stock::MAX)]
    StockLimitExceeded,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Every catalogue use case shares one repository and clock.
#[derive(Clone)]
pub struct Catalog {
    products: Arc<dyn ProductRepository>,
    clock: Arc<dyn Clock>,
}

impl Catalog {
    pub fn new(products: Arc<dyn ProductRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { products, clock }
    }

    /// # Errors
    /// [`CatalogError::Unknown`] when the store fails.
    #[tracing::instrument(name = "create_product", skip_all)]
    pub async fn create(&self, product: NewProduct) -> Result<Product, CatalogError> {
        Ok(self.products.create(product, self.clock.now()).await?)
    }

    /// # Errors
    /// [`CatalogError::ProductNotFound`] for an unknown id.
    #[tracing::instrument(name = "get_product", skip_all, fields(product_id = %id))]
    pub async fn get(&self, id: ProductId) -> Result<Product, CatalogError> {
        self.products
            .find(id)
            .await?
            .ok_or(CatalogError::ProductNotFound)
    }

    /// # Errors
    /// [`CatalogError::Unknown`] when the store fails.
    #[tracing::instrument(name = "list_products", skip_all)]
    pub async fn list(&self, page: PageRequest) -> Result<Page<Product>, CatalogError> {
        Ok(self.products.list(page).await?)
    }

    /// The page after a cursor: the same cost at any depth of the catalogue.
    ///
    /// # Errors
    /// [`CatalogError::Unknown`] when the store fails.
    #[tracing::instrument(name = "list_products_after", skip_all, fields(after = request.after()))]
    pub async fn list_after(
        &self,
        request: KeysetRequest,
    ) -> Result<KeysetPage<Product>, CatalogError> {
        Ok(self.products.list_after(request).await?)
    }

    /// Changes name, description or price; an empty patch just reads the product.
    ///
    /// # Errors
    /// [`CatalogError::ProductNotFound`] for an unknown id.
    #[tracing::instrument(name = "update_product", skip_all, fields(product_id = %id))]
    pub async fn update(
        &self,
        id: ProductId,
        patch: ProductPatch,
    ) -> Result<Product, CatalogError> {
        let updated = if patch.is_empty() {
            self.products.find(id).await?
        } else {
            self.products.update(id, patch, self.clock.now()).await?
        };
        updated.ok_or(CatalogError::ProductNotFound)
    }

    /// Adds stock atomically.
    ///
    /// # Errors
    /// [`CatalogError::ProductNotFound`], [`CatalogError::StockLimitExceeded`].
    #[tracing::instrument(name = "restock_product", skip_all, fields(product_id = %id, quantity = quantity.get()))]
    pub async fn restock(
        &self,
        id: ProductId,
        quantity: RestockQuantity,
    ) -> Result<Product, CatalogError> {
        self.products
            .restock(Restock::new(id, quantity), self.clock.now())
            .await
            .map_err(|err| match err {
                RestockError::ProductNotFound => CatalogError::ProductNotFound,
                RestockError::StockLimitExceeded => CatalogError::StockLimitExceeded,
                RestockError::Unknown(e) => CatalogError::Unknown(e),
            })
    }
}

crate::debug_opaque!(Catalog);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
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

    #[tokio::test]
    async fn an_unknown_product_is_not_found() {
        let mut products = MockProductRepository::new();
        products.expect_find().returning(|_| Ok(None));
        let err = Catalog::new(Arc::new(products), clock())
            .get(id(1))
            .await
            .unwrap_err();
        assert!(matches!(err, CatalogError::ProductNotFound));
    }

    #[tokio::test]
    async fn a_known_product_is_read_with_its_stock() {
        let mut products = MockProductRepository::new();
        products
            .expect_find()
            .returning(|i| Ok(Some(product(i.get(), 7))));
        let got = Catalog::new(Arc::new(products), clock())
            .get(id(3))
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
        let created = Catalog::new(Arc::new(products), clock())
            .create(new)
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
        let got = Catalog::new(Arc::new(products), clock())
            .list_after(KeysetRequest::new(41, Some(2)).unwrap())
            .await
            .unwrap();
        assert_eq!(
            (got.items.len(), got.next_after, got.total_count),
            (2, Some(43), 50)
        );
    }

    #[tokio::test]
    async fn an_empty_patch_only_reads() {
        let mut products = MockProductRepository::new();
        products.expect_update().never();
        products
            .expect_find()
            .times(1)
            .returning(|i| Ok(Some(product(i.get(), 1))));
        let got = Catalog::new(Arc::new(products), clock())
            .update(id(2), ProductPatch::default())
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
        let err = Catalog::new(Arc::new(products), clock())
            .update(id(2), patch)
            .await
            .unwrap_err();
        assert!(matches!(err, CatalogError::ProductNotFound));
    }

    #[tokio::test]
    async fn a_restock_carries_its_ceiling_and_maps_refusals() {
        let mut products = MockProductRepository::new();
        products
            .expect_restock()
            .withf(|r, _| r.quantity.get() == 5 && r.ceiling.get() == Stock::MAX - 5)
            .times(1)
            .returning(|r, _| Ok(product(r.product_id.get(), 6)));
        let catalog = Catalog::new(Arc::new(products), clock());
        let got = catalog
            .restock(id(1), RestockQuantity::new(5).unwrap())
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
            let err = Catalog::new(Arc::new(products), clock())
                .restock(id(1), RestockQuantity::new(1).unwrap())
                .await
                .unwrap_err();
            match check {
                "not found" => assert!(matches!(err, CatalogError::ProductNotFound)),
                _ => assert!(matches!(err, CatalogError::StockLimitExceeded)),
            }
        }
    }
}

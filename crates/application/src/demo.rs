//! Demo data for a newcomer's first `make run`: a small catalogue and two coupons,
//! seeded only into an empty catalogue. Never used by tests.

use std::sync::Arc;

use chrono::Duration;
use domain::PageRequest;
use domain::coupon::{CouponName, CouponQuantity, Discount, NewCoupon};
use domain::ports::{Clock, CouponStore, ProductRepository};
use domain::product::{Description, NewProduct, Price, ProductName, Stock};

#[derive(Clone)]
pub struct SeedDemoData {
    products: Arc<dyn ProductRepository>,
    coupons: Arc<dyn CouponStore>,
    clock: Arc<dyn Clock>,
}

const PRODUCTS: [(&str, &str, i64, i64); 6] = [
    ("Ceramic mug", "350 ml, dishwasher safe", 12_000, 120),
    ("Pour-over kettle", "Gooseneck, 1 l", 48_000, 30),
    (
        "Single-origin beans",
        "Ethiopia Yirgacheffe, 200 g",
        18_500,
        200,
    ),
    ("Paper filters", "Pack of 100", 4_500, 500),
    ("Hand grinder", "Conical burrs", 89_000, 15),
    ("Tumbler", "Insulated, 500 ml", 25_000, 80),
];

impl SeedDemoData {
    pub fn new(
        products: Arc<dyn ProductRepository>,
        coupons: Arc<dyn CouponStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            products,
            coupons,
            clock,
        }
    }

    /// Seeds when the catalogue is empty; returns whether it did.
    ///
    /// # Errors
    /// When the store fails (or, which cannot happen, the fixed data is invalid).
    pub async fn execute(&self) -> anyhow::Result<bool> {
        if self
            .products
            .list(PageRequest::default())
            .await?
            .total_count
            > 0
        {
            return Ok(false);
        }
        let now = self.clock.now();
        for (name, description, price, stock) in PRODUCTS {
            let product = NewProduct {
                name: ProductName::new(name)?,
                description: Description::new(description)?,
                price: Price::new(price)?,
                stock: Stock::new(stock)?,
            };
            self.products.create(product, now).await?;
        }
        for (name, discount, quantity) in [
            ("Welcome 3,000 KRW off", Discount::Fixed(3_000), 1_000),
            ("Flash sale 10% off", Discount::Rate(10), 100),
        ] {
            let coupon = NewCoupon::new(
                CouponName::new(name)?,
                discount,
                CouponQuantity::new(quantity)?,
                None,
                now + Duration::days(30),
                now,
            )?;
            self.coupons.create(coupon, now).await?;
        }
        Ok(true)
    }
}

crate::debug_opaque!(SeedDemoData);

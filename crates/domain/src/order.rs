//! Orders (주문) and their payment (결제).
//!
//! An order snapshots unit prices, deducts stock and uses at most one coupon, all at
//! once; it waits for payment until `expires_at`, then leaves `NOT_PAID` exactly once:
//! to PAID, CANCELLED or EXPIRED.

use chrono::{DateTime, Duration, Utc};

use crate::coupon::Discount;
use crate::points::Balance;
use crate::product::{Price, Product, ProductName};
use crate::{OrderId, ProductId, UserCouponId, UserId, ValidationError};

/// Units of one product in an order: `1..=1000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderQuantity(i64);

impl OrderQuantity {
    pub const MAX: i64 = 1_000;

    /// # Errors
    /// [`ValidationError`] on `quantity` outside `1..=1000`.
    pub fn new(raw: i64) -> Result<Self, ValidationError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ValidationError::new(
                "quantity",
                "must be between 1 and 1000",
            ))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// The validated items of an order: 1–50 lines, duplicate products merged, in product
/// order (the order stock rows are locked in, so concurrent orders cannot deadlock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItems(Vec<(ProductId, OrderQuantity)>);

impl OrderItems {
    pub const MAX_LINES: usize = 50;

    /// # Errors
    /// [`ValidationError`] on `items` for no lines, more than 50, or a product whose
    /// merged quantity passes 1000.
    pub fn new(lines: Vec<(ProductId, OrderQuantity)>) -> Result<Self, ValidationError> {
        if lines.is_empty() || lines.len() > Self::MAX_LINES {
            return Err(ValidationError::new("items", "must have 1 to 50 lines"));
        }
        let mut merged: Vec<(ProductId, OrderQuantity)> = Vec::with_capacity(lines.len());
        for (product, quantity) in lines {
            match merged.iter_mut().find(|(p, _)| *p == product) {
                Some((_, total)) => {
                    *total = OrderQuantity::new(total.get() + quantity.get()).map_err(|_| {
                        ValidationError::new(
                            "items",
                            format!("the quantities of product {product} add up to more than 1000"),
                        )
                    })?;
                }
                None => merged.push((product, quantity)),
            }
        }
        merged.sort_by_key(|(p, _)| *p);
        Ok(Self(merged))
    }

    pub fn lines(&self) -> &[(ProductId, OrderQuantity)] {
        &self.0
    }

    pub fn product_ids(&self) -> Vec<ProductId> {
        self.0.iter().map(|(p, _)| *p).collect()
    }
}

/// One line as ordered: the product's name and price at ordering time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub product_name: ProductName,
    pub unit_price: Price,
    pub quantity: OrderQuantity,
    pub amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    NotPaid,
    Paid,
    Expired,
    Cancelled,
}

impl OrderStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotPaid => "NOT_PAID",
            Self::Paid => "PAID",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "NOT_PAID" => Some(Self::NotPaid),
            "PAID" => Some(Self::Paid),
            "EXPIRED" => Some(Self::Expired),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// The coupon an order applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedCoupon {
    pub id: UserCouponId,
    pub discount: Discount,
}

/// A priced order, ready to be placed in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    pub user_id: UserId,
    pub lines: Vec<OrderLine>,
    pub coupon: Option<AppliedCoupon>,
    pub total_amount: i64,
    pub discount_amount: i64,
    pub pay_amount: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A referenced product that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("product {0} not found")]
pub struct MissingProduct(pub ProductId);

impl OrderPlan {
    /// Prices `items` with the `products` read for them: total = Σ price × quantity,
    /// discount per the coupon, pay = total − discount; payable for `payment_timeout`.
    ///
    /// # Errors
    /// [`MissingProduct`] for the first item whose product is not among `products`.
    pub fn price(
        user_id: UserId,
        items: &OrderItems,
        products: &[Product],
        coupon: Option<AppliedCoupon>,
        now: DateTime<Utc>,
        payment_timeout: Duration,
    ) -> Result<Self, MissingProduct> {
        let mut lines = Vec::with_capacity(items.lines().len());
        for (product_id, quantity) in items.lines() {
            let product = products
                .iter()
                .find(|p| p.id == *product_id)
                .ok_or(MissingProduct(*product_id))?;
            lines.push(OrderLine {
                product_id: *product_id,
                product_name: product.name.clone(),
                unit_price: product.price,
                quantity: *quantity,
                // ≤ 1e9 × 1000: no overflow.
                amount: product.price.get() * quantity.get(),
            });
        }
        let total_amount: i64 = lines.iter().map(|l| l.amount).sum();
        let discount_amount = coupon.map_or(0, |c| c.discount.amount_off(total_amount));
        Ok(Self {
            user_id,
            lines,
            coupon,
            total_amount,
            discount_amount,
            pay_amount: total_amount - discount_amount,
            created_at: now,
            expires_at: now + payment_timeout,
        })
    }
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total_amount: i64,
    pub discount_amount: i64,
    pub pay_amount: i64,
    pub user_coupon_id: Option<UserCouponId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// Why an order cannot be paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayRefusal {
    #[error("the order's payment time has passed")]
    Expired,
    #[error("the order is already paid or cancelled")]
    NotPayable,
}

impl Order {
    /// Payable only while NOT_PAID and before `expires_at`.
    ///
    /// # Errors
    /// [`PayRefusal::Expired`] for EXPIRED, or NOT_PAID at or past `expires_at`;
    /// [`PayRefusal::NotPayable`] for PAID or CANCELLED.
    pub fn check_payable(&self, now: DateTime<Utc>) -> Result<(), PayRefusal> {
        match self.status {
            OrderStatus::NotPaid if now < self.expires_at => Ok(()),
            OrderStatus::NotPaid | OrderStatus::Expired => Err(PayRefusal::Expired),
            OrderStatus::Paid | OrderStatus::Cancelled => Err(PayRefusal::NotPayable),
        }
    }

    /// Only a NOT_PAID order can be cancelled.
    pub fn is_cancellable(&self) -> bool {
        self.status == OrderStatus::NotPaid
    }
}

/// What a successful payment leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub paid_amount: i64,
    pub balance: Balance,
    pub paid_at: DateTime<Utc>,
}

/// The decision to pay an order, re-checked by the store under its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentPlan {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount: i64,
    pub now: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::{Description, Stock};

    fn pid(raw: i64) -> ProductId {
        ProductId::new(raw).unwrap()
    }

    fn qty(raw: i64) -> OrderQuantity {
        OrderQuantity::new(raw).unwrap()
    }

    fn product(id: i64, price: i64) -> Product {
        Product {
            id: pid(id),
            name: ProductName::new("p").unwrap(),
            description: Description::default(),
            price: Price::new(price).unwrap(),
            stock: Stock::new(10).unwrap(),
        }
    }

    #[test]
    fn items_are_merged_sorted_and_bounded() {
        let items =
            OrderItems::new(vec![(pid(3), qty(2)), (pid(1), qty(1)), (pid(3), qty(3))]).unwrap();
        assert_eq!(items.lines(), &[(pid(1), qty(1)), (pid(3), qty(5))]);
        assert!(OrderItems::new(vec![]).is_err());
        assert!(OrderItems::new((1..=51).map(|i| (pid(i), qty(1))).collect()).is_err());
        assert!(OrderItems::new((1..=50).map(|i| (pid(i), qty(1))).collect()).is_ok());
        assert_eq!(
            OrderItems::new(vec![(pid(1), qty(600)), (pid(1), qty(401))])
                .unwrap_err()
                .field,
            "items"
        );
        assert!(OrderQuantity::new(0).is_err() && OrderQuantity::new(1_001).is_err());
    }

    #[test]
    fn an_order_is_priced_with_its_coupon() {
        let items = OrderItems::new(vec![(pid(1), qty(3))]).unwrap();
        let now = Utc::now();
        let coupon = |discount| {
            Some(AppliedCoupon {
                id: UserCouponId::new(1).unwrap(),
                discount,
            })
        };
        for (c, discount) in [
            (None, 0),
            (coupon(Discount::Fixed(500)), 500),
            (coupon(Discount::Rate(15)), 450),
            (coupon(Discount::Fixed(5_000)), 3_000),
            (coupon(Discount::Rate(33)), 990),
        ] {
            let plan = OrderPlan::price(
                UserId::new(1).unwrap(),
                &items,
                &[product(1, 1_000)],
                c,
                now,
                Duration::minutes(5),
            )
            .unwrap();
            assert_eq!(
                (plan.total_amount, plan.discount_amount, plan.pay_amount),
                (3_000, discount, 3_000 - discount)
            );
            assert_eq!(plan.expires_at, now + Duration::minutes(5));
            assert_eq!(plan.lines[0].amount, 3_000);
        }
        let missing = OrderPlan::price(
            UserId::new(1).unwrap(),
            &items,
            &[],
            None,
            now,
            Duration::minutes(5),
        );
        assert_eq!(missing, Err(MissingProduct(pid(1))));
    }

    #[test]
    fn payability_depends_on_status_and_time() {
        let now = Utc::now();
        let order = |status, expires_in: i64| Order {
            id: OrderId::new(1).unwrap(),
            user_id: UserId::new(1).unwrap(),
            status,
            lines: vec![],
            total_amount: 0,
            discount_amount: 0,
            pay_amount: 0,
            user_coupon_id: None,
            created_at: now,
            expires_at: now + Duration::seconds(expires_in),
            paid_at: None,
        };
        assert_eq!(order(OrderStatus::NotPaid, 5).check_payable(now), Ok(()));
        assert_eq!(
            order(OrderStatus::NotPaid, 0).check_payable(now),
            Err(PayRefusal::Expired)
        );
        assert_eq!(
            order(OrderStatus::Expired, 5).check_payable(now),
            Err(PayRefusal::Expired)
        );
        assert_eq!(
            order(OrderStatus::Paid, 5).check_payable(now),
            Err(PayRefusal::NotPayable)
        );
        assert_eq!(
            order(OrderStatus::Cancelled, 5).check_payable(now),
            Err(PayRefusal::NotPayable)
        );
        assert!(order(OrderStatus::NotPaid, -5).is_cancellable());
        assert!(!order(OrderStatus::Paid, 5).is_cancellable());
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            OrderStatus::NotPaid,
            OrderStatus::Paid,
            OrderStatus::Expired,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }
}

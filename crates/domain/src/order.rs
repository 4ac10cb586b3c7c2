//! Orders (주문) and their payment (결제).
//!
//! An order snapshots unit prices, deducts stock and uses at most one coupon, all at
//! once; it waits for payment until `expires_at`, then leaves `NOT_PAID` exactly once:
//! to PAID, CANCELLED or EXPIRED.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::coupon::{Discount, StoredCouponState};
use crate::points::Balance;
use crate::product::{Price, ProductName};
use crate::{Money, OrderId, ProductId, UserCouponId, UserId, ValidationError};

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
    /// `unit_price × quantity`.
    pub amount: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    NotPaid,
    Paid,
    Expired,
    Cancelled,
}

impl OrderStatus {
    /// Every status, in the order an order can reach them.
    pub const ALL: [Self; 4] = [Self::NotPaid, Self::Paid, Self::Expired, Self::Cancelled];

    /// The name stores keep it under (and the API shows): `NOT_PAID`, `PAID`, `EXPIRED`
    /// or `CANCELLED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotPaid => "NOT_PAID",
            Self::Paid => "PAID",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Reads a stored name back. Any other name is an error, so a corrupt or newer value
    /// is reported instead of passing for some status.
    ///
    /// # Errors
    /// [`UnknownOrderStatus`] for a name that is not one of [`Self::as_str`]'s.
    pub fn parse(stored: &str) -> Result<Self, UnknownOrderStatus> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == stored)
            .ok_or_else(|| UnknownOrderStatus(stored.to_owned()))
    }
}

/// A stored order status that is none of [`OrderStatus`]'s names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stored order status {0:?}")]
pub struct UnknownOrderStatus(pub String);

/// The coupon an order applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedCoupon {
    pub id: UserCouponId,
    pub discount: Discount,
}

/// An order to place, as [`OrderStore::place`](crate::ports::OrderStore::place) takes
/// it: the validated request with the payment timeout, not yet priced (prices are
/// snapshotted where the stock is taken, under the same row locks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlacement {
    pub user_id: UserId,
    pub items: OrderItems,
    pub user_coupon_id: Option<UserCouponId>,
    /// How long the order waits for payment, counted from its creation.
    pub payment_timeout: Duration,
}

/// A product as its stock was taken for an order: the name and price the order keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSnapshot {
    pub id: ProductId,
    pub name: ProductName,
    pub price: Price,
}

/// A priced order, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    pub user_id: UserId,
    pub lines: Vec<OrderLine>,
    pub coupon: Option<AppliedCoupon>,
    pub total_amount: Money,
    pub discount_amount: Money,
    pub pay_amount: Money,
}

/// Why an order could not be priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// A referenced product that does not exist.
    #[error("product {0} not found")]
    MissingProduct(ProductId),
    /// An amount out of range: with prices up to 1e9, 1,000 units a line and 50 lines,
    /// and a discount never above the total, no order reaches it.
    #[error("the order's amounts are out of range")]
    OutOfRange,
}

impl OrderPlan {
    /// Prices `items` with the `snapshots` taken with their stock: total = Σ price ×
    /// quantity, discount per the coupon, pay = total − discount.
    ///
    /// # Errors
    /// [`PricingError::MissingProduct`] for the first item whose product is not among
    /// `snapshots`; [`PricingError::OutOfRange`] should an amount leave [`Money`]'s range.
    pub fn price(
        user_id: UserId,
        items: &OrderItems,
        snapshots: &[ProductSnapshot],
        coupon: Option<AppliedCoupon>,
    ) -> Result<Self, PricingError> {
        let mut lines = Vec::with_capacity(items.lines().len());
        for (product_id, quantity) in items.lines() {
            let product = snapshots
                .iter()
                .find(|p| p.id == *product_id)
                .ok_or(PricingError::MissingProduct(*product_id))?;
            lines.push(OrderLine {
                product_id: *product_id,
                product_name: product.name.clone(),
                unit_price: product.price,
                quantity: *quantity,
                amount: Money::new(product.price.get())
                    .ok()
                    .and_then(|price| price.checked_mul(quantity.get()))
                    .ok_or(PricingError::OutOfRange)?,
            });
        }
        let total_amount =
            Money::checked_sum(lines.iter().map(|l| l.amount)).ok_or(PricingError::OutOfRange)?;
        let discount_amount = match coupon {
            Some(c) => Money::new(c.discount.amount_off(total_amount.get()))
                .map_err(|_| PricingError::OutOfRange)?,
            None => Money::ZERO,
        };
        let pay_amount = total_amount
            .checked_sub(discount_amount)
            .ok_or(PricingError::OutOfRange)?;
        Ok(Self {
            user_id,
            lines,
            coupon,
            total_amount,
            discount_amount,
            pay_amount,
        })
    }
}

impl OrderPlan {
    /// The order this plan becomes once stored: NOT_PAID, with the plan's lines, amounts
    /// and coupon, under the id and the stamps the store gave it.
    pub fn placed(
        self,
        id: OrderId,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Order {
        Order {
            id,
            user_id: self.user_id,
            status: OrderStatus::NotPaid,
            lines: self.lines,
            total_amount: self.total_amount,
            discount_amount: self.discount_amount,
            pay_amount: self.pay_amount,
            user_coupon_id: self.coupon.map(|c| c.id),
            created_at,
            expires_at,
            paid_at: None,
        }
    }
}

/// Why an order was not placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaceRefusal {
    #[error("user not found")]
    UserNotFound,
    #[error("user coupon not found")]
    UserCouponNotFound,
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("the coupon is not usable")]
    CouponNotUsable,
    #[error("product {0} is out of stock")]
    OutOfStock(ProductId),
}

/// The user coupon an order named, as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundUserCoupon {
    pub owner: UserId,
    pub state: StoredCouponState,
    pub expires_at: DateTime<Utc>,
}

/// What a store found when an order could not be placed, read after the attempt was
/// rolled back, to name the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceFindings {
    pub user_exists: bool,
    /// The user coupon the order named: `None` when it named none, `Some(None)` when
    /// there is no user coupon with that id.
    pub coupon: Option<Option<FoundUserCoupon>>,
    /// The ordered products that do not exist.
    pub missing_products: Vec<ProductId>,
    /// The ordered products whose stock is below the quantity ordered.
    pub short_products: Vec<ProductId>,
    /// The database's time when this was read.
    pub now: DateTime<Utc>,
}

impl PlaceFindings {
    /// Whether `user` may place the order as found.
    ///
    /// # Errors
    /// The refusal, by API.md's precedence: the user, then what the order references (the
    /// coupon must be the user's), then the business rules.
    pub fn placeable(&self, user: UserId) -> Result<(), PlaceRefusal> {
        if !self.user_exists {
            return Err(PlaceRefusal::UserNotFound);
        }
        let coupon = match self.coupon {
            None => None,
            Some(Some(found)) if found.owner == user => Some(found),
            Some(_) => return Err(PlaceRefusal::UserCouponNotFound),
        };
        if let Some(missing) = self.missing_products.first() {
            return Err(PlaceRefusal::ProductNotFound(*missing));
        }
        if coupon
            .is_some_and(|c| c.state != StoredCouponState::Available || self.now >= c.expires_at)
        {
            return Err(PlaceRefusal::CouponNotUsable);
        }
        if let Some(short) = self.short_products.first() {
            return Err(PlaceRefusal::OutOfStock(*short));
        }
        Ok(())
    }

    /// The refusal to answer ([`PlaceFindings::placeable`]). When the findings show
    /// nothing wrong any more (stock came back meanwhile), the order is still refused as
    /// out of stock on `fallback`, the product the attempt found short.
    pub fn refusal(&self, user: UserId, fallback: PlaceRefusal) -> PlaceRefusal {
        self.placeable(user).err().unwrap_or(fallback)
    }
}

/// A user coupon as a store holds it for a group of placements: as found, and its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldCoupon {
    pub found: FoundUserCoupon,
    pub discount: Discount,
}

/// Placements decided together against what a store holds locked for them: the products
/// they order with their stock, the user coupons they name, which of their users exist,
/// and the store's clock when it took them.
///
/// Each placement is decided in turn against what the ones before it left (stock taken, a
/// coupon used), so several placements get the outcomes they would have had one after
/// another in that order, each refusal named as [`PlaceFindings::placeable`] names it. A
/// placement that names a product or a coupon not held here, or whose user is not known
/// to exist, is left undecided, for the store to decide alone.
#[derive(Debug, Clone)]
pub struct Allotment {
    now: DateTime<Utc>,
    products: HashMap<ProductId, (ProductSnapshot, i64)>,
    coupons: HashMap<UserCouponId, HeldCoupon>,
    users: HashSet<UserId>,
}

impl Allotment {
    /// `products` (each with its stock), `coupons` and the existing `users`, as held at
    /// the store's time `now`.
    pub fn new(
        now: DateTime<Utc>,
        products: impl IntoIterator<Item = (ProductSnapshot, i64)>,
        coupons: impl IntoIterator<Item = (UserCouponId, HeldCoupon)>,
        users: impl IntoIterator<Item = UserId>,
    ) -> Self {
        Self {
            now,
            products: products
                .into_iter()
                .map(|(p, stock)| (p.id, (p, stock)))
                .collect(),
            coupons: coupons.into_iter().collect(),
            users: users.into_iter().collect(),
        }
    }

    /// The plan of `order` after the placements decided before it, or its refusal; `None`
    /// when it cannot be decided here (something it names is not held, or an amount of it
    /// leaves the range of money, which the store reports alone).
    pub fn place(&mut self, order: &OrderPlacement) -> Option<Result<OrderPlan, PlaceRefusal>> {
        if !self.users.contains(&order.user_id) {
            return None;
        }
        let lines = order.items.lines();
        let mut snapshots = Vec::with_capacity(lines.len());
        let mut short_products = Vec::new();
        for (product, quantity) in lines {
            let (snapshot, stock) = self.products.get(product)?;
            if *stock < quantity.get() {
                short_products.push(*product);
            }
            snapshots.push(snapshot.clone());
        }
        let coupon = match order.user_coupon_id {
            None => None,
            Some(id) => Some((id, *self.coupons.get(&id)?)),
        };
        let findings = PlaceFindings {
            user_exists: true,
            coupon: coupon.map(|(_, held)| Some(held.found)),
            missing_products: Vec::new(),
            short_products,
            now: self.now,
        };
        if let Err(refusal) = findings.placeable(order.user_id) {
            return Some(Err(refusal));
        }
        let applied = coupon.map(|(id, held)| AppliedCoupon {
            id,
            discount: held.discount,
        });
        let plan = OrderPlan::price(order.user_id, &order.items, &snapshots, applied).ok()?;
        for (product, quantity) in lines {
            if let Some((_, stock)) = self.products.get_mut(product) {
                *stock -= quantity.get();
            }
        }
        if let Some(held) = order
            .user_coupon_id
            .and_then(|id| self.coupons.get_mut(&id))
        {
            held.found.state = StoredCouponState::Used;
        }
        Some(Ok(plan))
    }
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total_amount: Money,
    pub discount_amount: Money,
    pub pay_amount: Money,
    pub user_coupon_id: Option<UserCouponId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// Why an order cannot be paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayRefusal {
    #[error("user not found")]
    UserNotFound,
    #[error("order not found")]
    OrderNotFound,
    #[error("the order's payment time has passed")]
    Expired,
    #[error("the order is already paid or cancelled")]
    NotPayable,
}

/// Why an order cannot be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    #[error("user not found")]
    UserNotFound,
    #[error("order not found")]
    OrderNotFound,
    #[error("only an unpaid order can be cancelled")]
    NotCancellable,
}

impl OrderStatus {
    /// Payable only while NOT_PAID and before `expires_at`.
    ///
    /// # Errors
    /// [`PayRefusal::Expired`] for EXPIRED, or NOT_PAID at or past `expires_at`;
    /// [`PayRefusal::NotPayable`] for PAID or CANCELLED.
    pub fn check_payable(
        self,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), PayRefusal> {
        match self {
            Self::NotPaid if now < expires_at => Ok(()),
            Self::NotPaid | Self::Expired => Err(PayRefusal::Expired),
            Self::Paid | Self::Cancelled => Err(PayRefusal::NotPayable),
        }
    }
}

impl Order {
    /// Payable only while NOT_PAID and before `expires_at`.
    ///
    /// # Errors
    /// As [`OrderStatus::check_payable`].
    pub fn check_payable(&self, now: DateTime<Utc>) -> Result<(), PayRefusal> {
        self.status.check_payable(self.expires_at, now)
    }

    /// Only a NOT_PAID order can be cancelled.
    pub fn is_cancellable(&self) -> bool {
        self.status == OrderStatus::NotPaid
    }
}

/// An order as found when a guarded move out of NOT_PAID touched nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundOrder {
    pub owner: UserId,
    pub status: OrderStatus,
    pub expires_at: DateTime<Utc>,
}

/// What a store found when a payment or cancel changed nothing, to name the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFindings {
    pub user_exists: bool,
    /// The order with the requested id, whoever owns it.
    pub order: Option<FoundOrder>,
    /// The database's time when this was read.
    pub now: DateTime<Utc>,
}

impl OrderFindings {
    /// The order, when the user exists and it is theirs (another user's order answers
    /// as if it did not exist).
    fn owned(&self, user: UserId) -> Result<FoundOrder, bool> {
        if !self.user_exists {
            return Err(false);
        }
        self.order.filter(|o| o.owner == user).ok_or(true)
    }

    /// Whether `user` may pay the order as found.
    ///
    /// # Errors
    /// Why not: an unknown user, an order not found (or another user's), or one not payable
    /// ([`OrderStatus::check_payable`]).
    pub fn payable(&self, user: UserId) -> Result<(), PayRefusal> {
        match self.owned(user) {
            Err(false) => Err(PayRefusal::UserNotFound),
            Err(true) => Err(PayRefusal::OrderNotFound),
            Ok(order) => order.status.check_payable(order.expires_at, self.now),
        }
    }

    /// Why `user` could not cancel the order.
    pub fn cancel_refusal(&self, user: UserId) -> CancelRefusal {
        match self.owned(user) {
            Err(false) => CancelRefusal::UserNotFound,
            Err(true) => CancelRefusal::OrderNotFound,
            Ok(_) => CancelRefusal::NotCancellable,
        }
    }
}

/// What a successful payment leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub paid_amount: Money,
    pub balance: Balance,
    pub paid_at: DateTime<Utc>,
}

/// An order to pay from the user's points, as
/// [`OrderStore::pay`](crate::ports::OrderStore::pay) takes it. Whether it may be paid is
/// decided where it is paid, by the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderPayment {
    pub order_id: OrderId,
    pub user_id: UserId,
}

/// Why a payment was not made: a refusal, or a balance short of the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentDenied {
    Refused(PayRefusal),
    InsufficientBalance,
}

/// A payment decided by a [`Settlement`]: the order as paid, and what the payment leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub order: Order,
    pub payment: Payment,
}

/// Payments decided together against what a store holds locked for them: the NOT_PAID
/// orders they name, their owners' wallets, and the store's clock when it took them.
///
/// Each payment is decided in turn against what the ones before it left (an order paid, a
/// wallet debited), so several payments get the outcomes they would have had one after
/// another in that order: a second payment of one order is refused as already paid, and a
/// wallet covers a user's payments while its balance lasts. A payment whose order or wallet
/// is not held here is left undecided, for the store to decide alone.
#[derive(Debug, Clone)]
pub struct Settlement {
    now: DateTime<Utc>,
    orders: HashMap<OrderId, Order>,
    balances: HashMap<UserId, Balance>,
}

impl Settlement {
    /// `orders` and `balances` as held, at the store's time `now`.
    pub fn new(
        now: DateTime<Utc>,
        orders: impl IntoIterator<Item = Order>,
        balances: impl IntoIterator<Item = (UserId, Balance)>,
    ) -> Self {
        Self {
            now,
            orders: orders.into_iter().map(|o| (o.id, o)).collect(),
            balances: balances.into_iter().collect(),
        }
    }

    /// The outcome of `pay` after the payments decided before it, or `None` when it cannot
    /// be decided here: its order is not held (no such order, not NOT_PAID when taken, or
    /// held elsewhere), it is another user's (whether this user exists is not known here),
    /// or its wallet is not held.
    pub fn pay(&mut self, pay: OrderPayment) -> Option<Result<Settled, PaymentDenied>> {
        let order = self.orders.get_mut(&pay.order_id)?;
        if order.user_id != pay.user_id {
            return None;
        }
        let balance = self.balances.get_mut(&pay.user_id)?;
        if let Err(refusal) = order.check_payable(self.now) {
            return Some(Err(PaymentDenied::Refused(refusal)));
        }
        let Some(after) = balance.less(order.pay_amount) else {
            return Some(Err(PaymentDenied::InsufficientBalance));
        };
        *balance = after;
        order.status = OrderStatus::Paid;
        order.paid_at = Some(self.now);
        Some(Ok(Settled {
            order: order.clone(),
            payment: Payment {
                order_id: order.id,
                user_id: order.user_id,
                paid_amount: order.pay_amount,
                balance: after,
                paid_at: self.now,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(raw: i64) -> ProductId {
        ProductId::new(raw).unwrap()
    }

    fn qty(raw: i64) -> OrderQuantity {
        OrderQuantity::new(raw).unwrap()
    }

    fn product(id: i64, price: i64) -> ProductSnapshot {
        ProductSnapshot {
            id: pid(id),
            name: ProductName::new("p").unwrap(),
            price: Price::new(price).unwrap(),
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
            let plan =
                OrderPlan::price(UserId::new(1).unwrap(), &items, &[product(1, 1_000)], c).unwrap();
            assert_eq!(
                (
                    plan.total_amount.get(),
                    plan.discount_amount.get(),
                    plan.pay_amount.get()
                ),
                (3_000, discount, 3_000 - discount)
            );
            assert_eq!(plan.lines[0].amount.get(), 3_000);
        }
        let missing = OrderPlan::price(UserId::new(1).unwrap(), &items, &[], None);
        assert_eq!(missing, Err(PricingError::MissingProduct(pid(1))));
    }

    #[test]
    fn a_placed_order_is_its_plan_unpaid_under_the_stores_id_and_stamps() {
        let items = OrderItems::new(vec![(pid(1), qty(3))]).unwrap();
        let coupon = AppliedCoupon {
            id: UserCouponId::new(7).unwrap(),
            discount: Discount::Fixed(500),
        };
        let plan = OrderPlan::price(
            UserId::new(1).unwrap(),
            &items,
            &[product(1, 1_000)],
            Some(coupon),
        )
        .unwrap();
        let (created, expires) = (
            DateTime::UNIX_EPOCH,
            DateTime::UNIX_EPOCH + Duration::hours(1),
        );
        let order = plan
            .clone()
            .placed(OrderId::new(9).unwrap(), created, expires);
        assert_eq!(
            (
                order.id.get(),
                order.status,
                order.user_coupon_id,
                order.paid_at
            ),
            (9, OrderStatus::NotPaid, Some(coupon.id), None)
        );
        assert_eq!((order.created_at, order.expires_at), (created, expires));
        assert_eq!(
            (order.lines, order.pay_amount, order.user_id),
            (plan.lines, plan.pay_amount, plan.user_id)
        );
    }

    fn findings() -> PlaceFindings {
        PlaceFindings {
            user_exists: true,
            coupon: None,
            missing_products: vec![],
            short_products: vec![],
            now: Utc::now(),
        }
    }

    fn user_coupon(owner: i64, state: StoredCouponState, expires_in: i64) -> FoundUserCoupon {
        FoundUserCoupon {
            owner: UserId::new(owner).unwrap(),
            state,
            expires_at: Utc::now() + Duration::seconds(expires_in),
        }
    }

    #[test]
    fn a_refused_order_names_the_first_rule_broken_in_api_order() {
        let me = UserId::new(1).unwrap();
        let fallback = PlaceRefusal::OutOfStock(pid(9));
        let all_wrong = PlaceFindings {
            user_exists: false,
            coupon: Some(Some(user_coupon(2, StoredCouponState::Used, -5))),
            missing_products: vec![pid(3)],
            short_products: vec![pid(4)],
            ..findings()
        };
        assert_eq!(all_wrong.refusal(me, fallback), PlaceRefusal::UserNotFound);
        let user_ok = PlaceFindings {
            user_exists: true,
            ..all_wrong.clone()
        };
        assert_eq!(
            user_ok.refusal(me, fallback),
            PlaceRefusal::UserCouponNotFound
        );
        let no_such_coupon = PlaceFindings {
            coupon: Some(None),
            ..user_ok.clone()
        };
        assert_eq!(
            no_such_coupon.refusal(me, fallback),
            PlaceRefusal::UserCouponNotFound
        );
        let my_used_coupon = PlaceFindings {
            coupon: Some(Some(user_coupon(1, StoredCouponState::Used, 60))),
            ..user_ok.clone()
        };
        assert_eq!(
            my_used_coupon.refusal(me, fallback),
            PlaceRefusal::ProductNotFound(pid(3))
        );
        let products_exist = PlaceFindings {
            missing_products: vec![],
            ..my_used_coupon
        };
        assert_eq!(
            products_exist.refusal(me, fallback),
            PlaceRefusal::CouponNotUsable
        );
        let expired_coupon = PlaceFindings {
            coupon: Some(Some(user_coupon(1, StoredCouponState::Available, -1))),
            ..products_exist.clone()
        };
        assert_eq!(
            expired_coupon.refusal(me, fallback),
            PlaceRefusal::CouponNotUsable
        );
        let usable_coupon = PlaceFindings {
            coupon: Some(Some(user_coupon(1, StoredCouponState::Available, 60))),
            ..products_exist
        };
        assert_eq!(
            usable_coupon.refusal(me, fallback),
            PlaceRefusal::OutOfStock(pid(4))
        );
        let nothing_wrong_any_more = PlaceFindings {
            short_products: vec![],
            ..usable_coupon
        };
        assert_eq!(nothing_wrong_any_more.refusal(me, fallback), fallback);
    }

    #[test]
    fn a_refused_payment_or_cancel_is_named_from_what_was_found() {
        let me = UserId::new(1).unwrap();
        let now = Utc::now();
        let found = |owner: i64, status, expires_in: i64| OrderFindings {
            user_exists: true,
            order: Some(FoundOrder {
                owner: UserId::new(owner).unwrap(),
                status,
                expires_at: now + Duration::seconds(expires_in),
            }),
            now,
        };
        let no_user = OrderFindings {
            user_exists: false,
            ..found(1, OrderStatus::Paid, 5)
        };
        assert_eq!(no_user.payable(me), Err(PayRefusal::UserNotFound));
        assert_eq!(no_user.cancel_refusal(me), CancelRefusal::UserNotFound);
        let no_order = OrderFindings {
            order: None,
            ..found(1, OrderStatus::Paid, 5)
        };
        assert_eq!(no_order.payable(me), Err(PayRefusal::OrderNotFound));
        let theirs = found(2, OrderStatus::NotPaid, 5);
        assert_eq!(theirs.payable(me), Err(PayRefusal::OrderNotFound));
        assert_eq!(theirs.cancel_refusal(me), CancelRefusal::OrderNotFound);
        assert_eq!(
            found(1, OrderStatus::NotPaid, 0).payable(me),
            Err(PayRefusal::Expired)
        );
        assert_eq!(
            found(1, OrderStatus::Expired, 5).payable(me),
            Err(PayRefusal::Expired)
        );
        assert_eq!(
            found(1, OrderStatus::Cancelled, 5).payable(me),
            Err(PayRefusal::NotPayable)
        );
        assert_eq!(found(1, OrderStatus::NotPaid, 5).payable(me), Ok(()));
        assert_eq!(
            found(1, OrderStatus::Paid, 5).cancel_refusal(me),
            CancelRefusal::NotCancellable
        );
    }

    #[test]
    fn payability_depends_on_status_and_time() {
        let now = Utc::now();
        let order = |status, expires_in: i64| Order {
            id: OrderId::new(1).unwrap(),
            user_id: UserId::new(1).unwrap(),
            status,
            lines: vec![],
            total_amount: Money::ZERO,
            discount_amount: Money::ZERO,
            pay_amount: Money::ZERO,
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
    fn placements_allotted_together_are_decided_in_turn() {
        let now = Utc::now();
        let (me, you) = (UserId::new(1).unwrap(), UserId::new(2).unwrap());
        let coupon = |id: i64, expires_in: i64| {
            (
                UserCouponId::new(id).unwrap(),
                HeldCoupon {
                    found: FoundUserCoupon {
                        owner: me,
                        state: StoredCouponState::Available,
                        expires_at: now + Duration::seconds(expires_in),
                    },
                    discount: Discount::Fixed(500),
                },
            )
        };
        let mut held = Allotment::new(
            now,
            [(product(1, 1_000), 5), (product(2, 700), 1)],
            [coupon(10, 60), coupon(11, 0)],
            [me, you],
        );
        let order = |user: UserId, lines: &[(i64, i64)], coupon: Option<i64>| OrderPlacement {
            user_id: user,
            items: OrderItems::new(lines.iter().map(|(p, q)| (pid(*p), qty(*q))).collect())
                .unwrap(),
            user_coupon_id: coupon.map(|c| UserCouponId::new(c).unwrap()),
            payment_timeout: Duration::minutes(5),
        };
        let plan = held
            .place(&order(me, &[(1, 3)], Some(10)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                plan.total_amount.get(),
                plan.discount_amount.get(),
                plan.pay_amount.get()
            ),
            (3_000, 500, 2_500)
        );
        // Two units of product 1 are left, and the coupon is used.
        assert_eq!(
            held.place(&order(you, &[(1, 3)], None)),
            Some(Err(PlaceRefusal::OutOfStock(pid(1))))
        );
        let plan = held
            .place(&order(you, &[(2, 1), (1, 2)], None))
            .unwrap()
            .unwrap();
        assert_eq!(plan.total_amount.get(), 2 * 1_000 + 700);
        assert_eq!(
            held.place(&order(me, &[(2, 1)], None)),
            Some(Err(PlaceRefusal::OutOfStock(pid(2))))
        );
        assert_eq!(
            held.place(&order(me, &[(1, 1)], Some(10))),
            Some(Err(PlaceRefusal::CouponNotUsable))
        );
        // Precedence as when alone: another user's coupon before the stock.
        assert_eq!(
            held.place(&order(you, &[(1, 1)], Some(11))),
            Some(Err(PlaceRefusal::UserCouponNotFound))
        );
        assert_eq!(
            held.place(&order(me, &[(2, 1)], Some(11))),
            Some(Err(PlaceRefusal::CouponNotUsable))
        );
        // Undecided: an unknown user, a product or a coupon not held.
        assert_eq!(
            held.place(&order(UserId::new(3).unwrap(), &[(2, 1)], None)),
            None
        );
        assert_eq!(held.place(&order(me, &[(1, 1), (3, 1)], None)), None);
        assert_eq!(held.place(&order(me, &[(1, 1)], Some(12))), None);
    }

    #[test]
    fn payments_settled_together_are_decided_in_turn() {
        let now = Utc::now();
        let unpaid = |id: i64, user: i64, amount: i64, expires_in: i64| Order {
            id: OrderId::new(id).unwrap(),
            user_id: UserId::new(user).unwrap(),
            status: OrderStatus::NotPaid,
            lines: vec![],
            total_amount: Money::from_trusted(amount),
            discount_amount: Money::ZERO,
            pay_amount: Money::from_trusted(amount),
            user_coupon_id: None,
            created_at: now,
            expires_at: now + Duration::seconds(expires_in),
            paid_at: None,
        };
        let pay = |order: i64, user: i64| OrderPayment {
            order_id: OrderId::new(order).unwrap(),
            user_id: UserId::new(user).unwrap(),
        };
        let wallet =
            |user: i64, balance: i64| (UserId::new(user).unwrap(), Balance::from_trusted(balance));
        let mut held = Settlement::new(
            now,
            [
                unpaid(1, 1, 600, 60),
                unpaid(2, 1, 500, 60),
                unpaid(3, 1, 400, 60),
                unpaid(4, 2, 100, 0),
                unpaid(5, 3, 100, 60),
                unpaid(6, 4, 100, 60),
            ],
            [wallet(1, 1000), wallet(2, 1000), wallet(4, 1000)],
        );
        let paid = held.pay(pay(1, 1)).unwrap().unwrap();
        assert_eq!(
            (
                paid.order.status,
                paid.order.paid_at,
                paid.payment.balance.get()
            ),
            (OrderStatus::Paid, Some(now), 400)
        );
        assert_eq!(
            (
                paid.payment.order_id.get(),
                paid.payment.paid_amount.get(),
                paid.payment.paid_at
            ),
            (1, 600, now)
        );
        // The same order again: already paid.
        assert_eq!(
            held.pay(pay(1, 1)),
            Some(Err(PaymentDenied::Refused(PayRefusal::NotPayable)))
        );
        // 400 left does not cover 500, and the refusal takes nothing: 400 still pays 400.
        assert_eq!(
            held.pay(pay(2, 1)),
            Some(Err(PaymentDenied::InsufficientBalance))
        );
        assert_eq!(
            held.pay(pay(3, 1)).unwrap().unwrap().payment.balance,
            Balance::ZERO
        );
        assert_eq!(
            held.pay(pay(4, 2)),
            Some(Err(PaymentDenied::Refused(PayRefusal::Expired)))
        );
        // Undecided: another user's order, a wallet not held, an order not held.
        assert_eq!(held.pay(pay(6, 1)), None);
        assert_eq!(held.pay(pay(5, 3)), None);
        assert_eq!(held.pay(pay(7, 1)), None);
        assert_eq!(
            held.pay(pay(6, 4)).unwrap().unwrap().payment.balance.get(),
            900
        );
    }

    #[test]
    fn stored_statuses_round_trip_and_unknown_names_are_errors() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Ok(s));
        }
        assert_eq!(
            OrderStatus::ALL.map(OrderStatus::as_str),
            ["NOT_PAID", "PAID", "EXPIRED", "CANCELLED"]
        );
        for unknown in ["", "not_paid", "PAID ", "REFUNDED"] {
            assert_eq!(
                OrderStatus::parse(unknown),
                Err(UnknownOrderStatus(unknown.to_owned()))
            );
        }
    }
}

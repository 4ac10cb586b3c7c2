//! Ordering, paying and cancelling.

use std::sync::Arc;

use chrono::Duration;
use domain::idempotency::Completion;
use domain::order::{
    AppliedCoupon, Order, OrderItems, OrderPlan, PayRefusal, Payment, PaymentPlan,
};
use domain::ports::{
    CancelError, Clock, CouponStore, OrderStore, PayError, PlaceError, ProductRepository,
    UserRepository,
};
use domain::{OrderId, Page, PageRequest, ProductId, UserCouponId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("user not found")]
    UserNotFound,
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("user coupon not found")]
    UserCouponNotFound,
    #[error("order not found")]
    OrderNotFound,
    #[error("product {0} is out of stock")]
    OutOfStock(ProductId),
    #[error("the coupon is not usable")]
    CouponNotUsable,
    #[error("the balance is lower than the amount to pay")]
    InsufficientBalance,
    #[error("the order's payment time has passed")]
    OrderExpired,
    #[error("the order is already paid or cancelled")]
    OrderNotPayable,
    #[error("only an unpaid order can be cancelled")]
    NotCancellable,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<PayRefusal> for OrderError {
    fn from(refusal: PayRefusal) -> Self {
        match refusal {
            PayRefusal::Expired => Self::OrderExpired,
            PayRefusal::NotPayable => Self::OrderNotPayable,
        }
    }
}

/// A validated order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrderCommand {
    pub user_id: UserId,
    pub items: OrderItems,
    pub user_coupon_id: Option<UserCouponId>,
}

/// Order use cases.
#[derive(Clone)]
pub struct Orders {
    orders: Arc<dyn OrderStore>,
    products: Arc<dyn ProductRepository>,
    coupons: Arc<dyn CouponStore>,
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
    payment_timeout: Duration,
}

impl Orders {
    pub fn new(
        orders: Arc<dyn OrderStore>,
        products: Arc<dyn ProductRepository>,
        coupons: Arc<dyn CouponStore>,
        users: Arc<dyn UserRepository>,
        clock: Arc<dyn Clock>,
        payment_timeout: Duration,
    ) -> Self {
        Self {
            orders,
            products,
            coupons,
            users,
            clock,
            payment_timeout,
        }
    }

    async fn require_user(&self, user: UserId) -> Result<(), OrderError> {
        match self.users.find(user).await? {
            Some(_) => Ok(()),
            None => Err(OrderError::UserNotFound),
        }
    }

    /// The user's order, or `OrderNotFound` (also for another user's order).
    async fn owned_order(&self, user: UserId, id: OrderId) -> Result<Order, OrderError> {
        self.require_user(user).await?;
        match self.orders.find(id).await? {
            Some(order) if order.user_id == user => Ok(order),
            _ => Err(OrderError::OrderNotFound),
        }
    }

    /// Places an order: prices it from the products as they are now, applies the coupon,
    /// then deducts stock, uses the coupon and stores the order in one transaction.
    ///
    /// # Errors
    /// In this order: `UserNotFound`, `UserCouponNotFound` (also another user's),
    /// `ProductNotFound`, `CouponNotUsable`, `OutOfStock`.
    #[tracing::instrument(name = "place_order", skip_all, fields(user_id = %cmd.user_id))]
    pub async fn place(
        &self,
        cmd: PlaceOrderCommand,
        completion: Option<Completion<Order>>,
    ) -> Result<Order, OrderError> {
        self.require_user(cmd.user_id).await?;
        // Every referenced thing must exist (404) before any business rule is judged (409).
        let coupon = match cmd.user_coupon_id {
            None => None,
            Some(id) => match self.coupons.user_coupon(id).await? {
                Some(copy) if copy.user_id == cmd.user_id => Some(copy),
                _ => return Err(OrderError::UserCouponNotFound),
            },
        };
        let products = self.products.find_many(cmd.items.product_ids()).await?;
        let now = self.clock.now();
        let applied = coupon.as_ref().map(|copy| AppliedCoupon {
            id: copy.id,
            discount: copy.discount,
        });
        let plan = OrderPlan::price(
            cmd.user_id,
            &cmd.items,
            &products,
            applied,
            now,
            self.payment_timeout,
        )
        .map_err(|missing| OrderError::ProductNotFound(missing.0))?;
        if coupon.is_some_and(|copy| !copy.is_usable_at(now)) {
            return Err(OrderError::CouponNotUsable);
        }
        self.orders
            .place(plan, completion)
            .await
            .map_err(|err| match err {
                PlaceError::OutOfStock(p) => OrderError::OutOfStock(p),
                PlaceError::CouponNotUsable => OrderError::CouponNotUsable,
                PlaceError::Unknown(e) => OrderError::Unknown(e),
            })
    }

    /// # Errors
    /// `UserNotFound`, `OrderNotFound` (also for another user's order).
    #[tracing::instrument(name = "get_order", skip_all, fields(order_id = %id))]
    pub async fn get(&self, user: UserId, id: OrderId) -> Result<Order, OrderError> {
        self.owned_order(user, id).await
    }

    /// # Errors
    /// `UserNotFound`.
    #[tracing::instrument(name = "list_orders", skip_all, fields(user_id = %user))]
    pub async fn of_user(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> Result<Page<Order>, OrderError> {
        self.require_user(user).await?;
        Ok(self.orders.of_user(user, page).await?)
    }

    /// Cancels an unpaid order, restoring stock and coupon.
    ///
    /// # Errors
    /// `UserNotFound`, `OrderNotFound`, `NotCancellable`.
    #[tracing::instrument(name = "cancel_order", skip_all, fields(order_id = %id))]
    pub async fn cancel(&self, user: UserId, id: OrderId) -> Result<Order, OrderError> {
        let order = self.owned_order(user, id).await?;
        if !order.is_cancellable() {
            return Err(OrderError::NotCancellable);
        }
        self.orders
            .cancel(id, self.clock.now())
            .await
            .map_err(|err| match err {
                CancelError::NotCancellable => OrderError::NotCancellable,
                CancelError::Unknown(e) => OrderError::Unknown(e),
            })
    }

    /// Pays an order from the user's points.
    ///
    /// # Errors
    /// `UserNotFound`, `OrderNotFound`, `OrderExpired`, `OrderNotPayable`, `InsufficientBalance`.
    #[tracing::instrument(name = "pay_order", skip_all, fields(order_id = %id))]
    pub async fn pay(
        &self,
        user: UserId,
        id: OrderId,
        completion: Option<Completion<Payment>>,
    ) -> Result<Payment, OrderError> {
        let order = self.owned_order(user, id).await?;
        let now = self.clock.now();
        order.check_payable(now)?;
        let plan = PaymentPlan {
            order_id: id,
            user_id: user,
            amount: order.pay_amount,
            now,
        };
        self.orders
            .pay(plan, completion)
            .await
            .map_err(|err| match err {
                PayError::InsufficientBalance => OrderError::InsufficientBalance,
                PayError::Refused(refusal) => refusal.into(),
                PayError::Unknown(e) => OrderError::Unknown(e),
            })
    }
}

impl Orders {
    /// Orders expired per transaction by [`Self::expire_due`].
    pub const EXPIRY_BATCH: i64 = 200;

    /// Expires every unpaid order past its time (the scheduler's and the admin job's work).
    /// Returns how many this call expired.
    ///
    /// # Errors
    /// When the store fails; batches already committed stay committed.
    #[tracing::instrument(name = "expire_orders", skip_all)]
    pub async fn expire_due(&self) -> anyhow::Result<u64> {
        let mut expired = 0;
        loop {
            let batch = self
                .orders
                .expire_due(self.clock.now(), Self::EXPIRY_BATCH)
                .await?;
            expired += batch;
            if batch < Self::EXPIRY_BATCH.unsigned_abs() {
                return Ok(expired);
            }
        }
    }
}

crate::debug_opaque!(Orders);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use domain::CouponId;
    use domain::coupon::{CouponName, Discount, StoredCouponState, UserCoupon};
    use domain::order::{OrderQuantity, OrderStatus};
    use domain::points::Balance;
    use domain::ports::{
        MockClock, MockCouponStore, MockOrderStore, MockProductRepository, MockUserRepository,
    };
    use domain::product::{Description, Price, Product, ProductName, Stock};
    use domain::user::User;

    struct Setup {
        now: DateTime<Utc>,
        orders: MockOrderStore,
        products: MockProductRepository,
        coupons: MockCouponStore,
        users: MockUserRepository,
    }

    fn uid(raw: i64) -> UserId {
        UserId::new(raw).unwrap()
    }

    impl Setup {
        fn new(user_exists: bool) -> Self {
            let mut users = MockUserRepository::new();
            users.expect_find().returning(move |id| {
                Ok(user_exists.then(|| User {
                    id,
                    created_at: Utc::now(),
                }))
            });
            let mut products = MockProductRepository::new();
            products.expect_find_many().returning(|ids| {
                Ok(ids
                    .into_iter()
                    .filter(|id| id.get() < 100)
                    .map(|id| Product {
                        id,
                        name: ProductName::new("p").unwrap(),
                        description: Description::default(),
                        price: Price::new(1_000).unwrap(),
                        stock: Stock::new(10).unwrap(),
                    })
                    .collect())
            });
            Self {
                now: Utc::now(),
                orders: MockOrderStore::new(),
                products,
                coupons: MockCouponStore::new(),
                users,
            }
        }

        fn with_coupon(mut self, owner: i64, state: StoredCouponState, expires_in: i64) -> Self {
            let now = self.now;
            self.coupons.expect_user_coupon().returning(move |id| {
                Ok(Some(UserCoupon {
                    id,
                    user_id: uid(owner),
                    coupon_id: CouponId::new(1).unwrap(),
                    name: CouponName::new("c").unwrap(),
                    discount: Discount::Rate(10),
                    state,
                    issued_at: now,
                    expires_at: now + Duration::seconds(expires_in),
                    used_at: None,
                }))
            });
            self
        }

        fn with_order(mut self, owner: i64, status: OrderStatus, expires_in: i64) -> Self {
            let now = self.now;
            self.orders.expect_find().returning(move |id| {
                Ok(Some(order(
                    id,
                    owner,
                    status,
                    now + Duration::seconds(expires_in),
                )))
            });
            self
        }

        fn build(self) -> Orders {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(self.now);
            Orders::new(
                Arc::new(self.orders),
                Arc::new(self.products),
                Arc::new(self.coupons),
                Arc::new(self.users),
                Arc::new(clock),
                Duration::minutes(5),
            )
        }
    }

    fn order(id: OrderId, owner: i64, status: OrderStatus, expires_at: DateTime<Utc>) -> Order {
        Order {
            id,
            user_id: uid(owner),
            status,
            lines: vec![],
            total_amount: 3_000,
            discount_amount: 0,
            pay_amount: 3_000,
            user_coupon_id: None,
            created_at: expires_at - Duration::minutes(5),
            expires_at,
            paid_at: None,
        }
    }

    fn cmd(products: &[i64], coupon: Option<i64>) -> PlaceOrderCommand {
        PlaceOrderCommand {
            user_id: uid(1),
            items: OrderItems::new(
                products
                    .iter()
                    .map(|p| (ProductId::new(*p).unwrap(), OrderQuantity::new(3).unwrap()))
                    .collect(),
            )
            .unwrap(),
            user_coupon_id: coupon.map(|c| UserCouponId::new(c).unwrap()),
        }
    }

    fn oid() -> OrderId {
        OrderId::new(7).unwrap()
    }

    #[tokio::test]
    async fn an_order_is_priced_with_its_coupon_and_placed_once() {
        let mut setup = Setup::new(true).with_coupon(1, StoredCouponState::Available, 60);
        let now = setup.now;
        setup
            .orders
            .expect_place()
            .withf(move |plan, _| {
                (plan.total_amount, plan.discount_amount, plan.pay_amount) == (3_000, 300, 2_700)
                    && plan.expires_at == now + Duration::minutes(5)
                    && plan.coupon.is_some()
            })
            .times(1)
            .returning(|plan, _| {
                Ok(order(
                    OrderId::new(1).unwrap(),
                    plan.user_id.get(),
                    OrderStatus::NotPaid,
                    plan.expires_at,
                ))
            });
        setup.build().place(cmd(&[1], Some(5)), None).await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_user_orders_nothing_and_reads_no_product() {
        let mut setup = Setup::new(false);
        setup.products = MockProductRepository::new();
        setup.products.expect_find_many().never();
        setup.orders.expect_place().never();
        let err = setup
            .build()
            .place(cmd(&[1], None), None)
            .await
            .unwrap_err();
        assert!(matches!(err, OrderError::UserNotFound));
    }

    #[tokio::test]
    async fn a_missing_product_is_not_found_before_the_coupon_is_judged_usable() {
        let mut setup = Setup::new(true).with_coupon(1, StoredCouponState::Used, 60);
        setup.orders.expect_place().never();
        let err = setup
            .build()
            .place(cmd(&[1, 200], Some(5)), None)
            .await
            .unwrap_err();
        assert!(matches!(err, OrderError::ProductNotFound(p) if p.get() == 200));
    }

    #[tokio::test]
    async fn another_users_coupon_is_not_found_and_a_used_or_expired_one_not_usable() {
        let mut setup = Setup::new(true).with_coupon(2, StoredCouponState::Available, 60);
        setup.orders.expect_place().never();
        let err = setup
            .build()
            .place(cmd(&[1], Some(5)), None)
            .await
            .unwrap_err();
        assert!(matches!(err, OrderError::UserCouponNotFound));
        for (state, expires_in) in [
            (StoredCouponState::Used, 60),
            (StoredCouponState::Available, 0),
        ] {
            let mut setup = Setup::new(true).with_coupon(1, state, expires_in);
            setup.orders.expect_place().never();
            let err = setup
                .build()
                .place(cmd(&[1], Some(5)), None)
                .await
                .unwrap_err();
            assert!(matches!(err, OrderError::CouponNotUsable));
        }
    }

    #[tokio::test]
    async fn the_stores_refusals_become_the_use_cases() {
        let mut setup = Setup::new(true);
        setup
            .orders
            .expect_place()
            .returning(|_, _| Err(PlaceError::OutOfStock(ProductId::new(1).unwrap())));
        let err = setup
            .build()
            .place(cmd(&[1], None), None)
            .await
            .unwrap_err();
        assert!(matches!(err, OrderError::OutOfStock(_)));
    }

    #[tokio::test]
    async fn paying_checks_owner_then_status_then_balance() {
        let mut setup = Setup::new(true).with_order(2, OrderStatus::NotPaid, 60);
        setup.orders.expect_pay().never();
        assert!(matches!(
            setup.build().pay(uid(1), oid(), None).await.unwrap_err(),
            OrderError::OrderNotFound
        ));

        for (status, expires_in, expired) in [
            (OrderStatus::NotPaid, 0, true),
            (OrderStatus::Expired, 60, true),
            (OrderStatus::Paid, 60, false),
            (OrderStatus::Cancelled, 60, false),
        ] {
            let mut setup = Setup::new(true).with_order(1, status, expires_in);
            setup.orders.expect_pay().never();
            let err = setup.build().pay(uid(1), oid(), None).await.unwrap_err();
            if expired {
                assert!(matches!(err, OrderError::OrderExpired), "{status:?}");
            } else {
                assert!(matches!(err, OrderError::OrderNotPayable), "{status:?}");
            }
        }

        let mut setup = Setup::new(true).with_order(1, OrderStatus::NotPaid, 60);
        setup
            .orders
            .expect_pay()
            .returning(|_, _| Err(PayError::InsufficientBalance));
        let err = setup.build().pay(uid(1), oid(), None).await.unwrap_err();
        assert!(matches!(err, OrderError::InsufficientBalance));
    }

    #[tokio::test]
    async fn a_payment_debits_the_orders_pay_amount() {
        let mut setup = Setup::new(true).with_order(1, OrderStatus::NotPaid, 60);
        let now = setup.now;
        setup
            .orders
            .expect_pay()
            .withf(move |plan, _| plan.amount == 3_000 && plan.now == now && plan.user_id == uid(1))
            .times(1)
            .returning(|plan, _| {
                Ok(Payment {
                    order_id: plan.order_id,
                    user_id: plan.user_id,
                    paid_amount: plan.amount,
                    balance: Balance::ZERO,
                    paid_at: plan.now,
                })
            });
        let paid = setup.build().pay(uid(1), oid(), None).await.unwrap();
        assert_eq!(paid.paid_amount, 3_000);
    }

    #[tokio::test]
    async fn only_an_unpaid_order_reaches_the_store_to_be_cancelled() {
        let mut setup = Setup::new(true).with_order(1, OrderStatus::Paid, 60);
        setup.orders.expect_cancel().never();
        assert!(matches!(
            setup.build().cancel(uid(1), oid()).await.unwrap_err(),
            OrderError::NotCancellable
        ));

        let mut setup = Setup::new(true).with_order(1, OrderStatus::NotPaid, 60);
        setup
            .orders
            .expect_cancel()
            .returning(|_, _| Err(CancelError::NotCancellable));
        assert!(matches!(
            setup.build().cancel(uid(1), oid()).await.unwrap_err(),
            OrderError::NotCancellable
        ));
    }

    #[tokio::test]
    async fn expiry_runs_batches_until_one_is_short() {
        let mut setup = Setup::new(true);
        let mut batches = vec![
            3,
            Orders::EXPIRY_BATCH.unsigned_abs(),
            Orders::EXPIRY_BATCH.unsigned_abs(),
        ];
        setup
            .orders
            .expect_expire_due()
            .times(3)
            .returning(move |_, _| Ok(batches.pop().unwrap_or(0)));
        assert_eq!(
            setup.build().expire_due().await.unwrap(),
            2 * Orders::EXPIRY_BATCH.unsigned_abs() + 3
        );
    }
}

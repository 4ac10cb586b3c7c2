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
    /// In this order: `UserNotFound`, `ProductNotFound`, `UserCouponNotFound` (also another
    /// user's), `CouponNotUsable`, `OutOfStock`.
    #[tracing::instrument(name = "place_order", skip_all, fields(user_id = %cmd.user_id))]
    pub async fn place(
        &self,
        cmd: PlaceOrderCommand,
        completion: Option<Completion<Order>>,
    ) -> Result<Order, OrderError> {
        self.require_user(cmd.user_id).await?;
        let products = self.products.find_many(cmd.items.product_ids()).await?;
        let now = self.clock.now();
        // Every referenced thing must exist before any business rule is judged.
        let probe = OrderPlan::price(
            cmd.user_id,
            &cmd.items,
            &products,
            None,
            now,
            self.payment_timeout,
        )
        .map_err(|missing| OrderError::ProductNotFound(missing.0))?;
        let coupon = match cmd.user_coupon_id {
            None => None,
            Some(id) => {
                let copy = match self.coupons.user_coupon(id).await? {
                    Some(copy) if copy.user_id == cmd.user_id => copy,
                    _ => return Err(OrderError::UserCouponNotFound),
                };
                if !copy.is_usable_at(now) {
                    return Err(OrderError::CouponNotUsable);
                }
                Some(AppliedCoupon {
                    id,
                    discount: copy.discount,
                })
            }
        };
        let plan = match coupon {
            None => probe,
            Some(_) => OrderPlan::price(
                cmd.user_id,
                &cmd.items,
                &products,
                coupon,
                now,
                self.payment_timeout,
            )
            .map_err(|missing| OrderError::ProductNotFound(missing.0))?,
        };
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

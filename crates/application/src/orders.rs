//! Ordering, paying and cancelling.
//!
//! Each action is one call to the [`OrderStore`]: the store decides in one transaction,
//! under its row locks and by the database's clock, with the domain's rules (pricing in
//! [`domain::order::OrderPlan::price`], refusals named by
//! [`domain::order::PlaceFindings`] and [`domain::order::OrderFindings`]). Nothing is
//! read beforehand: a read before the transaction could only be stale by the time the
//! transaction decides, and would cost a round trip.

use std::sync::Arc;

use chrono::Duration;
use domain::idempotency::Completion;
use domain::order::{
    CancelRefusal, Order, OrderItems, PayOrder, PayRefusal, Payment, PlaceOrder, PlaceRefusal,
};
use domain::ports::{CancelError, OrderStore, PayError, PlaceError};
use domain::user::ForUser;
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

impl From<PlaceRefusal> for OrderError {
    fn from(refusal: PlaceRefusal) -> Self {
        match refusal {
            PlaceRefusal::UserNotFound => Self::UserNotFound,
            PlaceRefusal::UserCouponNotFound => Self::UserCouponNotFound,
            PlaceRefusal::ProductNotFound(p) => Self::ProductNotFound(p),
            PlaceRefusal::CouponNotUsable => Self::CouponNotUsable,
            PlaceRefusal::OutOfStock(p) => Self::OutOfStock(p),
        }
    }
}

impl From<PayRefusal> for OrderError {
    fn from(refusal: PayRefusal) -> Self {
        match refusal {
            PayRefusal::UserNotFound => Self::UserNotFound,
            PayRefusal::OrderNotFound => Self::OrderNotFound,
            PayRefusal::Expired => Self::OrderExpired,
            PayRefusal::NotPayable => Self::OrderNotPayable,
        }
    }
}

impl From<CancelRefusal> for OrderError {
    fn from(refusal: CancelRefusal) -> Self {
        match refusal {
            CancelRefusal::UserNotFound => Self::UserNotFound,
            CancelRefusal::OrderNotFound => Self::OrderNotFound,
            CancelRefusal::NotCancellable => Self::NotCancellable,
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
    payment_timeout: Duration,
}

impl Orders {
    pub fn new(orders: Arc<dyn OrderStore>, payment_timeout: Duration) -> Self {
        Self {
            orders,
            payment_timeout,
        }
    }

    /// Places an order: in one transaction, takes the stock and snapshots the prices,
    /// applies and uses the coupon, and stores the order, payable for the configured
    /// payment timeout.
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
        let order = PlaceOrder {
            user_id: cmd.user_id,
            items: cmd.items,
            user_coupon_id: cmd.user_coupon_id,
            payment_timeout: self.payment_timeout,
        };
        self.orders
            .place(order, completion)
            .await
            .map_err(|err| match err {
                PlaceError::Refused(refusal) => refusal.into(),
                PlaceError::Unknown(e) => OrderError::Unknown(e),
            })
    }

    /// # Errors
    /// `UserNotFound`, `OrderNotFound` (also for another user's order).
    #[tracing::instrument(name = "get_order", skip_all, fields(order_id = %id))]
    pub async fn get(&self, user: UserId, id: OrderId) -> Result<Order, OrderError> {
        match self.orders.find(user, id).await? {
            ForUser::UnknownUser => Err(OrderError::UserNotFound),
            ForUser::Found(None) => Err(OrderError::OrderNotFound),
            ForUser::Found(Some(order)) => Ok(order),
        }
    }

    /// # Errors
    /// `UserNotFound`.
    #[tracing::instrument(name = "list_orders", skip_all, fields(user_id = %user))]
    pub async fn of_user(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> Result<Page<Order>, OrderError> {
        match self.orders.of_user(user, page).await? {
            ForUser::UnknownUser => Err(OrderError::UserNotFound),
            ForUser::Found(page) => Ok(page),
        }
    }

    /// Cancels an unpaid order, restoring stock and coupon.
    ///
    /// # Errors
    /// `UserNotFound`, `OrderNotFound`, `NotCancellable`.
    #[tracing::instrument(name = "cancel_order", skip_all, fields(order_id = %id))]
    pub async fn cancel(&self, user: UserId, id: OrderId) -> Result<Order, OrderError> {
        self.orders.cancel(user, id).await.map_err(|err| match err {
            CancelError::Refused(refusal) => refusal.into(),
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
        let pay = PayOrder {
            order_id: id,
            user_id: user,
        };
        self.orders
            .pay(pay, completion)
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
            let batch = self.orders.expire_due(Self::EXPIRY_BATCH).await?;
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
    use chrono::Utc;
    use domain::order::{OrderQuantity, OrderStatus};
    use domain::points::Balance;
    use domain::ports::MockOrderStore;

    fn uid(raw: i64) -> UserId {
        UserId::new(raw).unwrap()
    }

    fn oid() -> OrderId {
        OrderId::new(7).unwrap()
    }

    fn order(owner: i64, status: OrderStatus) -> Order {
        let now = Utc::now();
        Order {
            id: oid(),
            user_id: uid(owner),
            status,
            lines: vec![],
            total_amount: 3_000,
            discount_amount: 0,
            pay_amount: 3_000,
            user_coupon_id: None,
            created_at: now,
            expires_at: now + Duration::minutes(5),
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

    fn orders(store: MockOrderStore) -> Orders {
        Orders::new(Arc::new(store), Duration::minutes(5))
    }

    #[tokio::test]
    async fn placing_is_one_store_call_with_the_request_and_the_payment_timeout() {
        let mut store = MockOrderStore::new();
        store
            .expect_place()
            .withf(|order, completion| {
                order.user_id == uid(1)
                    && order.items.product_ids() == vec![ProductId::new(2).unwrap()]
                    && order.user_coupon_id == Some(UserCouponId::new(5).unwrap())
                    && order.payment_timeout == Duration::minutes(5)
                    && completion.is_none()
            })
            .times(1)
            .returning(|_, _| Ok(order(1, OrderStatus::NotPaid)));
        let placed = orders(store).place(cmd(&[2], Some(5)), None).await.unwrap();
        assert_eq!(placed.status, OrderStatus::NotPaid);
    }

    #[tokio::test]
    async fn a_refused_order_answers_the_refusal_the_store_named() {
        for (refusal, expected) in [
            (PlaceRefusal::UserNotFound, "user not found"),
            (PlaceRefusal::UserCouponNotFound, "user coupon not found"),
            (
                PlaceRefusal::ProductNotFound(ProductId::new(2).unwrap()),
                "product 2 not found",
            ),
            (PlaceRefusal::CouponNotUsable, "the coupon is not usable"),
            (
                PlaceRefusal::OutOfStock(ProductId::new(2).unwrap()),
                "product 2 is out of stock",
            ),
        ] {
            let mut store = MockOrderStore::new();
            store
                .expect_place()
                .times(1)
                .returning(move |_, _| Err(PlaceError::Refused(refusal)));
            let err = orders(store)
                .place(cmd(&[2], None), None)
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
    }

    #[tokio::test]
    async fn reading_an_order_tells_an_unknown_user_from_an_unknown_order() {
        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .withf(|user, id| *user == uid(1) && *id == oid())
            .returning(|_, _| Ok(ForUser::UnknownUser));
        let err = orders(store).get(uid(1), oid()).await.unwrap_err();
        assert!(matches!(err, OrderError::UserNotFound));

        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .returning(|_, _| Ok(ForUser::Found(None)));
        let err = orders(store).get(uid(1), oid()).await.unwrap_err();
        assert!(matches!(err, OrderError::OrderNotFound));

        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .returning(|_, _| Ok(ForUser::Found(Some(order(1, OrderStatus::Paid)))));
        assert_eq!(
            orders(store).get(uid(1), oid()).await.unwrap().status,
            OrderStatus::Paid
        );
    }

    #[tokio::test]
    async fn paying_passes_the_owner_and_maps_every_refusal() {
        let mut store = MockOrderStore::new();
        store
            .expect_pay()
            .withf(|pay, _| pay.order_id == oid() && pay.user_id == uid(1))
            .times(1)
            .returning(|pay, _| {
                Ok(Payment {
                    order_id: pay.order_id,
                    user_id: pay.user_id,
                    paid_amount: 3_000,
                    balance: Balance::from_trusted(7_000),
                    paid_at: Utc::now(),
                })
            });
        let paid = orders(store).pay(uid(1), oid(), None).await.unwrap();
        assert_eq!(paid.balance, Balance::from_trusted(7_000));

        for (err, expected) in [
            (
                PayError::InsufficientBalance,
                "the balance is lower than the amount to pay",
            ),
            (
                PayError::Refused(PayRefusal::UserNotFound),
                "user not found",
            ),
            (
                PayError::Refused(PayRefusal::OrderNotFound),
                "order not found",
            ),
            (
                PayError::Refused(PayRefusal::Expired),
                "the order's payment time has passed",
            ),
            (
                PayError::Refused(PayRefusal::NotPayable),
                "the order is already paid or cancelled",
            ),
        ] {
            let mut store = MockOrderStore::new();
            let err = std::sync::Mutex::new(Some(err));
            store
                .expect_pay()
                .times(1)
                .returning(move |_, _| Err(err.lock().unwrap().take().unwrap()));
            let got = orders(store).pay(uid(1), oid(), None).await.unwrap_err();
            assert_eq!(got.to_string(), expected);
        }
    }

    #[tokio::test]
    async fn cancelling_maps_the_refusal_the_store_named() {
        let mut store = MockOrderStore::new();
        store
            .expect_cancel()
            .withf(|user, id| *user == uid(1) && *id == oid())
            .times(1)
            .returning(|_, _| Err(CancelError::Refused(CancelRefusal::NotCancellable)));
        let err = orders(store).cancel(uid(1), oid()).await.unwrap_err();
        assert!(matches!(err, OrderError::NotCancellable));
    }

    #[tokio::test]
    async fn expiry_runs_batches_until_one_is_not_full() {
        let mut store = MockOrderStore::new();
        let mut calls = 0;
        store
            .expect_expire_due()
            .withf(|limit| *limit == Orders::EXPIRY_BATCH)
            .times(3)
            .returning(move |_| {
                calls += 1;
                Ok(if calls < 3 { 200 } else { 5 })
            });
        assert_eq!(orders(store).expire_due().await.unwrap(), 405);
    }
}

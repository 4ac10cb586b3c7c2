//! Placing an order.

use std::sync::Arc;

use chrono::Duration;
use domain::idempotency::Completion;
use domain::order::{Order, OrderItems, OrderPlacement, PlaceRefusal};
use domain::ports::{OrderStore, PlaceError};
use domain::{ProductId, UserCouponId, UserId};

/// Places an order: in one transaction, takes the stock and snapshots the prices,
/// applies and uses the coupon, and stores the order, payable for the configured
/// payment timeout.
#[derive(Clone)]
pub struct PlaceOrder {
    orders: Arc<dyn OrderStore>,
    payment_timeout: Duration,
}

/// A validated order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrderCommand {
    pub user_id: UserId,
    pub items: OrderItems,
    pub user_coupon_id: Option<UserCouponId>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
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
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<PlaceRefusal> for PlaceOrderError {
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

impl PlaceOrder {
    pub fn new(orders: Arc<dyn OrderStore>, payment_timeout: Duration) -> Self {
        Self {
            orders,
            payment_timeout,
        }
    }

    /// Places the order; with a `completion`, the idempotency key's response is stored
    /// in the same transaction.
    ///
    /// # Errors
    /// The first rule broken, in this order: [`PlaceOrderError::UserNotFound`],
    /// [`PlaceOrderError::UserCouponNotFound`] (also another user's),
    /// [`PlaceOrderError::ProductNotFound`], [`PlaceOrderError::CouponNotUsable`],
    /// [`PlaceOrderError::OutOfStock`].
    #[tracing::instrument(name = "place_order", skip_all, fields(user_id = %cmd.user_id))]
    pub async fn execute(
        &self,
        cmd: PlaceOrderCommand,
        completion: Option<Completion<Order>>,
    ) -> Result<Order, PlaceOrderError> {
        let placement = OrderPlacement {
            user_id: cmd.user_id,
            items: cmd.items,
            user_coupon_id: cmd.user_coupon_id,
            payment_timeout: self.payment_timeout,
        };
        self.orders
            .place(placement, completion)
            .await
            .map_err(|err| match err {
                PlaceError::Refused(refusal) => refusal.into(),
                PlaceError::Unknown(e) => PlaceOrderError::Unknown(e),
            })
    }
}

crate::debug_opaque!(PlaceOrder);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::fixtures::{order, uid};
    use domain::order::{OrderQuantity, OrderStatus};
    use domain::ports::MockOrderStore;

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

    fn place_order(store: MockOrderStore) -> PlaceOrder {
        PlaceOrder::new(Arc::new(store), Duration::minutes(5))
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
        let placed = place_order(store)
            .execute(cmd(&[2], Some(5)), None)
            .await
            .unwrap();
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
            let err = place_order(store)
                .execute(cmd(&[2], None), None)
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
    }
}

//! Cancelling an unpaid order.

use std::sync::Arc;

use domain::order::{CancelRefusal, Order};
use domain::ports::{CancelError, OrderStore};
use domain::{OrderId, UserId};

/// Cancels an unpaid order, restoring its stock and coupon exactly once.
#[derive(Clone)]
pub struct CancelOrder {
    orders: Arc<dyn OrderStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum CancelOrderError {
    #[error("user not found")]
    UserNotFound,
    #[error("order not found")]
    OrderNotFound,
    #[error("only an unpaid order can be cancelled")]
    NotCancellable,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<CancelRefusal> for CancelOrderError {
    fn from(refusal: CancelRefusal) -> Self {
        match refusal {
            CancelRefusal::UserNotFound => Self::UserNotFound,
            CancelRefusal::OrderNotFound => Self::OrderNotFound,
            CancelRefusal::NotCancellable => Self::NotCancellable,
        }
    }
}

impl CancelOrder {
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    /// # Errors
    /// [`CancelOrderError::UserNotFound`], [`CancelOrderError::OrderNotFound`] (also for
    /// another user's order), [`CancelOrderError::NotCancellable`] (not NOT_PAID).
    #[tracing::instrument(name = "cancel_order", skip_all, fields(order_id = %id))]
    pub async fn execute(&self, user: UserId, id: OrderId) -> Result<Order, CancelOrderError> {
        self.orders.cancel(user, id).await.map_err(|err| match err {
            CancelError::Refused(refusal) => refusal.into(),
            CancelError::Unknown(e) => CancelOrderError::Unknown(e),
        })
    }
}

crate::debug_opaque!(CancelOrder);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::fixtures::{oid, uid};
    use domain::ports::MockOrderStore;

    #[tokio::test]
    async fn cancelling_maps_the_refusal_the_store_named() {
        let mut store = MockOrderStore::new();
        store
            .expect_cancel()
            .withf(|user, id| *user == uid(1) && *id == oid())
            .times(1)
            .returning(|_, _| Err(CancelError::Refused(CancelRefusal::NotCancellable)));
        let err = CancelOrder::new(Arc::new(store))
            .execute(uid(1), oid())
            .await
            .unwrap_err();
        assert!(matches!(err, CancelOrderError::NotCancellable));
    }
}

//! Paying an order from the user's points.

use std::sync::Arc;

use domain::idempotency::Completion;
use domain::order::{OrderPayment, PayRefusal, Payment};
use domain::ports::{OrderStore, PayError};
use domain::{OrderId, UserId};

/// Pays an order from the user's points: in one transaction, only while the order is
/// theirs, unpaid and before its deadline by the database's clock, and only if the
/// balance covers it.
#[derive(Clone)]
pub struct PayOrder {
    orders: Arc<dyn OrderStore>,
}

/// A validated payment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayOrderCommand {
    pub user_id: UserId,
    pub order_id: OrderId,
}

#[derive(Debug, thiserror::Error)]
pub enum PayOrderError {
    #[error("user not found")]
    UserNotFound,
    #[error("order not found")]
    OrderNotFound,
    #[error("the order's payment time has passed")]
    OrderExpired,
    #[error("the order is already paid or cancelled")]
    OrderNotPayable,
    #[error("the balance is lower than the amount to pay")]
    InsufficientBalance,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<PayRefusal> for PayOrderError {
    fn from(refusal: PayRefusal) -> Self {
        match refusal {
            PayRefusal::UserNotFound => Self::UserNotFound,
            PayRefusal::OrderNotFound => Self::OrderNotFound,
            PayRefusal::Expired => Self::OrderExpired,
            PayRefusal::NotPayable => Self::OrderNotPayable,
        }
    }
}

impl PayOrder {
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    /// Pays the order; with a `completion`, the idempotency key's response is stored in
    /// the same transaction.
    ///
    /// # Errors
    /// [`PayOrderError::UserNotFound`], [`PayOrderError::OrderNotFound`] (also for
    /// another user's order), [`PayOrderError::OrderExpired`],
    /// [`PayOrderError::OrderNotPayable`] (paid or cancelled),
    /// [`PayOrderError::InsufficientBalance`].
    #[tracing::instrument(name = "pay_order", skip_all, fields(order_id = %cmd.order_id))]
    pub async fn execute(
        &self,
        cmd: PayOrderCommand,
        completion: Option<Completion<Payment>>,
    ) -> Result<Payment, PayOrderError> {
        let payment = OrderPayment {
            order_id: cmd.order_id,
            user_id: cmd.user_id,
        };
        self.orders
            .pay(payment, completion)
            .await
            .map_err(|err| match err {
                PayError::InsufficientBalance => PayOrderError::InsufficientBalance,
                PayError::Refused(refusal) => refusal.into(),
                PayError::Unknown(e) => PayOrderError::Unknown(e),
            })
    }
}

crate::debug_opaque!(PayOrder);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::fixtures::{oid, uid};
    use chrono::Utc;
    use domain::Money;
    use domain::points::Balance;
    use domain::ports::MockOrderStore;

    fn cmd() -> PayOrderCommand {
        PayOrderCommand {
            user_id: uid(1),
            order_id: oid(),
        }
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
                    paid_amount: Money::from_trusted(3_000),
                    balance: Balance::from_trusted(7_000),
                    paid_at: Utc::now(),
                })
            });
        let paid = PayOrder::new(Arc::new(store))
            .execute(cmd(), None)
            .await
            .unwrap();
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
            let got = PayOrder::new(Arc::new(store))
                .execute(cmd(), None)
                .await
                .unwrap_err();
            assert_eq!(got.to_string(), expected);
        }
    }
}

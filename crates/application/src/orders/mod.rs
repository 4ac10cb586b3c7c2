//! Orders: placing, paying, cancelling and reading them, and expiring the unpaid ones.
//!
//! One use case per action, each with its own error enum: [`PlaceOrder`], [`PayOrder`],
//! [`CancelOrder`], [`GetOrder`], [`ListOrders`] and the job [`ExpireDueOrders`] (when
//! it runs next is [`ExpirySchedule`](crate::expiry::ExpirySchedule)'s decision).
//!
//! Each action is one call to the [`OrderStore`](domain::ports::OrderStore): the store
//! decides in one transaction, under its row locks and by the database's clock, with the
//! domain's rules (pricing in [`domain::order::OrderPlan::price`], refusals named by
//! [`domain::order::PlaceFindings`] and [`domain::order::OrderFindings`]). Nothing is
//! read beforehand: a read before the transaction could only be stale by the time the
//! transaction decides, and would cost a round trip.

mod cancel;
mod expire;
mod pay;
mod place;
mod read;

pub use cancel::{CancelOrder, CancelOrderError};
pub use expire::{ExpireDueOrders, ExpireDueOrdersError};
pub use pay::{PayOrder, PayOrderCommand, PayOrderError};
pub use place::{PlaceOrder, PlaceOrderCommand, PlaceOrderError};
pub use read::{GetOrder, GetOrderError, ListOrders, ListOrdersError};

/// Values the order use cases' tests share.
#[cfg(test)]
mod fixtures {
    use chrono::{Duration, Utc};
    use domain::order::{Order, OrderStatus};
    use domain::{Money, OrderId, UserId};

    pub(super) fn uid(raw: i64) -> UserId {
        UserId::new(raw).unwrap()
    }

    pub(super) fn oid() -> OrderId {
        OrderId::new(7).unwrap()
    }

    /// Order 7 of user `owner`, for 3,000 KRW without a coupon.
    pub(super) fn order(owner: i64, status: OrderStatus) -> Order {
        let now = Utc::now();
        Order {
            id: oid(),
            user_id: uid(owner),
            status,
            lines: vec![],
            total_amount: Money::from_trusted(3_000),
            discount_amount: Money::ZERO,
            pay_amount: Money::from_trusted(3_000),
            user_coupon_id: None,
            created_at: now,
            expires_at: now + Duration::minutes(5),
            paid_at: None,
        }
    }
}

//! Events for the data platform (데이터 플랫폼), kept in a transactional outbox until
//! delivered: at least once, never lost, with a stable id for de-duplication.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::order::Order;

/// An event waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Stable across retries; sent as the `Idempotency-Key` header.
    pub id: String,
    pub event_type: String,
    /// The JSON body, exactly as delivered.
    pub payload: String,
    /// Delivery attempts so far, this one included.
    pub attempts: i32,
}

/// The ORDER_PAID event: the body the data platform receives (API.md, data-platform
/// delivery), built from the order as it was paid and serialized once, into the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaid {
    pub event_id: String,
    pub event_type: &'static str,
    #[serde(serialize_with = "rfc3339_micros")]
    pub occurred_at: DateTime<Utc>,
    pub order: PaidOrder,
}

/// The paid order inside an [`OrderPaid`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidOrder {
    pub order_id: i64,
    pub user_id: i64,
    pub items: Vec<PaidItem>,
    pub total_amount: i64,
    pub discount_amount: i64,
    pub pay_amount: i64,
    #[serde(serialize_with = "rfc3339_micros")]
    pub paid_at: DateTime<Utc>,
}

/// One line of a [`PaidOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidItem {
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub amount: i64,
}

impl OrderPaid {
    pub const EVENT_TYPE: &'static str = "ORDER_PAID";

    /// The event for `order`, paid at `paid_at`, under the stable `event_id`.
    pub fn new(event_id: String, order: &Order, paid_at: DateTime<Utc>) -> Self {
        Self {
            event_id,
            event_type: Self::EVENT_TYPE,
            occurred_at: paid_at,
            order: PaidOrder {
                order_id: order.id.get(),
                user_id: order.user_id.get(),
                items: order
                    .lines
                    .iter()
                    .map(|l| PaidItem {
                        product_id: l.product_id.get(),
                        quantity: l.quantity.get(),
                        unit_price: l.unit_price.get(),
                        amount: l.amount.get(),
                    })
                    .collect(),
                total_amount: order.total_amount.get(),
                discount_amount: order.discount_amount.get(),
                pay_amount: order.pay_amount.get(),
                paid_at,
            },
        }
    }

    /// The JSON body, as stored and delivered.
    ///
    /// # Errors
    /// Never in practice (plain numbers and strings); typed for honesty.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Timestamps as `2026-11-23T09:00:00.123456Z`: the precision PostgreSQL stores.
fn rfc3339_micros<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// How long a relay holds a claimed event before another relay may try it (a relay that
/// dies mid-delivery delays the event by at most this).
pub const CLAIM_LEASE: Duration = Duration::seconds(30);

/// How long to wait before trying again after `attempts` failed deliveries: 0.5 s
/// doubling, at most a minute. Events are never given up on.
pub fn retry_delay(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 8) - 1).unwrap_or(0);
    Duration::milliseconds((500_i64 << exponent).min(60_000))
}

/// Delivery counts, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxCounts {
    /// Not delivered, no failed attempt yet.
    pub pending: i64,
    pub delivered: i64,
    /// Not delivered yet, and the last attempt failed (they are retried).
    pub failed: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_paid_body_is_the_data_platform_contract() {
        use crate::order::{OrderLine, OrderQuantity, OrderStatus};
        use crate::product::{Price, ProductName};
        use crate::{Money, OrderId, ProductId, UserId};
        let paid_at = DateTime::parse_from_rfc3339("2026-11-23T09:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let order = Order {
            id: OrderId::new(7).unwrap(),
            user_id: UserId::new(3).unwrap(),
            status: OrderStatus::Paid,
            lines: vec![OrderLine {
                product_id: ProductId::new(2).unwrap(),
                product_name: ProductName::new("p").unwrap(),
                unit_price: Price::new(1_000).unwrap(),
                quantity: OrderQuantity::new(3).unwrap(),
                amount: Money::from_trusted(3_000),
            }],
            total_amount: Money::from_trusted(3_000),
            discount_amount: Money::from_trusted(300),
            pay_amount: Money::from_trusted(2_700),
            user_coupon_id: None,
            created_at: paid_at,
            expires_at: paid_at,
            paid_at: Some(paid_at),
        };
        let json: serde_json::Value = serde_json::from_str(
            &OrderPaid::new("e-1".into(), &order, paid_at)
                .to_json()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "eventId": "e-1", "eventType": "ORDER_PAID",
                "occurredAt": "2026-11-23T09:00:00.500000Z",
                "order": {
                    "orderId": 7, "userId": 3,
                    "items": [{"productId": 2, "quantity": 3, "unitPrice": 1000, "amount": 3000}],
                    "totalAmount": 3000, "discountAmount": 300, "payAmount": 2700,
                    "paidAt": "2026-11-23T09:00:00.500000Z"
                }
            })
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_minute() {
        let delays: Vec<i64> = [1, 2, 3, 4, 8, 9, 50]
            .into_iter()
            .map(|a| retry_delay(a).num_milliseconds())
            .collect();
        assert_eq!(
            delays,
            vec![500, 1_000, 2_000, 4_000, 60_000, 60_000, 60_000]
        );
    }
}

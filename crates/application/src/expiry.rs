//! When the expiry scheduler scans next: at the earliest deadline of an unpaid order,
//! not on a tight timer. The scan itself is
//! [`ExpireDueOrders`](crate::orders::ExpireDueOrders).

use std::sync::Arc;
use std::time::Duration;

use domain::ports::{Clock, OrderStore};

/// Schedules the expiry scans of unpaid orders by their due time.
#[derive(Clone)]
pub struct ExpirySchedule {
    orders: Arc<dyn OrderStore>,
    clock: Arc<dyn Clock>,
    payment_timeout: chrono::Duration,
}

impl ExpirySchedule {
    /// The shortest wait between scans. The database decides expiry by its own clock, so
    /// with this instance's clock ahead of it a scan at the due time finds nothing yet;
    /// this keeps the rescans until the database agrees a few per second at most.
    pub const MIN_WAIT: Duration = Duration::from_millis(500);

    pub fn new(
        orders: Arc<dyn OrderStore>,
        clock: Arc<dyn Clock>,
        payment_timeout: chrono::Duration,
    ) -> Self {
        Self {
            orders,
            clock,
            payment_timeout,
        }
    }

    /// How long to wait after a scan: until the earliest `expires_at` of an unpaid order,
    /// at least [`Self::MIN_WAIT`] and at most `max`, nor longer than the payment timeout
    /// (an order placed after now expires no sooner than that, so waiting the timeout
    /// never misses one, even when no unpaid order exists now).
    ///
    /// When the store fails, waits `max` capped the same way: the next scan retries.
    #[tracing::instrument(name = "next_expiry_scan", skip_all)]
    pub async fn next_scan_in(&self, max: Duration) -> Duration {
        let ceiling = max.min(self.payment_timeout.to_std().unwrap_or(max));
        let wait = match self.orders.next_expiry().await {
            Ok(Some(at)) => (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO),
            Ok(None) => ceiling,
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "reading the next order expiry");
                ceiling
            }
        };
        wait.min(ceiling).max(Self::MIN_WAIT)
    }
}

crate::debug_opaque!(ExpirySchedule);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::ports::{MockClock, MockOrderStore};

    /// The wait with the next expiry `due` from now, a payment timeout of five minutes
    /// and a `max` of thirty seconds.
    async fn wait_for(due: anyhow::Result<Option<chrono::Duration>>) -> Duration {
        let now = Utc::now();
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        let mut orders = MockOrderStore::new();
        let mut due = Some(due.map(|d| d.map(|d| now + d)));
        orders
            .expect_next_expiry()
            .times(1)
            .returning(move || due.take().unwrap_or(Ok(None)));
        orders.expect_expire_due().never();
        ExpirySchedule::new(
            Arc::new(orders),
            Arc::new(clock),
            chrono::Duration::minutes(5),
        )
        .next_scan_in(Duration::from_secs(30))
        .await
    }

    #[tokio::test]
    async fn the_next_scan_is_at_the_earliest_expiry() {
        assert_eq!(
            wait_for(Ok(Some(chrono::Duration::milliseconds(7_250)))).await,
            Duration::from_millis(7_250)
        );
    }

    #[tokio::test]
    async fn with_no_unpaid_order_the_next_scan_is_after_the_maximum_wait() {
        assert_eq!(wait_for(Ok(None)).await, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn an_expiry_far_away_waits_only_the_maximum() {
        assert_eq!(
            wait_for(Ok(Some(chrono::Duration::minutes(4)))).await,
            Duration::from_secs(30)
        );
    }

    #[tokio::test]
    async fn an_expiry_already_past_waits_the_minimum_instead_of_spinning() {
        assert_eq!(
            wait_for(Ok(Some(chrono::Duration::seconds(-3)))).await,
            ExpirySchedule::MIN_WAIT
        );
    }

    #[tokio::test]
    async fn a_failing_store_waits_the_maximum() {
        assert_eq!(
            wait_for(Err(anyhow::anyhow!("connection refused"))).await,
            Duration::from_secs(30)
        );
    }

    #[tokio::test]
    async fn a_payment_timeout_shorter_than_the_maximum_caps_the_wait() {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(Utc::now());
        let mut orders = MockOrderStore::new();
        orders.expect_next_expiry().returning(|| Ok(None));
        let schedule = ExpirySchedule::new(
            Arc::new(orders),
            Arc::new(clock),
            chrono::Duration::seconds(2),
        );
        assert_eq!(
            schedule.next_scan_in(Duration::from_secs(30)).await,
            Duration::from_secs(2)
        );
    }
}

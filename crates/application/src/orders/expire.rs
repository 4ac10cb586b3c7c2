//! Expiring the unpaid orders past their payment time (the scheduler's and the admin
//! job's work).

use std::sync::Arc;

use domain::ports::OrderStore;

/// Expires every unpaid order past its time, batch by batch, restoring each one's stock
/// and coupon exactly once.
#[derive(Clone)]
pub struct ExpireDueOrders {
    orders: Arc<dyn OrderStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExpireDueOrdersError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ExpireDueOrders {
    /// Orders expired per transaction.
    pub const BATCH: i64 = 200;

    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    /// Returns how many orders this call expired.
    ///
    /// # Errors
    /// [`ExpireDueOrdersError::Unknown`] when the store fails; batches already committed
    /// stay committed.
    #[tracing::instrument(name = "expire_orders", skip_all)]
    pub async fn execute(&self) -> Result<u64, ExpireDueOrdersError> {
        let mut expired = 0;
        loop {
            let batch = self.orders.expire_due(Self::BATCH).await?;
            expired += batch;
            if batch < Self::BATCH.unsigned_abs() {
                return Ok(expired);
            }
        }
    }
}

crate::debug_opaque!(ExpireDueOrders);

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::MockOrderStore;

    #[tokio::test]
    async fn expiry_runs_batches_until_one_is_not_full() {
        let mut store = MockOrderStore::new();
        let mut calls = 0;
        store
            .expect_expire_due()
            .withf(|limit| *limit == ExpireDueOrders::BATCH)
            .times(3)
            .returning(move |_| {
                calls += 1;
                Ok(if calls < 3 { 200 } else { 5 })
            });
        assert_eq!(
            ExpireDueOrders::new(Arc::new(store))
                .execute()
                .await
                .unwrap(),
            405
        );
    }
}

//! Delivering the outbox to the data platform.

use std::sync::Arc;

use domain::outbox::{OutboxCounts, retry_at};
use domain::ports::{Clock, DataPlatform, OutboxStore};

/// The relay: delivers due events, at least once, retrying failures with backoff.
#[derive(Clone)]
pub struct DeliverEvents {
    outbox: Arc<dyn OutboxStore>,
    platform: Arc<dyn DataPlatform>,
    clock: Arc<dyn Clock>,
}

impl DeliverEvents {
    /// Events claimed per round.
    pub const BATCH: i64 = 50;

    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        platform: Arc<dyn DataPlatform>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            outbox,
            platform,
            clock,
        }
    }

    /// One round: claims due events and delivers them concurrently. Returns how many
    /// were claimed (a full batch means more may be waiting).
    ///
    /// # Errors
    /// When the store fails; claimed events are then retried after their lease.
    #[tracing::instrument(name = "deliver_events", skip_all)]
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let events = self.outbox.claim_due(self.clock.now(), Self::BATCH).await?;
        let claimed = events.len();
        let deliveries = events.into_iter().map(|event| async move {
            match self.platform.deliver(&event).await {
                Ok(()) => self.outbox.mark_delivered(event.id, self.clock.now()).await,
                Err(err) => {
                    tracing::warn!(event_id = %event.id, attempts = event.attempts, error = format!("{err:#}"), "data platform delivery failed; will retry");
                    let at = retry_at(event.attempts, self.clock.now());
                    self.outbox.reschedule(event.id, at, format!("{err:#}")).await
                }
            }
        });
        for settled in futures_util::future::join_all(deliveries).await {
            settled?;
        }
        Ok(claimed)
    }

    /// Delivery counts.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn counts(&self) -> anyhow::Result<OutboxCounts> {
        self.outbox.counts().await
    }
}

crate::debug_opaque!(DeliverEvents);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::outbox::OutboxEvent;
    use domain::ports::{MockClock, MockDataPlatform, MockOutboxStore};

    fn event(id: &str, attempts: i32) -> OutboxEvent {
        OutboxEvent {
            id: id.into(),
            event_type: "ORDER_PAID".into(),
            payload: "{}".into(),
            attempts,
        }
    }

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(Utc::now());
        Arc::new(clock)
    }

    #[tokio::test]
    async fn delivered_events_are_marked_and_failed_ones_rescheduled_with_backoff() {
        let mut outbox = MockOutboxStore::new();
        outbox
            .expect_claim_due()
            .returning(|_, _| Ok(vec![event("ok", 1), event("down", 3)]));
        outbox
            .expect_mark_delivered()
            .withf(|id, _| id == "ok")
            .times(1)
            .returning(|_, _| Ok(()));
        outbox
            .expect_reschedule()
            .withf(|id, at, error| {
                id == "down"
                    && (*at - Utc::now()).num_milliseconds() > 1_500
                    && error.contains("503")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        let mut platform = MockDataPlatform::new();
        platform.expect_deliver().returning(|e| {
            if e.id == "ok" {
                Ok(())
            } else {
                Err(anyhow::anyhow!("503 Service Unavailable"))
            }
        });
        let relay = DeliverEvents::new(Arc::new(outbox), Arc::new(platform), clock());
        assert_eq!(relay.run_once().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn nothing_due_means_nothing_delivered() {
        let mut outbox = MockOutboxStore::new();
        outbox.expect_claim_due().returning(|_, _| Ok(vec![]));
        let mut platform = MockDataPlatform::new();
        platform.expect_deliver().never();
        let relay = DeliverEvents::new(Arc::new(outbox), Arc::new(platform), clock());
        assert_eq!(relay.run_once().await.unwrap(), 0);
    }
}

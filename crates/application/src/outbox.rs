//! Delivering the outbox to the data platform.
//!
//! The relay alternates [`DeliverEvents::drain`] (deliver everything due) and
//! [`DeliverEvents::rest`] (sleep until a commit signals new events, the earliest retry
//! falls due, or a fallback period passes), so an idle relay costs a couple of round
//! trips per fallback period rather than a poll several times a second.

use std::sync::Arc;
use std::time::Duration;

use domain::outbox::{OutboxCounts, retry_at};
use domain::ports::{Clock, DataPlatform, OutboxStore, OutboxWakeup};

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
    /// The shortest [`Self::rest`] that waits for a due time rather than a signal.
    pub const MIN_REST: Duration = Duration::from_millis(100);

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
                Ok(()) => Ok(Some(event.id)),
                Err(err) => {
                    tracing::warn!(event_id = %event.id, attempts = event.attempts, error = format!("{err:#}"), "data platform delivery failed; will retry");
                    let at = retry_at(event.attempts, self.clock.now());
                    self.outbox
                        .reschedule(event.id, at, format!("{err:#}"))
                        .await
                        .map(|()| None)
                }
            }
        });
        let mut delivered = Vec::with_capacity(claimed);
        for settled in futures_util::future::join_all(deliveries).await {
            delivered.extend(settled?);
        }
        // One statement for the whole round: a relay that dies before it only delivers
        // these again (at least once, same event ids).
        if !delivered.is_empty() {
            self.outbox
                .mark_delivered(delivered, self.clock.now())
                .await?;
        }
        Ok(claimed)
    }

    /// Rounds until one claims less than a full batch: everything due now is delivered
    /// (or rescheduled). Returns how many events were claimed in all.
    ///
    /// # Errors
    /// When the store fails; what was claimed by then is retried after its lease.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let full = usize::try_from(Self::BATCH).unwrap_or(usize::MAX);
        let mut claimed = 0;
        loop {
            let round = self.run_once().await?;
            claimed += round;
            if round < full {
                return Ok(claimed);
            }
        }
    }

    /// Waits for more work after a [`Self::drain`]: until `wakeup` signals a commit, or
    /// the earliest undelivered event falls due, or `fallback` passes, whichever is first
    /// (but at least [`Self::MIN_REST`], so an event due now that another relay holds
    /// does not make this one spin). The fallback catches notifications lost in transit
    /// and events that some other path made due.
    #[tracing::instrument(name = "outbox_relay_rest", skip_all)]
    pub async fn rest(&self, wakeup: &dyn OutboxWakeup, fallback: Duration) {
        let until_due = match self.outbox.next_due().await {
            Ok(Some(due)) => (due - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Self::MIN_REST),
            Ok(None) => fallback,
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "reading when the outbox is next due"
                );
                fallback
            }
        };
        wakeup.wait(until_due.min(fallback)).await;
    }

    /// Deletes events delivered more than `retention` ago; returns how many.
    ///
    /// # Errors
    /// When the store fails.
    #[tracing::instrument(name = "outbox_purge", skip_all)]
    pub async fn purge_delivered(&self, retention: chrono::Duration) -> anyhow::Result<u64> {
        self.outbox
            .purge_delivered_before(self.clock.now() - retention)
            .await
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
    use domain::ports::{MockClock, MockDataPlatform, MockOutboxStore, MockOutboxWakeup};

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
            .withf(|ids, _| ids == &["ok".to_owned()])
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

    fn batch(prefix: &str, n: i64) -> Vec<OutboxEvent> {
        (0..n).map(|i| event(&format!("{prefix}{i}"), 1)).collect()
    }

    #[tokio::test]
    async fn draining_claims_again_after_every_full_batch_and_stops_after_a_short_one() {
        let mut outbox = MockOutboxStore::new();
        let mut rounds = vec![
            batch("c", 3),
            batch("b", DeliverEvents::BATCH),
            batch("a", DeliverEvents::BATCH),
        ];
        outbox
            .expect_claim_due()
            .times(3)
            .returning(move |_, _| Ok(rounds.pop().unwrap_or_default()));
        outbox.expect_mark_delivered().returning(|_, _| Ok(()));
        let mut platform = MockDataPlatform::new();
        platform.expect_deliver().returning(|_| Ok(()));
        let relay = DeliverEvents::new(Arc::new(outbox), Arc::new(platform), clock());
        assert_eq!(
            relay.drain().await.unwrap(),
            2 * usize::try_from(DeliverEvents::BATCH).unwrap() + 3
        );
    }

    /// A relay whose store says the next event is due at `due` (relative to the clock's
    /// now), resting with a fallback of ten seconds; returns the timeout it waited with.
    async fn rest_with(due: anyhow::Result<Option<chrono::Duration>>) -> Duration {
        let now = Utc::now();
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        let mut outbox = MockOutboxStore::new();
        let due = due.map(|d| d.map(|d| now + d));
        let mut due = Some(due);
        outbox
            .expect_next_due()
            .times(1)
            .returning(move || due.take().unwrap_or(Ok(None)));
        outbox.expect_claim_due().never();
        let mut platform = MockDataPlatform::new();
        platform.expect_deliver().never();
        let waited = Arc::new(std::sync::Mutex::new(None));
        let mut wakeup = MockOutboxWakeup::new();
        wakeup.expect_wait().times(1).returning({
            let waited = waited.clone();
            move |timeout| *waited.lock().unwrap() = Some(timeout)
        });
        let relay = DeliverEvents::new(Arc::new(outbox), Arc::new(platform), Arc::new(clock));
        relay.rest(&wakeup, Duration::from_secs(10)).await;
        waited.lock().unwrap().take().unwrap()
    }

    #[tokio::test]
    async fn an_empty_outbox_rests_for_the_whole_fallback_period() {
        assert_eq!(rest_with(Ok(None)).await, Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_retry_due_before_the_fallback_wakes_the_relay_at_its_time() {
        assert_eq!(
            rest_with(Ok(Some(chrono::Duration::milliseconds(2_500)))).await,
            Duration::from_millis(2_500)
        );
    }

    #[tokio::test]
    async fn a_retry_due_after_the_fallback_waits_only_the_fallback() {
        assert_eq!(
            rest_with(Ok(Some(chrono::Duration::seconds(60)))).await,
            Duration::from_secs(10)
        );
    }

    #[tokio::test]
    async fn an_event_already_due_rests_the_minimum_instead_of_spinning() {
        assert_eq!(
            rest_with(Ok(Some(chrono::Duration::seconds(-5)))).await,
            DeliverEvents::MIN_REST
        );
    }

    #[tokio::test]
    async fn a_failing_store_rests_for_the_fallback_period() {
        assert_eq!(
            rest_with(Err(anyhow::anyhow!("connection refused"))).await,
            Duration::from_secs(10)
        );
    }

    #[tokio::test]
    async fn the_purge_keeps_the_retention_period_of_delivered_events() {
        let now = Utc::now();
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        let mut outbox = MockOutboxStore::new();
        outbox
            .expect_purge_delivered_before()
            .withf(move |cutoff| *cutoff == now - chrono::Duration::days(7))
            .times(1)
            .returning(|_| Ok(12));
        let relay = DeliverEvents::new(
            Arc::new(outbox),
            Arc::new(MockDataPlatform::new()),
            Arc::new(clock),
        );
        assert_eq!(
            relay
                .purge_delivered(chrono::Duration::days(7))
                .await
                .unwrap(),
            12
        );
    }
}

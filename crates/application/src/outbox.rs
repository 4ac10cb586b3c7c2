//! Delivering the outbox to the data platform.
//!
//! The relay (the scheduler in `bootstrap`) claims due events with [`DeliverEvents::claim`]
//! into its free delivery slots, runs each [`DeliverEvents::deliver`] on its own, so a slow
//! receiver call holds back no other event, and records the deliveries that settled
//! together with one [`DeliverEvents::mark_delivered`]. Between claims it waits in
//! [`DeliverEvents::rest`] (until a commit signals new events, the earliest retry falls due,
//! or a fallback period passes), so an idle relay costs a couple of round trips per
//! fallback period rather than a poll several times a second.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use domain::outbox::{OutboxCounts, OutboxEvent, retry_delay};
use domain::ports::{Clock, DataPlatform, OutboxStore, OutboxWakeup};

/// The relay's use case: delivers due events, at least once, retrying failures with
/// backoff.
#[derive(Clone)]
pub struct DeliverEvents {
    outbox: Arc<dyn OutboxStore>,
    platform: Arc<dyn DataPlatform>,
    clock: Arc<dyn Clock>,
}

impl DeliverEvents {
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

    /// Claims up to `limit` due events, oldest first, under a lease (other relays skip
    /// them until it lapses; then they are delivered again, at least once).
    ///
    /// # Errors
    /// When the store fails.
    #[tracing::instrument(name = "outbox_claim", skip_all)]
    pub async fn claim(&self, limit: usize) -> anyhow::Result<Vec<OutboxEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.outbox.claim_due(limit).await
    }

    /// One attempt at delivering a claimed `event`, as a future that owns what it needs
    /// (to run on its own task). `Some(id)` when the platform took it: the caller marks it
    /// delivered (with others, in one statement). `None` when the attempt failed: it is
    /// already rescheduled with backoff. Dropping the future mid-way leaves the event
    /// claimed and undelivered, so it is delivered again once the lease lapses.
    ///
    /// # Errors
    /// When rescheduling a failed attempt fails; the lease then retries the event.
    pub fn deliver(
        &self,
        event: OutboxEvent,
    ) -> impl Future<Output = anyhow::Result<Option<String>>> + Send + 'static {
        let this = self.clone();
        async move {
            match this.platform.deliver(&event).await {
                Ok(()) => Ok(Some(event.id)),
                Err(err) => {
                    tracing::warn!(event_id = %event.id, attempts = event.attempts, error = format!("{err:#}"), "data platform delivery failed; will retry");
                    this.outbox
                        .reschedule(event.id, retry_delay(event.attempts), format!("{err:#}"))
                        .await
                        .map(|()| None)
                }
            }
        }
    }

    /// Records the delivery of the events `ids`, in one statement. A relay that dies
    /// before it only delivers them again (at least once, same event ids).
    ///
    /// # Errors
    /// When the store fails; the events are then delivered again after their lease.
    #[tracing::instrument(name = "outbox_mark_delivered", skip_all, fields(events = ids.len()))]
    pub async fn mark_delivered(&self, ids: Vec<String>) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.outbox.mark_delivered(ids).await
    }

    /// Waits for more work when nothing is in flight and the last claim found nothing: until `wakeup` signals a commit, or
    /// the earliest undelivered event falls due, or `fallback` passes, whichever is first
    /// (but at least [`Self::MIN_REST`], so an event due now that another relay holds
    /// does not make this one spin). The fallback catches notifications lost in transit
    /// and events that some other path made due.
    #[tracing::instrument(name = "outbox_relay_rest", skip_all)]
    pub async fn rest(&self, wakeup: &dyn OutboxWakeup, fallback: Duration) {
        let until_due = match self.outbox.next_due_in().await {
            Ok(Some(due_in)) => due_in
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

    /// Claims, deliveries, marks and rests go by the store's clock: the instance's own
    /// clock is never read for them (one running ahead would take leases early).
    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().never();
        Arc::new(clock)
    }

    #[tokio::test]
    async fn a_delivered_event_is_returned_for_marking_and_a_failed_one_rescheduled_with_backoff() {
        let mut outbox = MockOutboxStore::new();
        outbox
            .expect_claim_due()
            .withf(|limit| *limit == 16)
            .returning(|_| Ok(vec![event("ok", 1), event("down", 3)]));
        outbox
            .expect_reschedule()
            .withf(|id, after, error| {
                id == "down" && *after == retry_delay(3) && error.contains("503")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        outbox
            .expect_mark_delivered()
            .withf(|ids| ids == &["ok".to_owned()])
            .times(1)
            .returning(|_| Ok(()));
        let mut platform = MockDataPlatform::new();
        platform.expect_deliver().returning(|e| {
            if e.id == "ok" {
                Ok(())
            } else {
                Err(anyhow::anyhow!("503 Service Unavailable"))
            }
        });
        let relay = DeliverEvents::new(Arc::new(outbox), Arc::new(platform), clock());
        let mut claimed = relay.claim(16).await.unwrap().into_iter();
        let ok = relay.deliver(claimed.next().unwrap()).await.unwrap();
        let down = relay.deliver(claimed.next().unwrap()).await.unwrap();
        assert_eq!((ok.as_deref(), down), (Some("ok"), None));
        relay.mark_delivered(vec!["ok".into()]).await.unwrap();
    }

    #[tokio::test]
    async fn no_free_slot_claims_nothing_and_nothing_delivered_marks_nothing() {
        let mut outbox = MockOutboxStore::new();
        outbox.expect_claim_due().never();
        outbox.expect_mark_delivered().never();
        let relay =
            DeliverEvents::new(Arc::new(outbox), Arc::new(MockDataPlatform::new()), clock());
        assert!(relay.claim(0).await.unwrap().is_empty());
        relay.mark_delivered(Vec::new()).await.unwrap();
    }

    /// A relay whose store says the next event is due in `due`, resting with a fallback
    /// of ten seconds; returns the timeout it waited with.
    async fn rest_with(due: anyhow::Result<Option<chrono::Duration>>) -> Duration {
        let mut outbox = MockOutboxStore::new();
        let mut due = Some(due);
        outbox
            .expect_next_due_in()
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
        let relay = DeliverEvents::new(Arc::new(outbox), Arc::new(platform), clock());
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

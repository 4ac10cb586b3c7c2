//! The outbox relay's loop: at most [`RelaySettings::concurrency`] deliveries in flight,
//! each on its own task, so one slow receiver call (up to the client's timeout) holds back
//! no other event; newer events are claimed into the free slots as they come.
//!
//! - **Claims** happen when a commit's `NOTIFY` (or a poll) wakes the relay: at once when
//!   the last claim is at least [`RelaySettings::gather`] ago (so a paid order after a
//!   quiet spell goes out without delay), else once it is (so the rest of a burst gathers
//!   into one claim); and again whenever deliveries settle while the last claim filled
//!   every free slot (more may be due).
//! - **Marks**: deliveries that settle close together (within `gather` of the first, or
//!   until none is left in flight) are marked delivered in one statement.
//! - **Waits**: while anything is in flight or was just claimed, the relay waits for a
//!   settled delivery, a `NOTIFY` or the busy poll; otherwise it rests
//!   ([`DeliverEvents::rest`]: until a `NOTIFY`, the earliest retry, or the fallback poll),
//!   so an idle relay costs what it did before.
//! - **Stop**: in-flight deliveries get [`RelaySettings::shutdown_grace`] to settle; those
//!   that did are marked, the rest are abandoned. An abandoned event stays claimed and
//!   undelivered, so it is delivered again (by any instance) once its lease lapses: never
//!   marked delivered without a 2xx.

use std::time::Duration;

use application::outbox::DeliverEvents;
use domain::ports::OutboxWakeup;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Deliveries in flight at most (`OUTBOX_DELIVERY_CONCURRENCY`).
    pub concurrency: usize,
    /// The least time between two claims a wake-up starts, and how long settled
    /// deliveries gather before the mark: a burst costs a few statements, not a few per
    /// event.
    pub gather: Duration,
    /// The longest wait while deliveries are in flight or just claimed: finds an event
    /// whose commit raced a claim (its `NOTIFY` was left to an event that claim took).
    pub busy_poll: Duration,
    /// The longest rest of an idle relay: catches what no notification announced.
    pub fallback_poll: Duration,
    /// How long in-flight deliveries may still settle after the stop signal
    /// (`OUTBOX_SHUTDOWN_GRACE_MS`).
    pub shutdown_grace: Duration,
}

type Settled = Result<anyhow::Result<Option<String>>, tokio::task::JoinError>;

/// Runs the relay until `stop` turns true (or its sender is dropped), then lets in-flight
/// deliveries settle for at most the grace period and returns.
pub async fn run(
    relay: DeliverEvents,
    wakeup: &dyn OutboxWakeup,
    settings: RelaySettings,
    mut stop: watch::Receiver<bool>,
) {
    let concurrency = settings.concurrency.max(1);
    let mut in_flight: JoinSet<anyhow::Result<Option<String>>> = JoinSet::new();
    // Every way round the loop decides whether the next one claims.
    let mut claim_now = true;
    // The last claim filled every free slot: more events may be due.
    let mut more_due = false;
    // Something was claimed or is in flight: wait with the busy poll, not a rest.
    let mut busy = false;
    let mut poll_at = Instant::now();
    let mut last_claim: Option<Instant> = None;
    loop {
        if claim_now {
            let free = concurrency - in_flight.len();
            last_claim = Some(Instant::now());
            match relay.claim(free).await {
                Ok(events) => {
                    more_due = free > 0 && events.len() == free;
                    busy = !events.is_empty() || !in_flight.is_empty();
                    for event in events {
                        in_flight.spawn(relay.deliver(event));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "outbox relay: claiming events");
                    more_due = false;
                    busy = !in_flight.is_empty();
                }
            }
            poll_at = Instant::now() + settings.busy_poll;
        }
        let has_room = in_flight.len() < concurrency;
        let wait_for_work = async {
            if busy {
                wakeup
                    .wait(poll_at.saturating_duration_since(Instant::now()))
                    .await;
            } else {
                relay.rest(wakeup, settings.fallback_poll).await;
            }
        };
        tokio::select! {
            // The only change ever sent is "stop"; a dropped sender means stop too.
            _ = stop.changed() => break,
            Some(first) = in_flight.join_next(), if !in_flight.is_empty() => {
                let mut delivered = Vec::new();
                settle(first, &mut delivered);
                let stopped = gather_settled(
                    &mut in_flight,
                    &mut delivered,
                    settings.gather,
                    &mut stop,
                )
                .await;
                mark(&relay, delivered).await;
                if stopped {
                    break;
                }
                claim_now = more_due;
            }
            () = wait_for_work, if has_room => {
                // Claims woken this way are at least `gather` apart: the first event
                // after a quiet spell goes at once, the rest of a burst gathers.
                if let Some(gathered) = last_claim.map(|at| at + settings.gather)
                    && Instant::now() < gathered
                {
                    tokio::select! {
                        _ = stop.changed() => break,
                        () = tokio::time::sleep_until(gathered) => {}
                    }
                }
                claim_now = true;
            }
        }
    }
    shut_down(&relay, in_flight, settings.shutdown_grace).await;
    tracing::debug!(job = "outbox-relay", "scheduler stopped");
}

/// Collects deliveries that settle within `window`, or until none is in flight. Returns
/// whether `stop` fired meanwhile.
async fn gather_settled(
    in_flight: &mut JoinSet<anyhow::Result<Option<String>>>,
    delivered: &mut Vec<String>,
    window: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let until = Instant::now() + window;
    while !in_flight.is_empty() {
        tokio::select! {
            _ = stop.changed() => return true,
            Some(settled) = in_flight.join_next() => settle(settled, delivered),
            () = tokio::time::sleep_until(until) => break,
        }
    }
    false
}

/// After the stop signal: waits up to `grace` for the deliveries in flight, marks those
/// that got a 2xx, and abandons the others (they stay claimed, and are delivered again
/// when their lease lapses).
async fn shut_down(
    relay: &DeliverEvents,
    mut in_flight: JoinSet<anyhow::Result<Option<String>>>,
    grace: Duration,
) {
    let mut delivered = Vec::new();
    let waited = tokio::time::timeout(grace, async {
        while let Some(settled) = in_flight.join_next().await {
            settle(settled, &mut delivered);
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            abandoned = in_flight.len(),
            ?grace,
            "outbox relay stopping: deliveries still in flight are abandoned and will be retried"
        );
        in_flight.abort_all();
    }
    mark(relay, delivered).await;
}

fn settle(settled: Settled, delivered: &mut Vec<String>) {
    match settled {
        Ok(Ok(Some(id))) => delivered.push(id),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(
            error = format!("{e:#}"),
            "outbox relay: rescheduling a failed delivery"
        ),
        Err(e) => tracing::warn!(error = %e, "outbox relay: a delivery task failed"),
    }
}

async fn mark(relay: &DeliverEvents, delivered: Vec<String>) {
    if let Err(e) = relay.mark_delivered(delivered).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "outbox relay: marking events delivered (they will be delivered again)"
        );
    }
}

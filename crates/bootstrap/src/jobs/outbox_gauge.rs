//! The `shop_outbox_events` gauge, counted when `/metrics` is scraped rather than on a
//! timer: an instance nobody scrapes never counts the outbox.
//!
//! Prometheus collects synchronously on an HTTP worker thread, which must not wait for
//! the database. So a scrape starts a count in the background (at most one per
//! [`MIN_RECOUNT`]) and reports the last finished count: each scrape shows the counts as
//! of the previous one, and the gauge is absent until the first count finishes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use application::outbox::DeliverEvents;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use tokio::runtime::Handle;

/// Scrapes closer together than this share one count.
const MIN_RECOUNT: Duration = Duration::from_secs(5);

/// Outbox events by delivery state, recounted on scrape.
pub(crate) struct OutboxGauge {
    gauge: IntGaugeVec,
    relay: DeliverEvents,
    runtime: Handle,
    state: Arc<Mutex<Recount>>,
}

#[derive(Debug, Default)]
struct Recount {
    /// When the last count started; none has while `None`.
    started: Option<Instant>,
    /// Whether a count has finished, so the gauge holds real values.
    counted: bool,
}

impl std::fmt::Debug for OutboxGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxGauge").finish_non_exhaustive()
    }
}

impl OutboxGauge {
    /// Counts through `relay` on the current Tokio runtime.
    ///
    /// # Errors
    /// When the gauge's options are invalid, or when called outside a Tokio runtime.
    pub(crate) fn new(relay: DeliverEvents) -> anyhow::Result<Self> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "shop_outbox_events",
                "Data-platform outbox events by delivery state (counted at the previous scrape)",
            ),
            &["state"],
        )?;
        Ok(Self {
            gauge,
            relay,
            runtime: Handle::try_current()?,
            state: Arc::default(),
        })
    }

    /// Starts a count in the background unless one started less than [`MIN_RECOUNT`] ago.
    /// Returns whether a count has finished before.
    fn recount(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.started.is_none_or(|at| at.elapsed() >= MIN_RECOUNT) {
            state.started = Some(Instant::now());
            let (relay, gauge, shared) =
                (self.relay.clone(), self.gauge.clone(), self.state.clone());
            self.runtime.spawn(async move {
                match relay.counts().await {
                    Ok(counts) => {
                        gauge.with_label_values(&["pending"]).set(counts.pending);
                        gauge
                            .with_label_values(&["delivered"])
                            .set(counts.delivered);
                        gauge.with_label_values(&["failed"]).set(counts.failed);
                        if let Ok(mut state) = shared.lock() {
                            state.counted = true;
                        }
                    }
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "counting the outbox"),
                }
            });
        }
        state.counted
    }
}

impl Collector for OutboxGauge {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if self.recount() {
            self.gauge.collect()
        } else {
            Vec::new()
        }
    }
}

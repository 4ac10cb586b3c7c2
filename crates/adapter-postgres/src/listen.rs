//! [`OutboxWakeup`] on PostgreSQL `LISTEN/NOTIFY`: a trigger on `outbox_events`
//! notifies the channel `outbox_events` when an inserting transaction commits, and this
//! listener wakes the relay.
//!
//! The listener holds one connection of its own, outside the pool, opened by libpq
//! through diesel's `PgConnection` exactly as the pool's are: one `DATABASE_URL` (with
//! libpq's `PG*` variables, `~/.pgpass`, service files and TLS rules) means the same on
//! every connection of the server. A thread of its own connects, runs
//! `SET application_name = 'shop-outbox-listener'; LISTEN outbox_events`, and then reads
//! the socket every [`PgOutboxListener::READ_EVERY`] (libpq's `PQconsumeInput`, which never
//! blocks and sends nothing): an idle listener costs no round trip, and a commit wakes the
//! relay within that period.
//!
//! When the connection is lost (the database restarted, the session was terminated) the
//! read fails, and the thread reconnects with backoff; meanwhile [`OutboxWakeup::wait`]
//! returns every [`PgOutboxListener::POLL_WHILE_DISCONNECTED`], so the relay polls until
//! notifications flow again. Every (re)connection wakes the relay once, for the events
//! committed while nobody listened. A peer that vanished without closing the socket (a
//! host that lost power) is found only by TCP keepalive, which libpq turns on with the
//! operating system's timings unless `DATABASE_URL` sets `keepalives_idle` and its
//! siblings; until then the relay's fallback poll still finds every event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use domain::ports::{ComponentStatus, OutboxWakeup};
use prometheus::IntGauge;
use tokio::sync::Notify;

/// What the listener runs on each new connection: a name in `pg_stat_activity`, and the
/// channel the `outbox_events_notify` trigger notifies.
const SESSION: &str = "SET application_name = 'shop-outbox-listener'; LISTEN outbox_events";
/// First wait before reconnecting; doubles on each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// State shared by the listening thread, the waiters and the health probe.
#[derive(Debug)]
struct Shared {
    /// Holds one permit when a signal arrived that no waiter has taken yet.
    signal: Notify,
    listening: AtomicBool,
    stopped: AtomicBool,
    /// `shop_outbox_listener_up`: 1 while listening, 0 otherwise.
    gauge: IntGauge,
}

impl Shared {
    fn set_listening(&self, listening: bool) {
        self.gauge.set(i64::from(listening));
        if self.listening.swap(listening, Ordering::SeqCst) != listening {
            // Either way the relay should look now: events may have been committed while
            // nobody listened, or its long wait would no longer be cut short.
            self.signal.notify_one();
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// Wakes the outbox relay on `NOTIFY outbox_events`. The listening thread stops when
/// this value is dropped.
#[derive(Debug)]
pub struct PgOutboxListener {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl PgOutboxListener {
    /// How often [`OutboxWakeup::wait`] returns while the listener is not connected.
    pub const POLL_WHILE_DISCONNECTED: Duration = Duration::from_secs(1);
    /// How often the listening thread reads what the server pushed: the longest a
    /// notification waits before it wakes the relay.
    pub const READ_EVERY: Duration = Duration::from_millis(10);

    /// Starts listening on the database at `url` (`DATABASE_URL`, read by libpq) on a
    /// thread of its own. Never waits for the database: until the first connection
    /// succeeds the listener counts as disconnected.
    ///
    /// # Errors
    /// When the gauge or the thread cannot be made.
    pub fn start(url: &str) -> anyhow::Result<Self> {
        let gauge = IntGauge::new(
            "shop_outbox_listener_up",
            "1 while the outbox listener's LISTEN connection is up, else 0 (the relay polls)",
        )?;
        let shared = Arc::new(Shared {
            signal: Notify::new(),
            listening: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            gauge,
        });
        let url = url.to_owned();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("outbox-listener".to_owned())
            .spawn(move || listen_forever(&url, &thread_shared))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the listening thread and waits up to `within` for it to end (it ends within
    /// [`Self::READ_EVERY`] unless it is connecting, which libpq may make last until its
    /// `connect_timeout`). Returns whether it ended: a process should not exit while libpq
    /// is inside a TLS handshake on another thread.
    pub fn stop(&self, within: Duration) -> bool {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let Ok(mut slot) = self.thread.lock() else {
            return false;
        };
        let Some(thread) = slot.take() else {
            return true;
        };
        thread.thread().unpark();
        let deadline = Instant::now() + within;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
            true
        } else {
            *slot = Some(thread);
            false
        }
    }

    /// Whether the listener is connected and listening now.
    pub fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::SeqCst)
    }

    /// The `shop_outbox_listener_up` gauge, to register with the metrics registry.
    pub fn gauge(&self) -> IntGauge {
        self.shared.gauge.clone()
    }
}

impl Drop for PgOutboxListener {
    /// Tells the thread to stop, without waiting for it.
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        if let Ok(slot) = self.thread.lock()
            && let Some(thread) = slot.as_ref()
        {
            thread.thread().unpark();
        }
    }
}

#[async_trait]
impl OutboxWakeup for PgOutboxListener {
    async fn wait(&self, timeout: Duration) {
        let timeout = if self.is_listening() {
            timeout
        } else {
            timeout.min(Self::POLL_WHILE_DISCONNECTED)
        };
        // `Timeout` polls the inner future first, so even a zero timeout takes a stored
        // signal.
        let _ = tokio::time::timeout(timeout, self.shared.signal.notified()).await;
    }
}

impl ComponentStatus for PgOutboxListener {
    fn name(&self) -> &'static str {
        "outboxListener"
    }

    /// Down with a fixed reason: the connection error itself (host and user names) goes
    /// to the log, not to an unauthenticated probe.
    fn status(&self) -> Result<(), String> {
        if self.is_listening() {
            Ok(())
        } else {
            Err("not connected to the database: the outbox relay polls every second".to_owned())
        }
    }
}

/// Connects, listens until the connection is lost, and reconnects with backoff, until the
/// listener is dropped.
fn listen_forever(url: &str, shared: &Shared) {
    let mut backoff = MIN_BACKOFF;
    while !shared.stopped() {
        let lost = listen_once(url, shared, &mut backoff);
        shared.set_listening(false);
        if shared.stopped() {
            break;
        }
        tracing::warn!(
            error = format!("{lost:#}"),
            retry_in = ?backoff,
            "outbox listener disconnected; the relay polls until it reconnects"
        );
        std::thread::park_timeout(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    tracing::debug!("outbox listener stopped");
}

/// One session: connect, `LISTEN`, then turn each batch of notifications into a signal.
/// Returns why the session ended (when the listener was not dropped, it never ends well).
/// A session that got as far as listening resets `backoff`.
fn listen_once(url: &str, shared: &Shared, backoff: &mut Duration) -> anyhow::Error {
    let mut conn = match PgConnection::establish(url) {
        Ok(conn) => conn,
        Err(err) => return anyhow::Error::new(err).context("connecting"),
    };
    if let Err(err) = conn.batch_execute(SESSION) {
        return anyhow::Error::new(err).context("LISTEN");
    }
    *backoff = MIN_BACKOFF;
    shared.set_listening(true);
    tracing::debug!("outbox listener listening");
    loop {
        std::thread::park_timeout(PgOutboxListener::READ_EVERY);
        if shared.stopped() {
            return anyhow::anyhow!("stopped");
        }
        let mut notified = false;
        for notification in conn.notifications_iter() {
            match notification {
                Ok(_) => notified = true,
                Err(err) => return anyhow::Error::new(err).context("listening"),
            }
        }
        if notified {
            shared.signal.notify_one();
        }
    }
}

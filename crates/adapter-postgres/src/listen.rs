//! [`OutboxWakeup`] on PostgreSQL `LISTEN/NOTIFY`: a trigger on `outbox_events`
//! notifies the channel `outbox_events` when an inserting transaction commits, and this
//! listener wakes the relay.
//!
//! The listener holds one connection of its own, outside the pool: diesel's synchronous
//! `PgConnection` cannot wait on its socket, so it is a `tokio-postgres` connection that a
//! background task drives. An idle listener sends nothing; the server pushes a
//! notification when one is due. When the connection is lost (the database restarted,
//! the session was terminated) the task reconnects with backoff, and meanwhile
//! [`OutboxWakeup::wait`] returns every [`PgOutboxListener::POLL_WHILE_DISCONNECTED`], so
//! the relay polls until notifications flow again. Every (re)connection wakes the relay
//! once, for the events committed while nobody listened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use domain::ports::OutboxWakeup;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

mod tls;

/// The channel the `outbox_events_notify` trigger notifies.
const CHANNEL: &str = "outbox_events";
/// First wait before reconnecting; doubles on each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// TCP keepalive probes (no database round trip) find a peer that vanished without
/// closing the socket, such as a host that lost power.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by the listening task and the waiters.
#[derive(Debug, Default)]
struct Shared {
    /// Holds one permit when a signal arrived that no waiter has taken yet.
    signal: Notify,
    listening: AtomicBool,
}

impl Shared {
    fn set_listening(&self, listening: bool) {
        if self.listening.swap(listening, Ordering::SeqCst) != listening {
            // Either way the relay should look now: events may have been committed while
            // nobody listened, or its long wait would no longer be cut short.
            self.signal.notify_one();
        }
    }
}

/// Wakes the outbox relay on `NOTIFY outbox_events`. The listening task stops when
/// this value is dropped.
#[derive(Debug)]
pub struct PgOutboxListener {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl PgOutboxListener {
    /// How often [`OutboxWakeup::wait`] returns while the listener is not connected.
    pub const POLL_WHILE_DISCONNECTED: Duration = Duration::from_secs(1);

    /// Starts listening on the database at `url` (`DATABASE_URL`, its TLS parameters read
    /// as libpq reads them: see the `tls` module) in a background task on the current
    /// Tokio runtime. Never waits for the database: until the first connection succeeds
    /// the listener counts as disconnected.
    ///
    /// # Errors
    /// When `url` cannot be parsed, or names TLS files that cannot be read.
    pub fn start(url: &str) -> anyhow::Result<Self> {
        let tls::Connection { mut config, tls } =
            tls::connection(url, |name| std::env::var(name).ok())?;
        config
            .application_name("shop-outbox-listener")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE);
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(listen_forever(config, tls, shared.clone()));
        Ok(Self { shared, task })
    }

    /// Whether the listener is connected and listening now.
    pub fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::SeqCst)
    }
}

impl Drop for PgOutboxListener {
    fn drop(&mut self) {
        self.task.abort();
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

/// Connects, listens until the connection is lost, and reconnects with backoff, forever.
async fn listen_forever(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    shared: Arc<Shared>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let lost = listen_once(&config, tls.clone(), &shared, &mut backoff).await;
        shared.set_listening(false);
        tracing::warn!(
            error = format!("{lost:#}"),
            retry_in = ?backoff,
            "outbox listener disconnected; the relay polls until it reconnects"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One session: connect, `LISTEN`, then turn each notification into a signal. Returns
/// why the session ended (it never ends well). A session that got as far as listening
/// resets `backoff`.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    shared: &Shared,
    backoff: &mut Duration,
) -> anyhow::Error {
    let (client, mut connection) = match config.connect(tls).await {
        Ok(pair) => pair,
        Err(err) => return anyhow::Error::new(err).context("connecting"),
    };
    // The connection only makes progress while polled, so drive it while LISTEN runs.
    let statement = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    loop {
        tokio::select! {
            done = &mut listen => match done {
                Ok(()) => break,
                Err(err) => return anyhow::Error::new(err).context("LISTEN"),
            },
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                if let Err(err) = on_message(message, shared) {
                    return err;
                }
            }
        }
    }
    *backoff = MIN_BACKOFF;
    shared.set_listening(true);
    tracing::debug!("outbox listener listening");
    loop {
        let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
        // `client` lives until this returns: dropping it would close the connection.
        if let Err(err) = on_message(message, shared) {
            return err;
        }
    }
}

/// Signals on a notification; an error or the end of the stream ends the session.
fn on_message(
    message: Option<Result<AsyncMessage, tokio_postgres::Error>>,
    shared: &Shared,
) -> anyhow::Result<()> {
    match message {
        Some(Ok(AsyncMessage::Notification(_))) => {
            shared.signal.notify_one();
            Ok(())
        }
        Some(Ok(_)) => Ok(()),
        Some(Err(err)) => Err(anyhow::Error::new(err).context("listening")),
        None => Err(anyhow::anyhow!("the server closed the connection")),
    }
}

//! [`JetStreamDataPlatform`]: each event published to a NATS JetStream stream, with its
//! event id as `Nats-Msg-Id`, so the stream's duplicate window drops a retry of an event it
//! already holds. One call is one attempt: delivered only on the stream's publish
//! acknowledgement; no acknowledgement within the timeout, a refusal or a lost connection
//! is a failed attempt, retried by the relay with its backoff.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::ConnectOptions;
use async_nats::connection::State;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, context::GetStreamErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use domain::outbox::OutboxEvent;
use domain::ports::DataPlatform;
use tokio::sync::Mutex;

/// The default subject (`DATA_PLATFORM_SUBJECT`).
pub const DEFAULT_SUBJECT: &str = "shop.orders.paid";
/// The default stream (`DATA_PLATFORM_STREAM`).
pub const DEFAULT_STREAM: &str = "SHOP_ORDERS";
/// The duplicate window of a stream this adapter creates: a retry of an event the stream
/// took less than this long ago is dropped (acknowledged as a duplicate). It spans the
/// relay's longest backoff (a minute) and its claim lease (30 s) with room to spare.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The pauses before each new look-up of the stream by name after its creation was
/// refused as overlapping an existing stream (a concurrent creation of the same stream).
const OVERLAP_RECHECKS: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(80),
    Duration::from_millis(300),
];
/// The shortest duplicate window of an existing stream that is used without a warning.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);
/// How long a stream this adapter creates keeps a message (consumers must read within it).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most bytes a stream this adapter creates holds; past it the oldest are discarded.
pub const MAX_BYTES: i64 = 1 << 30;
/// The largest message a stream this adapter creates accepts (an order's event is a few KiB).
pub const MAX_MESSAGE_SIZE: i32 = 1 << 20;

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    /// One or more comma-separated `nats://` or `tls://` URLs (the seeds of a cluster: the
    /// client reaches any live one, and learns the others from the cluster), with
    /// `user:password@` or `token@` when the servers want them (the same on every seed).
    pub url: String,
    /// The subject every event is published to (no wildcards).
    pub subject: String,
    /// The stream that captures `subject`; created when missing.
    pub stream: String,
    /// A NATS credentials file (a user JWT and its nkey seed), read at start-up.
    pub creds_file: Option<PathBuf>,
    /// A PEM file of CA certificates trusted for `tls://` (instead of the system's).
    pub ca_file: Option<PathBuf>,
    /// How long one publish waits for its acknowledgement.
    pub timeout: Duration,
    /// How many servers hold the stream this adapter creates (1 on a single server, 3 on a
    /// cluster): a publish is acknowledged once a majority of them stored it.
    pub replicas: usize,
}

/// Publishes events to a JetStream stream. Connecting never waits for the server: the
/// client connects (and reconnects) in the background, so the server starts while NATS
/// is down and events wait in the outbox until it is back.
pub struct JetStreamDataPlatform {
    jetstream: jetstream::Context,
    /// The replica count of a stream this adapter creates.
    replicas: usize,
    subject: String,
    stream: String,
    timeout: Duration,
    /// Whether the stream is known to exist (looked up, or created, on first use). Cleared
    /// when a publish finds no stream for the subject (the stream was deleted), so the next
    /// attempt looks it up again and creates it when missing.
    stream_ready: AtomicBool,
    /// One look-up at a time: concurrent deliveries wait for it rather than each making
    /// their own.
    stream_lookup: Mutex<()>,
}

impl std::fmt::Debug for JetStreamDataPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamDataPlatform")
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Checks a publish subject: dot-separated non-empty tokens, no wildcards or whitespace.
///
/// # Errors
/// When the subject is not one a publish may use.
pub fn check_subject(subject: &str) -> anyhow::Result<()> {
    let bad_token = subject.split('.').any(|token| {
        token.is_empty() || token == "*" || token == ">" || token.chars().any(char::is_whitespace)
    });
    if bad_token || subject.len() > 255 {
        anyhow::bail!(
            "DATA_PLATFORM_SUBJECT {subject:?} is not a publish subject (dot-separated tokens, \
             no wildcards `*`/`>`, no whitespace, at most 255 bytes)"
        );
    }
    Ok(())
}

/// Checks a stream name: 1 to 255 characters, none of `.`, `*`, `>`, path separators,
/// whitespace or control characters.
///
/// # Errors
/// When the name is not one JetStream accepts.
pub fn check_stream_name(name: &str) -> anyhow::Result<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| {
            matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control()
        });
    if bad {
        anyhow::bail!(
            "DATA_PLATFORM_STREAM {name:?} is not a stream name (1 to 255 characters, none of \
             `.`, `*`, `>`, `/`, `\\`, whitespace)"
        );
    }
    Ok(())
}

/// The configuration of a stream this adapter creates for `subject`.
pub fn stream_config(stream: &str, subject: &str, replicas: usize) -> StreamConfig {
    StreamConfig {
        name: stream.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: MAX_AGE,
        max_bytes: MAX_BYTES,
        max_message_size: MAX_MESSAGE_SIZE,
        num_replicas: replicas,
        ..StreamConfig::default()
    }
}

/// The most replicas a JetStream stream may have.
pub const MAX_REPLICAS: usize = 5;

/// What the seed URLs of `DATA_PLATFORM_URL` say: the URLs as the client sees (and may
/// log) them, without credentials; whether they want TLS; the credentials, the same on
/// every seed that names any.
struct Seeds {
    urls: Vec<String>,
    tls: bool,
    user: String,
    password: Option<String>,
}

fn seeds(text: &str) -> anyhow::Result<Seeds> {
    let mut urls = Vec::new();
    let mut schemes = Vec::new();
    let mut credentials: Option<(String, Option<String>)> = None;
    for seed in text.split(',').map(str::trim) {
        let mut url = reqwest::Url::parse(seed)
            .map_err(|e| anyhow::anyhow!("DATA_PLATFORM_URL is not a valid URL: {e}"))?;
        match url.scheme() {
            "nats" | "tls" => schemes.push(url.scheme() == "tls"),
            other => anyhow::bail!(
                "a JetStream DATA_PLATFORM_URL must be a nats:// or tls:// URL (got scheme `{other}`)"
            ),
        }
        let user = decoded(url.username())?;
        let password = url.password().map(decoded).transpose()?;
        if !user.is_empty() || password.is_some() {
            match &credentials {
                Some(known) if *known != (user.clone(), password.clone()) => anyhow::bail!(
                    "the seeds of DATA_PLATFORM_URL name different credentials: give each the same"
                ),
                _ => credentials = Some((user, password)),
            }
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        urls.push(url.to_string());
    }
    let tls = schemes.first().copied().unwrap_or(false);
    if schemes.iter().any(|&t| t != tls) {
        anyhow::bail!("the seeds of DATA_PLATFORM_URL mix nats:// and tls://: use one scheme");
    }
    let (user, password) = credentials.unwrap_or_default();
    Ok(Seeds {
        urls,
        tls,
        user,
        password,
    })
}

impl JetStreamDataPlatform {
    /// Reads the credentials and starts connecting in the background.
    ///
    /// # Errors
    /// When the URL is not a `nats://` or `tls://` URL, the subject or stream name is
    /// invalid, or the credentials file cannot be read.
    pub async fn connect(settings: JetStreamSettings) -> anyhow::Result<Self> {
        check_subject(&settings.subject)?;
        check_stream_name(&settings.stream)?;
        if !(1..=MAX_REPLICAS).contains(&settings.replicas) {
            anyhow::bail!(
                "DATA_PLATFORM_STREAM_REPLICAS must be 1..={MAX_REPLICAS} (got {})",
                settings.replicas
            );
        }
        let Seeds {
            urls,
            tls,
            user,
            password,
        } = seeds(&settings.url)?;
        let mut options = ConnectOptions::new()
            .name("shop-server")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(settings.timeout)
            // Reconnect soon after the server is back (0.1 s more per failed try, at most
            // 1 s apart), so events wait for the relay's backoff, not for the client's.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(
                    u64::try_from(attempts)
                        .unwrap_or(u64::MAX)
                        .saturating_mul(100)
                        .min(1_000),
                )
            })
            .require_tls(tls)
            .event_callback(|event| async move {
                tracing::info!(%event, "data platform (NATS) connection");
            });
        match (user, password) {
            (user, Some(password)) => options = options.user_and_password(user, password),
            (token, None) if !token.is_empty() => options = options.token(token),
            _ => {}
        }
        if let Some(path) = &settings.creds_file {
            options = options
                .credentials_file(path)
                .await
                .with_context(|| format!("reading DATA_PLATFORM_NATS_CREDS {}", path.display()))?;
        }
        if let Some(path) = &settings.ca_file {
            // The client reads the file when it connects; a bad one is a start-up error.
            crate::extra_roots(path)?;
            options = options.add_root_certificates(path.clone());
        }
        let client = options
            .connect(urls.as_slice())
            .await
            .with_context(|| format!("connecting to NATS at {}", urls.join(",")))?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(settings.timeout);
        Ok(Self {
            jetstream,
            replicas: settings.replicas,
            subject: settings.subject,
            stream: settings.stream,
            timeout: settings.timeout,
            stream_ready: AtomicBool::new(false),
            stream_lookup: Mutex::new(()),
        })
    }

    /// Looks the stream up unless it is known to exist, one look-up at a time: a delivery
    /// that waited for another's look-up uses its outcome.
    async fn stream_known(&self) -> anyhow::Result<()> {
        if self.stream_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _lookup = self.stream_lookup.lock().await;
        if !self.stream_ready.load(Ordering::Acquire) {
            self.ensure_stream().await?;
            self.stream_ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Whether the stream can be looked up by name within [`OVERLAP_RECHECKS`].
    async fn appears_by_name(&self) -> bool {
        for pause in OVERLAP_RECHECKS {
            tokio::time::sleep(pause).await;
            if self.jetstream.get_stream(&self.stream).await.is_ok() {
                return true;
            }
        }
        false
    }

    /// Uses the stream as it is when it exists, else creates it with [`stream_config`].
    /// A stream of that name created meanwhile (by another instance) counts as there.
    async fn ensure_stream(&self) -> anyhow::Result<()> {
        match self.jetstream.get_stream(&self.stream).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .context("reading the stream's settings")?;
                let config = &info.config;
                if config.duplicate_window < MIN_DUPLICATE_WINDOW {
                    tracing::warn!(
                        stream = %self.stream,
                        duplicate_window = ?config.duplicate_window,
                        "the existing stream's duplicate window is under two minutes: a retry \
                         after it is stored twice"
                    );
                }
                tracing::info!(stream = %self.stream, subjects = ?config.subjects, "data platform: using the existing stream");
                Ok(())
            }
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(ref js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                // Creating a stream that exists with the same settings succeeds (JetStream
                // takes it as the same request); with other settings it is refused as a name
                // in use: either way someone else created it first, and it is used as it is.
                match self
                    .jetstream
                    .create_stream(stream_config(&self.stream, &self.subject, self.replicas))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(stream = %self.stream, subject = %self.subject, "data platform: created the stream");
                        Ok(())
                    }
                    Err(e) => {
                        let code = match e.kind() {
                            CreateStreamErrorKind::JetStream(js) => Some(js.error_code()),
                            _ => None,
                        };
                        // While another client's creation of this same stream is under way,
                        // the server can refuse ours as overlapping it: once that creation is
                        // done, the stream is there by name. A stream of another name on the
                        // subject stays an error.
                        if code == Some(ErrorCode::STREAM_NAME_EXIST)
                            || (code == Some(ErrorCode::STREAM_SUBJECT_OVERLAP)
                                && self.appears_by_name().await)
                        {
                            tracing::info!(stream = %self.stream, "data platform: the stream was created meanwhile; using it");
                            return Ok(());
                        }
                        Err(anyhow::Error::new(e)
                            .context(format!("creating the stream {}", self.stream)))
                    }
                }
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("looking up the stream {}", self.stream)))
            }
        }
    }
}

/// Whether a publish failed because no stream (or not ours) captured the subject: no
/// responders, or the stream refused as not found or not the expected one.
fn no_stream_for_subject(error: &PublishError) -> bool {
    match error.kind() {
        PublishErrorKind::StreamNotFound => true,
        PublishErrorKind::Other => std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .is_some_and(|js| {
                matches!(
                    js.error_code(),
                    ErrorCode::STREAM_NOT_FOUND | ErrorCode::STREAM_NOT_MATCH
                )
            }),
        _ => false,
    }
}

/// A percent-decoded URL user or password.
fn decoded(text: &str) -> anyhow::Result<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(String::from)
        .context("DATA_PLATFORM_URL credentials are not UTF-8")
}

#[async_trait]
impl DataPlatform for JetStreamDataPlatform {
    #[tracing::instrument(name = "data_platform.publish", skip_all, fields(event_id = %event.id))]
    async fn deliver(&self, event: &OutboxEvent) -> anyhow::Result<()> {
        let message = PublishMessage::build()
            .payload(Bytes::from(event.payload.clone().into_bytes()))
            .message_id(&event.id)
            .expected_stream(&self.stream);
        // The whole attempt (a look-up of the stream included) within the timeout: a
        // request to a disconnected client would otherwise wait for the client's own.
        // Disconnected (the client reconnects in the background): fail at once rather than
        // hold a delivery slot until the timeout; the relay retries with its backoff. (Still
        // connecting the first time, the attempt waits for it, within the timeout.)
        if self.jetstream.client().connection_state() == State::Disconnected {
            anyhow::bail!("not connected to NATS (reconnecting in the background)");
        }
        let publish = async {
            self.stream_known().await?;
            let acked = async {
                self.jetstream
                    .send_publish(self.subject.clone(), message)
                    .await?
                    .await
            };
            acked.await.map_err(|e| {
                if no_stream_for_subject(&e) {
                    // Deleted while we run: the next attempt looks it up again (and
                    // creates it when missing).
                    self.stream_ready.store(false, Ordering::Release);
                    tracing::warn!(stream = %self.stream, error = %e, "data platform: no stream took the event; looking the stream up again on the next attempt");
                }
                anyhow::Error::new(e).context("publishing to the stream")
            })
        };
        let ack = tokio::time::timeout(self.timeout, publish)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no acknowledgement from the stream within {:?}",
                    self.timeout
                )
            })??;
        if ack.duplicate {
            tracing::info!(
                stream = %ack.stream,
                sequence = ack.sequence,
                "the stream already held this event (a retry dropped by its duplicate window)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_with_wildcards_or_empty_tokens_are_refused() {
        for good in ["shop.orders.paid", "orders", "a-b.c_d.7"] {
            assert!(check_subject(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "shop.*.paid",
            "shop.orders.>",
            "shop..paid",
            ".shop",
            "shop.",
            "a b",
            ">",
        ] {
            let err = check_subject(bad).unwrap_err().to_string();
            assert!(err.contains("DATA_PLATFORM_SUBJECT"), "{bad}: {err}");
        }
    }

    #[test]
    fn stream_names_with_dots_wildcards_or_separators_are_refused() {
        assert!(check_stream_name("SHOP_ORDERS").is_ok());
        for bad in ["", "SHOP.ORDERS", "A*", "A>", "a/b", "a b", "a\\b"] {
            assert!(check_stream_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_created_stream_is_on_file_with_a_duplicate_window_of_at_least_two_minutes() {
        let config = stream_config("S", "s.x", 3);
        assert_eq!(config.num_replicas, 3);
        assert_eq!(config.storage, StorageType::File);
        assert!(config.duplicate_window >= MIN_DUPLICATE_WINDOW);
        assert!(config.duplicate_window <= config.max_age);
        assert_eq!(config.subjects, vec!["s.x".to_owned()]);
    }

    #[test]
    fn url_credentials_are_percent_decoded() {
        assert_eq!(decoded("p%40ss%3Aw").unwrap(), "p@ss:w");
        assert_eq!(decoded("plain%zz").unwrap(), "plain%zz");
    }

    #[tokio::test]
    async fn only_nats_and_tls_urls_are_taken() {
        let settings = |url: &str| JetStreamSettings {
            url: url.into(),
            subject: DEFAULT_SUBJECT.into(),
            stream: DEFAULT_STREAM.into(),
            creds_file: None,
            ca_file: None,
            timeout: Duration::from_secs(1),
            replicas: 1,
        };
        for bad in [
            "http://127.0.0.1:4222",
            "127.0.0.1:4222",
            "nats://127.0.0.1:4222,http://127.0.0.1:4223",
            "nats://127.0.0.1:4222,",
        ] {
            assert!(
                JetStreamDataPlatform::connect(settings(bad)).await.is_err(),
                "{bad}"
            );
        }
        let mut missing_creds = settings("nats://127.0.0.1:9");
        missing_creds.creds_file = Some("/nonexistent/shop.creds".into());
        let err = format!(
            "{:#}",
            JetStreamDataPlatform::connect(missing_creds)
                .await
                .unwrap_err()
        );
        assert!(err.contains("DATA_PLATFORM_NATS_CREDS"), "{err}");
        let mut missing_ca = settings("tls://127.0.0.1:9");
        missing_ca.ca_file = Some("/nonexistent/nats-ca.pem".into());
        let err = format!(
            "{:#}",
            JetStreamDataPlatform::connect(missing_ca)
                .await
                .unwrap_err()
        );
        assert!(err.contains("DATA_PLATFORM_CA_FILE"), "{err}");
    }

    #[test]
    fn seeds_are_read_one_by_one_with_one_scheme_and_one_set_of_credentials() {
        let read =
            seeds("nats://u:p%40ss@n1:4222, nats://u:p%40ss@n2:4223,nats://n3:4224").unwrap();
        assert_eq!(
            read.urls,
            ["nats://n1:4222", "nats://n2:4223", "nats://n3:4224"]
        );
        assert_eq!(
            (read.user.as_str(), read.password.as_deref()),
            ("u", Some("p@ss"))
        );
        assert!(!read.tls);
        assert!(seeds("tls://n1:4222,tls://n2:4222").unwrap().tls);
        for bad in [
            "nats://n1:4222,tls://n2:4222",
            "nats://a:b@n1:4222,nats://a:c@n2:4222",
            "nats://n1:4222,,nats://n2:4222",
        ] {
            assert!(seeds(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_replica_count_beyond_what_jetstream_takes_is_refused() {
        for replicas in [0, MAX_REPLICAS + 1] {
            let settings = JetStreamSettings {
                url: "nats://127.0.0.1:9".into(),
                subject: DEFAULT_SUBJECT.into(),
                stream: DEFAULT_STREAM.into(),
                creds_file: None,
                ca_file: None,
                timeout: Duration::from_secs(1),
                replicas,
            };
            let err = format!(
                "{:#}",
                JetStreamDataPlatform::connect(settings).await.unwrap_err()
            );
            assert!(err.contains("DATA_PLATFORM_STREAM_REPLICAS"), "{err}");
        }
    }
}

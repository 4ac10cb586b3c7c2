//! The data platform (데이터 플랫폼) adapters: [`HttpDataPlatform`] posts each event to
//! an `http(s)://` `DATA_PLATFORM_URL` (signed when a [`WebhookSecret`] is given);
//! [`JetStreamDataPlatform`] publishes it to a NATS JetStream stream for a `nats://` or
//! `tls://` one; [`LoggingDataPlatform`] (the "mock API") logs it when no URL is configured. Retries
//! are the relay's (with backoff, persisted in the outbox), not this adapter's: one call
//! is one attempt.

mod jetstream;
mod signing;
#[cfg(feature = "test-support")]
pub mod test_support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use domain::outbox::OutboxEvent;
use domain::ports::DataPlatform;

pub use jetstream::{
    DEFAULT_STREAM, DEFAULT_SUBJECT, DUPLICATE_WINDOW, JetStreamDataPlatform, JetStreamSettings,
    MAX_AGE, MAX_BYTES, MAX_MESSAGE_SIZE, MAX_REPLICAS, MIN_DUPLICATE_WINDOW, check_stream_name,
    check_subject, stream_config,
};
pub use signing::{MAX_SECRET_BYTES, MIN_SECRET_BYTES, WebhookSecret};

/// Posts events as JSON with `Idempotency-Key: <eventId>`; any 2xx is delivered.
///
/// `http://` or `https://` (rustls, with the webpki roots plus any extra roots from
/// `DATA_PLATFORM_CA_FILE`). Redirects are never followed: a 3xx would turn the POST
/// into a body-less GET whose 2xx lost the event, so a 3xx is a failed attempt.
///
/// With a secret ([`Self::signed`]), every POST also carries the Standard Webhooks
/// headers `webhook-id` (the event id), `webhook-timestamp` (Unix seconds, taken per
/// attempt) and `webhook-signature` over the exact body bytes sent.
#[derive(Debug, Clone)]
pub struct HttpDataPlatform {
    client: reqwest::Client,
    url: String,
    secret: Option<WebhookSecret>,
}

impl HttpDataPlatform {
    /// `ca_file` is a PEM file of one or more certificates trusted as extra roots
    /// (a private CA), on top of the usual web roots.
    ///
    /// # Errors
    /// When the URL is not an `http://` or `https://` URL, when `ca_file` cannot be read
    /// or holds no valid certificate, or when the HTTP client cannot be built.
    pub fn new(url: String, timeout: Duration, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| anyhow::anyhow!("DATA_PLATFORM_URL is not a valid URL: {e}"))?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => anyhow::bail!(
                "DATA_PLATFORM_URL must be an http://, https://, nats:// or tls:// URL (got \
                 scheme `{other}`)"
            ),
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            for certificate in extra_roots(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().with_context(|| match ca_file {
            Some(path) => format!(
                "building the data platform HTTP client (DATA_PLATFORM_CA_FILE {})",
                path.display()
            ),
            None => "building the data platform HTTP client".to_owned(),
        })?;
        Ok(Self {
            client,
            url,
            secret: None,
        })
    }

    /// Signs every delivery with `secret` (`DATA_PLATFORM_SECRET`).
    #[must_use]
    pub fn signed(mut self, secret: WebhookSecret) -> Self {
        self.secret = Some(secret);
        self
    }
}

/// The certificates of a PEM file; none at all is an error (a wrong file, not a CA).
pub(crate) fn extra_roots(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("reading DATA_PLATFORM_CA_FILE {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
        format!(
            "DATA_PLATFORM_CA_FILE {} is not a valid PEM certificate file",
            path.display()
        )
    })?;
    if certificates.is_empty() {
        anyhow::bail!(
            "DATA_PLATFORM_CA_FILE {} holds no PEM certificate",
            path.display()
        );
    }
    Ok(certificates)
}

#[async_trait]
impl DataPlatform for HttpDataPlatform {
    #[tracing::instrument(name = "data_platform.deliver", skip_all, fields(event_id = %event.id))]
    async fn deliver(&self, event: &OutboxEvent) -> anyhow::Result<()> {
        let body = event.payload.clone().into_bytes();
        let mut request = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &event.id)
            .header("Content-Type", "application/json");
        if let Some(secret) = &self.secret {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            request = request
                .header("webhook-id", &event.id)
                .header("webhook-timestamp", timestamp.to_string())
                .header(
                    "webhook-signature",
                    secret.sign(&event.id, timestamp, &body),
                );
        }
        // The signed bytes are the bytes sent. The error leaves the URL out: its query or
        // credentials would reach the logs and `outbox_events.last_error`.
        let response = request
            .body(body)
            .send()
            .await
            .map_err(reqwest::Error::without_url)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("none");
            Err(anyhow::anyhow!(
                "data platform answered {status} (a redirect, not followed; Location: {location})"
            ))
        } else {
            Err(anyhow::anyhow!("data platform answered {status}"))
        }
    }
}

/// Logs each event instead of sending it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoggingDataPlatform;

#[async_trait]
impl DataPlatform for LoggingDataPlatform {
    async fn deliver(&self, event: &OutboxEvent) -> anyhow::Result<()> {
        tracing::info!(event_id = %event.id, event_type = %event.event_type, payload = %event.payload, "data platform (log only)");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_string, header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn event() -> OutboxEvent {
        OutboxEvent {
            id: "0b5c".into(),
            event_type: "ORDER_PAID".into(),
            payload: r#"{"eventId":"0b5c"}"#.into(),
            attempts: 1,
        }
    }

    #[tokio::test]
    async fn an_event_is_posted_with_its_id_as_idempotency_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("Idempotency-Key", "0b5c"))
            .and(body_string(r#"{"eventId":"0b5c"}"#))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&server)
            .await;
        let platform = HttpDataPlatform::new(server.uri(), Duration::from_secs(2), None).unwrap();
        platform.deliver(&event()).await.unwrap();
    }

    #[tokio::test]
    async fn errors_and_timeouts_are_failures_to_retry() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let platform =
            HttpDataPlatform::new(server.uri(), Duration::from_millis(300), None).unwrap();
        assert!(
            platform
                .deliver(&event())
                .await
                .unwrap_err()
                .to_string()
                .contains("503")
        );
        assert!(platform.deliver(&event()).await.is_err(), "a timeout");
        let refused =
            HttpDataPlatform::new("http://127.0.0.1:9".into(), Duration::from_secs(1), None)
                .unwrap();
        assert!(refused.deliver(&event()).await.is_err());
    }

    /// The error is logged and stored in `outbox_events.last_error`: it must not carry the
    /// URL's credentials or query.
    #[tokio::test]
    async fn a_failed_delivery_does_not_show_the_urls_credentials_or_query() {
        let refused = HttpDataPlatform::new(
            "http://user:dp-pass@127.0.0.1:9/events?token=dp-query".into(),
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        let err = format!("{:#}", refused.deliver(&event()).await.unwrap_err());
        assert!(
            !err.contains("dp-pass") && !err.contains("dp-query"),
            "{err}"
        );
    }

    #[test]
    fn a_url_that_is_not_http_or_https_is_refused() {
        for url in [
            "ftp://platform.example/events",
            "platform.example/events",
            "file:///x",
        ] {
            let err = HttpDataPlatform::new(url.into(), Duration::from_secs(1), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("DATA_PLATFORM_URL"), "{url}: {err}");
        }
        assert!(
            HttpDataPlatform::new("https://p.example/e".into(), Duration::from_secs(1), None)
                .is_ok()
        );
    }

    #[test]
    fn a_missing_or_invalid_ca_file_is_a_start_up_error() {
        let url = || "https://p.example/events".to_owned();
        let missing = Path::new("/nonexistent/dataplatform-ca.pem");
        let err = format!(
            "{:#}",
            HttpDataPlatform::new(url(), Duration::from_secs(1), Some(missing)).unwrap_err()
        );
        assert!(err.contains("DATA_PLATFORM_CA_FILE"), "{err}");
        let dir = std::env::temp_dir().join(format!("dataplatform-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in [
            ("empty.pem", ""),
            ("text.pem", "not a certificate\n"),
            (
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            let err = format!(
                "{:#}",
                HttpDataPlatform::new(url(), Duration::from_secs(1), Some(&path)).unwrap_err()
            );
            assert!(err.contains("DATA_PLATFORM_CA_FILE"), "{name}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

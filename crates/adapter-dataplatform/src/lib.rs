//! The data platform (데이터 플랫폼) adapters: [`HttpDataPlatform`] posts each event to
//! `DATA_PLATFORM_URL`; [`LoggingDataPlatform`] (the "mock API") logs it when no URL is
//! configured. Retries are the relay's (with backoff, persisted in the outbox), not
//! this adapter's: one call is one attempt.

use std::time::Duration;

use async_trait::async_trait;
use domain::outbox::OutboxEvent;
use domain::ports::DataPlatform;

/// Posts events as JSON with `Idempotency-Key: <eventId>`; any 2xx is delivered.
#[derive(Debug, Clone)]
pub struct HttpDataPlatform {
    client: reqwest::Client,
    url: String,
}

impl HttpDataPlatform {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(url: String, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl DataPlatform for HttpDataPlatform {
    #[tracing::instrument(name = "data_platform.deliver", skip_all, fields(event_id = %event.id))]
    async fn deliver(&self, event: &OutboxEvent) -> anyhow::Result<()> {
        let response = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &event.id)
            .header("Content-Type", "application/json")
            .body(event.payload.clone())
            .send()
            .await?;
        let status = response.status();
        if status.is_success() {
            Ok(())
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
        let platform = HttpDataPlatform::new(server.uri(), Duration::from_secs(2)).unwrap();
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
        let platform = HttpDataPlatform::new(server.uri(), Duration::from_millis(300)).unwrap();
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
            HttpDataPlatform::new("http://127.0.0.1:9".into(), Duration::from_secs(1)).unwrap();
        assert!(refused.deliver(&event()).await.is_err());
    }
}

//! `JetStreamDataPlatform` against a real `nats-server -js`: the shared one at `NATS_URL`
//! (`make test` starts it; these tests fail without it), and servers of a test's own where
//! a test needs to stop one or to require credentials.

use std::time::Duration;

use adapter_dataplatform::test_support::{NatsServer, nats_url, read_new, unique};
use adapter_dataplatform::{
    DUPLICATE_WINDOW, JetStreamDataPlatform, JetStreamSettings, MIN_DUPLICATE_WINDOW,
};
use anyhow::Context as _;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use domain::outbox::OutboxEvent;
use domain::ports::DataPlatform;

struct Target {
    url: String,
    stream: String,
    subject: String,
}

fn fresh_target(url: String) -> Target {
    let stream = unique("T");
    let subject = format!("test.{}.orders.paid", stream.to_ascii_lowercase());
    Target {
        url,
        stream,
        subject,
    }
}

async fn platform(target: &Target) -> anyhow::Result<JetStreamDataPlatform> {
    JetStreamDataPlatform::connect(JetStreamSettings {
        url: target.url.clone(),
        subject: target.subject.clone(),
        stream: target.stream.clone(),
        creds_file: None,
        ca_file: None,
        timeout: Duration::from_secs(2),
    })
    .await
}

fn event(id: &str) -> OutboxEvent {
    OutboxEvent {
        id: id.into(),
        event_type: "ORDER_PAID".into(),
        payload: format!(
            r#"{{"eventId":"{id}","eventType":"ORDER_PAID","order":{{"note":"데이터"}}}}"#
        ),
        attempts: 1,
    }
}

async fn stream_info(
    url: &str,
    stream: &str,
) -> anyhow::Result<async_nats::jetstream::stream::Info> {
    let client = async_nats::connect(url).await?;
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(stream)
        .await?;
    Ok(stream.info().await?.clone())
}

#[tokio::test]
async fn every_event_is_on_the_stream_once_with_its_event_id_as_nats_msg_id() -> anyhow::Result<()>
{
    let target = fresh_target(nats_url()?);
    let platform = platform(&target).await?;
    let events = [event("e-1"), event("e-2"), event("e-3")];
    for e in &events {
        platform.deliver(e).await?;
    }
    // Retries of delivered events (a lost mark): acknowledged, and dropped by the stream.
    platform.deliver(&events[0]).await?;
    platform.deliver(&events[2]).await?;
    let second = platform_again(&target).await?;
    second.deliver(&events[1]).await?;

    let read = read_new(&target.url, &target.stream, "reader").await?;
    let got: Vec<_> = read
        .iter()
        .map(|m| (m.msg_id.as_deref(), m.payload.as_str()))
        .collect();
    let want: Vec<_> = events
        .iter()
        .map(|e| (Some(e.id.as_str()), e.payload.as_str()))
        .collect();
    assert_eq!(got, want, "each event once, in order, its body unchanged");
    assert!(
        read_new(&target.url, &target.stream, "reader")
            .await?
            .is_empty(),
        "the durable consumer has read everything"
    );
    Ok(())
}

/// Another adapter (as another instance, or the restarted one) on the same stream.
async fn platform_again(target: &Target) -> anyhow::Result<JetStreamDataPlatform> {
    platform(target).await
}

#[tokio::test]
async fn a_missing_stream_is_created_on_file_with_the_duplicate_window() -> anyhow::Result<()> {
    let target = fresh_target(nats_url()?);
    platform(&target).await?.deliver(&event("c-1")).await?;
    let info = stream_info(&target.url, &target.stream).await?;
    assert_eq!(info.config.storage, StorageType::File);
    assert_eq!(info.config.subjects, vec![target.subject.clone()]);
    assert_eq!(info.config.duplicate_window, DUPLICATE_WINDOW);
    assert!(info.config.duplicate_window >= MIN_DUPLICATE_WINDOW);
    assert_eq!(info.state.messages, 1);
    Ok(())
}

#[tokio::test]
async fn an_existing_stream_is_used_as_it_is() -> anyhow::Result<()> {
    let target = fresh_target(nats_url()?);
    let client = async_nats::connect(&target.url).await?;
    let wildcard = format!(
        "{}.>",
        target
            .subject
            .rsplit_once('.')
            .context("a dotted subject")?
            .0
    );
    async_nats::jetstream::new(client)
        .create_stream(StreamConfig {
            name: target.stream.clone(),
            subjects: vec![wildcard.clone()],
            storage: StorageType::Memory,
            duplicate_window: Duration::from_secs(180),
            ..StreamConfig::default()
        })
        .await?;
    let platform = platform(&target).await?;
    platform.deliver(&event("x-1")).await?;
    platform.deliver(&event("x-1")).await?;
    let info = stream_info(&target.url, &target.stream).await?;
    assert_eq!(
        (
            info.config.storage,
            info.config.subjects,
            info.config.duplicate_window
        ),
        (
            StorageType::Memory,
            vec![wildcard],
            Duration::from_secs(180)
        ),
        "left as it was"
    );
    assert_eq!(info.state.messages, 1);
    Ok(())
}

#[tokio::test]
async fn no_server_is_a_failed_attempt_and_the_event_arrives_once_the_server_is_up()
-> anyhow::Result<()> {
    let mut server = NatsServer::start(&[])?;
    let target = fresh_target(server.url());
    server.kill()?;
    // Connecting does not wait for the server (the outbox holds the events meanwhile).
    let platform = platform(&target).await?;
    let down = platform.deliver(&event("d-1")).await;
    assert!(down.is_err(), "no server, no acknowledgement: {down:?}");
    server.restart()?;
    // The client reconnects in the background; the relay's next attempt gets through.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match platform.deliver(&event("d-1")).await {
            Ok(()) => break,
            Err(e) if attempts < 20 => eprintln!("attempt {attempts}: {e:#}"),
            Err(e) => return Err(e.context("still failing after the server came back")),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let read = read_new(&target.url, &target.stream, "reader").await?;
    assert_eq!(
        read.len(),
        1,
        "once, although published while down: {read:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_token_or_user_and_password_in_the_url_authenticate() -> anyhow::Result<()> {
    let token_server = NatsServer::start(&["--auth", "s3cr3t-token"])?;
    let port = token_server
        .url()
        .rsplit(':')
        .next()
        .map(str::to_owned)
        .context("port")?;
    let with_token = fresh_target(format!("nats://s3cr3t-token@127.0.0.1:{port}"));
    platform(&with_token).await?.deliver(&event("t-1")).await?;
    let wrong = fresh_target(format!("nats://wrong@127.0.0.1:{port}"));
    assert!(
        platform(&wrong)
            .await?
            .deliver(&event("t-2"))
            .await
            .is_err()
    );

    let user_server = NatsServer::start(&["--user", "shop", "--pass", "p@ss:word"])?;
    let port = user_server
        .url()
        .rsplit(':')
        .next()
        .map(str::to_owned)
        .context("port")?;
    let with_user = fresh_target(format!("nats://shop:p%40ss%3Aword@127.0.0.1:{port}"));
    platform(&with_user).await?.deliver(&event("u-1")).await?;
    let wrong = fresh_target(format!("nats://shop:nope@127.0.0.1:{port}"));
    assert!(
        platform(&wrong)
            .await?
            .deliver(&event("u-2"))
            .await
            .is_err()
    );
    Ok(())
}

/// A private CA's PEM, and a certificate and key it signed for 127.0.0.1, written to `dir`.
fn write_test_pki(dir: &std::path::Path) -> anyhow::Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shop test NATS CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(Vec::<String>::new())?;
    leaf_params.subject_alt_names = vec![SanType::IpAddress(std::net::IpAddr::V4(
        std::net::Ipv4Addr::LOCALHOST,
    ))];
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::write(path("ca.pem"), ca.pem())?;
    std::fs::write(path("server.pem"), leaf.pem())?;
    std::fs::write(path("server-key.pem"), leaf_key.serialize_pem())?;
    Ok((path("ca.pem"), path("server.pem"), path("server-key.pem")))
}

#[tokio::test]
async fn a_tls_url_publishes_over_tls_trusting_the_ca_file() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("shop-nats-pki"));
    std::fs::create_dir_all(&dir)?;
    let (ca, cert, key) = write_test_pki(&dir)?;
    let server = NatsServer::start(&["--tls", "--tlscert", &cert, "--tlskey", &key])?;
    let tls_url = server.url().replacen("nats://", "tls://", 1);
    let target = fresh_target(tls_url);
    let trusted = JetStreamDataPlatform::connect(JetStreamSettings {
        url: target.url.clone(),
        subject: target.subject.clone(),
        stream: target.stream.clone(),
        creds_file: None,
        ca_file: Some(ca.into()),
        timeout: Duration::from_secs(2),
    })
    .await?;
    trusted.deliver(&event("tls-1")).await?;
    // Without the private CA the server's certificate is not trusted: never delivered.
    let untrusted = platform(&fresh_target(target.url.clone())).await?;
    assert!(untrusted.deliver(&event("tls-2")).await.is_err());
    // The server requires TLS: the same server over plain nats:// takes nothing.
    let plain = platform(&fresh_target(server.url())).await?;
    assert!(plain.deliver(&event("tls-3")).await.is_err());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

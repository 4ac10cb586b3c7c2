//! `JetStreamDataPlatform` against a real `nats-server -js`: the shared one at `NATS_URL`
//! (`make test` starts it; these tests fail without it), and servers of a test's own where
//! a test needs to stop one or to require credentials.

use std::time::Duration;

use adapter_dataplatform::test_support::{
    NatsCluster, NatsServer, delete_stream, nats_url, read_new, unique,
};
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
        replicas: 1,
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
    // The shared server reserves each stream's max bytes: leave none behind.
    delete_stream(&target.url, &target.stream).await?;
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
    // The shared server reserves each stream's max bytes: leave none behind.
    delete_stream(&target.url, &target.stream).await?;
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
    // The shared server reserves each stream's max bytes: leave none behind.
    delete_stream(&target.url, &target.stream).await?;
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
        replicas: 1,
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

/// A NATS JWT (nats-io/jwt v2): a compact JWS with the header
/// `{"typ":"JWT","alg":"ed25519-nkey"}`, signed by `issuer`'s nkey; its `jti` is the base32
/// SHA-512/256 of the claims without it, as the nats-io library makes it.
fn nats_jwt(
    issuer: &nkeys::KeyPair,
    subject: &str,
    name: &str,
    nats: serde_json::Value,
) -> anyhow::Result<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::Digest as _;
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = |jti: &str| {
        serde_json::json!({
            "jti": jti,
            "iat": issued_at,
            "iss": issuer.public_key(),
            "name": name,
            "sub": subject,
            "nats": nats,
        })
    };
    let id = sha2::Sha512_256::digest(serde_json::to_vec(&claims(""))?);
    let claims = claims(&data_encoding::BASE32_NOPAD.encode(&id));
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
    );
    let signature = issuer.sign(signed.as_bytes())?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// An account's limits: everything unlimited, JetStream (memory and file) included when
/// `jetstream`.
fn account_claims(jetstream: bool) -> serde_json::Value {
    let limits = if jetstream {
        serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        })
    } else {
        serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
        })
    };
    serde_json::json!({ "type": "account", "version": 2, "limits": limits })
}

/// A credentials file (as `nsc generate creds` writes it) for a new user of `account`.
fn write_creds(path: &std::path::Path, account: &nkeys::KeyPair, name: &str) -> anyhow::Result<()> {
    let user = nkeys::KeyPair::new_user();
    let jwt = nats_jwt(
        account,
        &user.public_key(),
        name,
        serde_json::json!({
            "type": "user", "version": 2, "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1,
        }),
    )?;
    let seed = user.seed()?;
    std::fs::write(
        path,
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        ),
    )?;
    Ok(())
}

/// A `nats-server -js` in operator (decentralized JWT) mode: a test operator, its system
/// account and a `SHOP` account with JetStream, preloaded in a memory resolver. Writes, in
/// `dir`, `shop.creds` (a user of `SHOP`) and `foreign.creds` (a user signed by an account
/// key the operator never signed).
fn operator_mode_server(dir: &std::path::Path) -> anyhow::Result<NatsServer> {
    let operator = nkeys::KeyPair::new_operator();
    let system = nkeys::KeyPair::new_account();
    let shop = nkeys::KeyPair::new_account();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "shop-test-operator",
        serde_json::json!({
            "type": "operator", "version": 2, "system_account": system.public_key(),
        }),
    )?;
    let system_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        account_claims(false),
    )?;
    let shop_jwt = nats_jwt(&operator, &shop.public_key(), "SHOP", account_claims(true))?;
    let config = dir.join("operator.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {operator_jwt}\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {shop_key}: {shop_jwt}\n}}\n",
            system = system.public_key(),
            shop_key = shop.public_key(),
        ),
    )?;
    write_creds(&dir.join("shop.creds"), &shop, "shop-server")?;
    write_creds(
        &dir.join("foreign.creds"),
        &nkeys::KeyPair::new_account(),
        "intruder",
    )?;
    NatsServer::start(&["-c", &config.to_string_lossy()])
}

#[tokio::test]
async fn a_creds_file_authenticates_to_a_server_in_operator_mode() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("shop-nats-operator"));
    std::fs::create_dir_all(&dir)?;
    let server = operator_mode_server(&dir)?;
    let with_creds = |creds: Option<std::path::PathBuf>| {
        let target = fresh_target(server.url());
        let settings = JetStreamSettings {
            url: target.url.clone(),
            subject: target.subject.clone(),
            stream: target.stream.clone(),
            creds_file: creds,
            ca_file: None,
            timeout: Duration::from_secs(2),
            replicas: 1,
        };
        (target, JetStreamDataPlatform::connect(settings))
    };

    let (target, connecting) = with_creds(Some(dir.join("shop.creds")));
    connecting.await?.deliver(&event("jwt-1")).await?;
    // What the stream holds, read as the same user (the server takes no anonymous client).
    let client = async_nats::ConnectOptions::with_credentials_file(dir.join("shop.creds"))
        .await?
        .connect(&target.url)
        .await?;
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(&target.stream)
        .await?;
    assert_eq!(stream.info().await?.state.messages, 1);
    let held = stream.get_raw_message(1).await?;
    assert_eq!(
        held.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("jwt-1")
    );
    assert_eq!(held.payload, event("jwt-1").payload.as_bytes());

    // A user signed by an account the operator never signed, or no credentials at all:
    // the server refuses the connection and the attempt fails.
    for creds in [Some(dir.join("foreign.creds")), None] {
        let (_, connecting) = with_creds(creds.clone());
        let attempt = connecting.await?.deliver(&event("jwt-2")).await;
        assert!(attempt.is_err(), "{creds:?}: {attempt:?}");
    }
    // The cause is the server's refusal (a client that does not retry sees it).
    let foreign = async_nats::ConnectOptions::with_credentials_file(dir.join("foreign.creds"))
        .await?
        .connect(&server.url())
        .await;
    assert!(
        matches!(&foreign, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
        "{foreign:?}"
    );
    let anonymous = async_nats::connect(&server.url()).await;
    assert!(
        matches!(&anonymous, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
        "{anonymous:?}"
    );
    drop(server);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn a_stream_of_another_name_on_the_subject_fails_every_attempt() -> anyhow::Result<()> {
    let target = fresh_target(nats_url()?);
    let other = unique("OTHER");
    let client = async_nats::connect(&target.url).await?;
    async_nats::jetstream::new(client)
        .create_stream(StreamConfig {
            name: other.clone(),
            subjects: vec![target.subject.clone()],
            storage: StorageType::Memory,
            ..StreamConfig::default()
        })
        .await?;
    let platform = platform(&target).await?;
    for attempt in 1..=2 {
        let delivered = platform.deliver(&event("o-1")).await;
        let Err(e) = delivered else {
            anyhow::bail!("attempt {attempt} was delivered into another stream's subject");
        };
        assert!(
            format!("{e:#}").contains("subjects overlap"),
            "attempt {attempt}: {e:#}"
        );
    }
    assert_eq!(
        stream_info(&target.url, &other).await?.state.messages,
        0,
        "nothing published into the other stream"
    );
    delete_stream(&target.url, &other).await?;
    Ok(())
}

#[tokio::test]
async fn a_stream_deleted_while_running_is_created_again_by_a_later_attempt() -> anyhow::Result<()>
{
    let target = fresh_target(nats_url()?);
    let platform = platform(&target).await?;
    platform.deliver(&event("del-1")).await?;
    delete_stream(&target.url, &target.stream).await?;
    // This attempt may fail (no stream took it); the relay tries again, and that one
    // finds the stream missing, creates it and delivers.
    let first = platform.deliver(&event("del-2")).await;
    if let Err(e) = &first {
        eprintln!("the attempt right after the deletion failed: {e:#}");
    }
    platform.deliver(&event("del-2")).await?;

    let info = stream_info(&target.url, &target.stream).await?;
    let want = adapter_dataplatform::stream_config(&target.stream, &target.subject, 1);
    assert_eq!(
        (
            info.config.subjects,
            info.config.storage,
            info.config.duplicate_window,
            info.config.max_age,
            info.config.max_bytes,
            info.config.max_message_size,
        ),
        (
            want.subjects,
            want.storage,
            want.duplicate_window,
            want.max_age,
            want.max_bytes,
            want.max_message_size,
        ),
        "created again with the adapter's settings"
    );
    let read = read_new(&target.url, &target.stream, "reader").await?;
    let ids: Vec<_> = read.iter().map(|m| m.msg_id.as_deref()).collect();
    assert_eq!(
        ids,
        vec![Some("del-2")],
        "only what came after the deletion"
    );
    // The shared server reserves each stream's max bytes: leave none behind.
    delete_stream(&target.url, &target.stream).await?;
    Ok(())
}

#[tokio::test]
async fn many_deliveries_in_flight_after_a_deletion_all_arrive_by_the_next_attempt()
-> anyhow::Result<()> {
    let target = fresh_target(nats_url()?);
    // Two instances on the same stream, 32 deliveries in flight each.
    let instances = [
        std::sync::Arc::new(platform(&target).await?),
        std::sync::Arc::new(platform(&target).await?),
    ];
    for instance in &instances {
        instance.deliver(&event("before")).await?;
    }
    delete_stream(&target.url, &target.stream).await?;
    let ids: Vec<String> = (0..64).map(|i| format!("many-{i}")).collect();
    let round = |ids: Vec<String>| {
        let mut set = tokio::task::JoinSet::new();
        for (instance, id) in instances.iter().cycle().zip(ids) {
            let instance = std::sync::Arc::clone(instance);
            set.spawn(async move {
                let result = instance.deliver(&event(&id)).await;
                (id, result)
            });
        }
        set.join_all()
    };
    // The first round may fail, wholly or in part (published before the stream was back).
    let first = round(ids.clone()).await;
    let failed = first.iter().filter(|(_, r)| r.is_err()).count();
    eprintln!("first round after the deletion: {failed} of 64 failed");
    // The relay's next attempt of every event: each one delivered.
    let second = round(ids.clone()).await;
    for (id, result) in &second {
        assert!(result.is_ok(), "{id}: {result:?}");
    }
    let read = read_new(&target.url, &target.stream, "reader").await?;
    let mut got: Vec<String> = read.into_iter().filter_map(|m| m.msg_id).collect();
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want, "every event once, and nothing from before");
    // The shared server reserves each stream's max bytes: leave none behind.
    delete_stream(&target.url, &target.stream).await?;
    Ok(())
}

/// `DATA_PLATFORM_URL` with several seeds: the first names a port nothing listens on, the
/// second the live server; the client reaches the live one and every event is delivered.
#[tokio::test]
async fn a_list_of_seeds_reaches_a_live_one() -> anyhow::Result<()> {
    let live = nats_url()?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let target = fresh_target(live.clone());
    let seeded = Target {
        url: format!("nats://127.0.0.1:{dead},{live}"),
        stream: target.stream.clone(),
        subject: target.subject.clone(),
    };
    let platform = platform(&seeded).await?;
    platform.deliver(&event("seed-1")).await?;
    let read = read_new(&live, &target.stream, "reader").await?;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].msg_id.as_deref(), Some("seed-1"));
    delete_stream(&live, &target.stream).await?;
    Ok(())
}

/// Delivers `event`, retrying for up to 60 s while the cluster elects leaders (a new
/// cluster, or one that just lost a node, refuses publishes until it has).
async fn deliver_eventually(platform: &JetStreamDataPlatform, event: &OutboxEvent) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match platform.deliver(event).await {
            Ok(()) => return,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "never delivered: {e:#}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Three `nats-server -js` nodes clustered, `DATA_PLATFORM_URL` naming all three as seeds
/// and `DATA_PLATFORM_STREAM_REPLICAS=3`: the stream is created on all three, and with one
/// node killed every event still reaches it, once.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_three_node_cluster_the_stream_has_three_replicas_and_survives_a_node()
-> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let seeds = cluster.seeds();
    let nodes = &mut cluster.nodes;
    let stream = unique("R");
    let subject = format!("test.{}.orders.paid", stream.to_ascii_lowercase());
    let platform = JetStreamDataPlatform::connect(JetStreamSettings {
        url: seeds,
        subject,
        stream: stream.clone(),
        creds_file: None,
        ca_file: None,
        timeout: Duration::from_secs(2),
        replicas: 3,
    })
    .await?;
    deliver_eventually(&platform, &event("r-1")).await;
    let url = nodes[1].url();
    let info = stream_info(&url, &stream).await?;
    assert_eq!(info.config.num_replicas, 3);
    let cluster = info.cluster.context("cluster info")?;
    assert_eq!(cluster.replicas.len(), 2, "a leader and two replicas");

    nodes[0].kill()?;
    for id in ["r-2", "r-3"] {
        deliver_eventually(&platform, &event(id)).await;
    }
    // A retry of a delivered event is dropped by the duplicate window, on any node.
    deliver_eventually(&platform, &event("r-2")).await;
    // Read back through a surviving node, retried while the cluster settles after the kill.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ids = loop {
        match read_new(&url, &stream, "reader").await {
            Ok(read) => {
                break read
                    .into_iter()
                    .filter_map(|m| m.msg_id)
                    .collect::<Vec<_>>();
            }
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "never read: {e:#}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    assert_eq!(ids, ["r-1", "r-2", "r-3"], "each event once");
    Ok(())
}

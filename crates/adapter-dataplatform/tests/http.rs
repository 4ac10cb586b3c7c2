//! `HttpDataPlatform` against real receivers: a redirecting one (never delivered) and
//! an HTTPS one with a certificate from a private CA generated here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use adapter_dataplatform::HttpDataPlatform;
use domain::outbox::OutboxEvent;
use domain::ports::DataPlatform;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const BODY: &str = r#"{"eventId":"7d1e","type":"ORDER_PAID","orderId":42}"#;

fn event() -> OutboxEvent {
    OutboxEvent {
        id: "7d1e".into(),
        event_type: "ORDER_PAID".into(),
        payload: BODY.into(),
        attempts: 1,
    }
}

#[tokio::test]
async fn dataplatform_a_redirect_is_a_failed_attempt_never_a_delivery() {
    let server = MockServer::start().await;
    for status in [301, 302, 303, 307, 308] {
        server.reset().await;
        Mock::given(path("/events"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("Location", format!("{}/elsewhere", server.uri())),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/elsewhere"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let platform = HttpDataPlatform::new(
            format!("{}/events", server.uri()),
            Duration::from_secs(2),
            None,
        )
        .unwrap();
        let err = platform.deliver(&event()).await.unwrap_err().to_string();
        assert!(err.contains(&status.to_string()), "{status}: {err}");
        assert!(err.contains("redirect"), "{status}: {err}");
        server.verify().await;
    }
    // Only POSTs ever reached the receiver.
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|r| r.method.as_str() == "POST"));
}

/// A private CA, and a certificate for 127.0.0.1 it signed.
struct TestPki {
    ca_pem: String,
    leaf_der: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

fn test_pki() -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shop test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "data platform");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        leaf_der: leaf.der().clone(),
        leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// One received request: its head (request line and headers) and its body.
#[derive(Debug)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// Splits a complete HTTP/1.1 request (with `Content-Length`) once all of it is in `buf`.
fn complete_request(buf: &[u8]) -> Option<Received> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, value)| value.trim().parse::<usize>().unwrap());
    let body = buf.get(end + 4..end + 4 + length)?.to_vec();
    Some(Received { head, body })
}

/// An HTTPS receiver on 127.0.0.1 answering 202 to every complete request.
async fn https_receiver(pki: &TestPki) -> (String, mpsc::UnboundedReceiver<Received>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.leaf_der.clone()], pki.leaf_key.clone_key())
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let url = format!("https://{}/events", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0_u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(request) = complete_request(&buf) {
                        let _ = tx.send(request);
                        let _ = tls
                            .write_all(
                                b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            )
                            .await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn dataplatform_an_https_receiver_with_a_private_ca_gets_the_exact_event() {
    let pki = test_pki();
    let (url, mut received) = https_receiver(&pki).await;
    let dir = std::env::temp_dir().join(format!("dataplatform-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    // Without the private CA the certificate is not trusted: a failed attempt.
    let untrusting = HttpDataPlatform::new(url.clone(), Duration::from_secs(5), None).unwrap();
    assert!(untrusting.deliver(&event()).await.is_err());
    assert!(received.try_recv().is_err(), "nothing was received");

    let platform = HttpDataPlatform::new(url, Duration::from_secs(5), Some(&ca_file)).unwrap();
    platform.deliver(&event()).await.unwrap();
    let request = received.recv().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(
        request.head.starts_with("POST /events HTTP/1.1\r\n"),
        "{}",
        request.head
    );
    let header = |name: &str| {
        request.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    assert_eq!(header("idempotency-key").as_deref(), Some("7d1e"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(request.body, BODY.as_bytes());
}

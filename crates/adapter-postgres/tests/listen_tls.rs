//! The outbox listener's TLS, read from `DATABASE_URL` as libpq reads it: each `sslmode`
//! against a real PostgreSQL behind a TLS front of the test's own, which answers the
//! protocol's `SSLRequest`, terminates TLS with a certificate of a test CA and passes the
//! bytes on to the database (the test cluster itself runs without TLS).
//!
//! A listener that must not connect is given 3 s: one that connects does so in
//! milliseconds, and a wrong acceptance shows up as a completed TLS session too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapter_postgres::PgOutboxListener;
use adapter_postgres::test_support::TestDatabase;
use domain::ports::OutboxWakeup;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The protocol's `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

const INSERT: &str = "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
     VALUES (gen_random_uuid(), 'ORDER_PAID', (random() * 1e9)::bigint, '{}', now(), now())";

/// A CA, and certificates it signs, written as PEM files in a directory of the test's own.
struct Pki {
    dir: PathBuf,
    key: KeyPair,
    ca: rcgen::Certificate,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "shop-listen-tls-{}-{name}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("shop test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self { dir, key, ca }
    }

    fn ca_file(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    /// A certificate for `name` signed by this CA: its DER and key, and its files.
    fn leaf(&self, name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let leaf = params.signed_by(&key, &self.ca, &self.key).unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), leaf.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        (
            leaf.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sessions the front has seen.
#[derive(Default)]
struct Seen {
    /// TLS sessions whose handshake completed.
    tls: AtomicUsize,
    /// Sessions that never asked for TLS.
    plain: AtomicUsize,
}

/// Listens on 127.0.0.1 and passes each session on to `upstream` (`host:port`), over TLS
/// with `leaf` when the client asks for it, requiring a client certificate signed by
/// `client_ca` when given.
async fn tls_front(
    upstream: String,
    leaf: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_ca: Option<RootCertStore>,
) -> (u16, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(vec![leaf.0], leaf.1).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            let seen = counts.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 8];
                if client.read_exact(&mut head).await.is_err() {
                    return;
                }
                if head == SSL_REQUEST {
                    if client.write_all(b"S").await.is_err() {
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    seen.tls.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut database) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut database).await;
                    }
                } else {
                    seen.plain.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut database) = TcpStream::connect(&upstream).await
                        && database.write_all(&head).await.is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut database).await;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// `url` with `localhost:<port>` as its host and `params` added to its query.
fn through(url: &str, port: u16, params: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let user = authority
        .rsplit_once('@')
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{scheme}://{user}localhost:{port}/{path}{separator}{params}")
}

/// The test database's `host:port`.
fn upstream(db: &TestDatabase) -> String {
    let rest = db.url().split_once("://").unwrap().1;
    let authority = rest.split_once('/').unwrap().0;
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

async fn listens_within(listener: &PgOutboxListener, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if listener.is_listening() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.is_listening()
}

/// Starts a listener on `url` and tells whether it got to listen.
async fn listens(url: &str) -> bool {
    let listener = PgOutboxListener::start(url).unwrap();
    listens_within(&listener, Duration::from_secs(3)).await
}

#[tokio::test]
async fn verify_full_listens_over_tls_to_a_server_of_its_ca_and_notifications_flow() {
    let db = TestDatabase::create().unwrap();
    let pki = Pki::new("full");
    let (port, seen) = tls_front(upstream(&db), pki.leaf("localhost"), None).await;
    let url = through(
        db.url(),
        port,
        &format!("sslmode=verify-full&sslrootcert={}", pki.ca_file()),
    );
    let listener = PgOutboxListener::start(&url).unwrap();
    assert!(listens_within(&listener, Duration::from_secs(30)).await);
    assert_eq!(seen.tls.load(Ordering::SeqCst), 1);
    assert_eq!(seen.plain.load(Ordering::SeqCst), 0);
    // Takes the signal that connecting leaves, then a commit wakes it through TLS.
    listener.wait(Duration::ZERO).await;
    db.execute(INSERT).unwrap();
    let started = Instant::now();
    listener.wait(Duration::from_secs(60)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the commit woke it"
    );
}

#[tokio::test]
async fn verify_full_refuses_another_ca_and_another_host_name_and_verify_ca_only_the_first() {
    let db = TestDatabase::create().unwrap();
    let pki = Pki::new("names");
    let stranger = Pki::new("stranger");
    let (port, seen) = tls_front(upstream(&db), pki.leaf("db.example"), None).await;
    let ca = pki.ca_file();
    let other_ca = stranger.ca_file();

    for params in [
        format!("sslmode=verify-full&sslrootcert={ca}"),
        format!("sslmode=verify-full&sslrootcert={other_ca}"),
        format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        // As libpq: a root certificate makes require check the chain too.
        format!("sslmode=require&sslrootcert={other_ca}"),
    ] {
        assert!(
            !listens(&through(db.url(), port, &params)).await,
            "{params}"
        );
    }
    assert_eq!(
        seen.tls.load(Ordering::SeqCst),
        0,
        "no session was accepted"
    );

    assert!(
        listens(&through(
            db.url(),
            port,
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        ))
        .await,
        "verify-ca takes a certificate of its CA issued for another name"
    );
    assert_eq!(seen.tls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_checking_and_disable_never_does() {
    let db = TestDatabase::create().unwrap();
    let pki = Pki::new("unchecked");
    let (port, seen) = tls_front(upstream(&db), pki.leaf("db.example"), None).await;

    assert!(listens(&through(db.url(), port, "sslmode=require")).await);
    assert!(
        listens(&through(db.url(), port, "application_name=x")).await,
        "prefer, the default"
    );
    assert_eq!(seen.tls.load(Ordering::SeqCst), 2);
    assert_eq!(seen.plain.load(Ordering::SeqCst), 0);

    assert!(listens(&through(db.url(), port, "sslmode=disable")).await);
    assert_eq!(seen.plain.load(Ordering::SeqCst), 1);
    assert_eq!(seen.tls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_server_that_asks_for_a_client_certificate_gets_sslcert_and_sslkey() {
    let db = TestDatabase::create().unwrap();
    let pki = Pki::new("client");
    let (port, seen) = tls_front(upstream(&db), pki.leaf("localhost"), Some(pki.roots())).await;
    pki.leaf("shop-client");
    let verify = format!("sslmode=verify-full&sslrootcert={}", pki.ca_file());

    assert!(
        !listens(&through(db.url(), port, &verify)).await,
        "no client certificate"
    );
    assert_eq!(seen.tls.load(Ordering::SeqCst), 0);
    let with_certificate = format!(
        "{verify}&sslcert={}&sslkey={}",
        pki.file("shop-client.pem"),
        pki.file("shop-client.key")
    );
    assert!(listens(&through(db.url(), port, &with_certificate)).await);
    assert_eq!(seen.tls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn libpq_only_parameters_do_not_stop_the_listener() {
    let db = TestDatabase::create().unwrap();
    let url = format!(
        "{}{}gssencmode=disable&sslcrl=/nonexistent.crl&sslmode=disable",
        db.url(),
        if db.url().contains('?') { '&' } else { '?' }
    );
    assert!(listens(&url).await);
}

#[test]
fn a_verifying_mode_with_an_unreadable_root_certificate_is_a_start_up_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let missing = Path::new("/nonexistent/root.pem");
    let refused = PgOutboxListener::start(&format!(
        "postgres://u@localhost/shop?sslmode=verify-full&sslrootcert={}",
        missing.display()
    ));
    assert!(refused.is_err_and(|e| format!("{e:#}").contains("/nonexistent/root.pem")));
}

//! TLS in front of the test PostgreSQL (which runs without it): a [`TestPki`] of a test
//! CA, and a [`TlsFront`] that answers the protocol's `SSLRequest`, terminates TLS with a
//! certificate of that CA and passes the bytes on to the database. A client (libpq) sees
//! a server with TLS at `localhost:<port>`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The protocol's `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// The protocol's `GSSENCRequest` (code 80877104), which this front declines.
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// A certificate and its key.
#[derive(Debug)]
pub struct Leaf {
    pub certificate: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

/// A test CA, and certificates it signs, written as PEM files in a directory of its own
/// (removed on drop).
pub struct TestPki {
    dir: PathBuf,
    key: KeyPair,
    ca: rcgen::Certificate,
}

impl TestPki {
    /// A new CA named `name`, its certificate in `ca.pem`.
    ///
    /// # Errors
    /// When generating or writing fails.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let dir = super::unique_dir(&format!("shop-test-pki-{name}"))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("shop test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&key)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        Ok(Self { dir, key, ca })
    }

    /// The path of the CA's certificate (PEM).
    pub fn ca_file(&self) -> String {
        self.file("ca.pem")
    }

    /// The path of a file of this PKI.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A certificate for the DNS name `name` signed by this CA, also written as
    /// `<name>.pem` and `<name>.key`.
    ///
    /// # Errors
    /// When generating or writing fails.
    pub fn leaf(&self, name: &str) -> anyhow::Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        let leaf = params.signed_by(&key, &self.ca, &self.key)?;
        std::fs::write(self.dir.join(format!("{name}.pem")), leaf.pem())?;
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem())?;
        Ok(Leaf {
            certificate: leaf.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// This CA as the only root.
    ///
    /// # Errors
    /// Never in practice: the CA's certificate is well formed.
    pub fn roots(&self) -> anyhow::Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone())?;
        Ok(roots)
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sessions a [`TlsFront`] has seen.
#[derive(Debug, Default)]
struct Seen {
    tls: AtomicUsize,
    plain: AtomicUsize,
}

/// A TLS front of a test database, on 127.0.0.1 (stopped on drop).
#[derive(Debug)]
pub struct TlsFront {
    port: u16,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Listens and passes each session on to the server of `database_url`: over TLS with
    /// `leaf` when the client asks for it (requiring a client certificate signed by
    /// `client_ca` when given), as it is when it does not.
    ///
    /// # Errors
    /// When the URL has no host, or the TLS configuration or the port fails.
    pub async fn start(
        database_url: &str,
        leaf: Leaf,
        client_ca: Option<RootCertStore>,
    ) -> anyhow::Result<Self> {
        let upstream = super::host_port(database_url)?.to_owned();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(roots) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?,
            ),
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(vec![leaf.certificate], leaf.key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pass_on(
                    client,
                    acceptor.clone(),
                    upstream.clone(),
                    counts.clone(),
                ));
            }
        });
        Ok(Self { port, seen, task })
    }

    /// `database_url` with `localhost:<this front's port>` as its host and `params` added
    /// to its query.
    ///
    /// # Errors
    /// When the URL has no host.
    pub fn url(&self, database_url: &str, params: &str) -> anyhow::Result<String> {
        let url = super::at_address(database_url, &format!("localhost:{}", self.port))?;
        let has_query = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .is_some_and(|(_, path)| path.contains('?'));
        let separator = if has_query { '&' } else { '?' };
        Ok(format!("{url}{separator}{params}"))
    }

    /// TLS sessions whose handshake completed.
    pub fn tls_sessions(&self) -> usize {
        self.seen.tls.load(Ordering::SeqCst)
    }

    /// Sessions that never asked for TLS.
    pub fn plain_sessions(&self) -> usize {
        self.seen.plain.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pass_on(mut client: TcpStream, acceptor: TlsAcceptor, upstream: String, seen: Arc<Seen>) {
    let mut head = [0u8; 8];
    if client.read_exact(&mut head).await.is_err() {
        return;
    }
    if head == GSSENC_REQUEST {
        // Declined: the client goes on with an SSLRequest or a plain start-up.
        if client.write_all(b"N").await.is_err() || client.read_exact(&mut head).await.is_err() {
            return;
        }
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
}

//! The listener's connection settings, read from `DATABASE_URL` as libpq reads it for the
//! pool, TLS included.
//!
//! tokio-postgres knows `sslmode` only as `disable`, `prefer` or `require` (and then never
//! checks the server's certificate), and refuses the rest of libpq's TLS parameters. So
//! `sslmode`, `sslrootcert`, `sslcert` and `sslkey` are taken out of the URL's query (or,
//! when it has none of them, from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`,
//! as libpq does) and turned into a rustls configuration with libpq's meaning:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default), and `allow` taken as `prefer` | when the server offers it | checked against `sslrootcert` when one is given, else not |
//! | `require` | always | the same |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` |
//! | `verify-full` | always | signed by a CA of `sslrootcert`, and issued for the host |
//!
//! `sslrootcert` is a PEM file, or `system` for the web's roots (webpki-roots); with
//! `verify-ca` or `verify-full` and none given, libpq's default `~/.postgresql/root.crt`
//! must exist. `sslcert` and `sslkey` (PEM) present a client certificate. Any other query
//! parameter tokio-postgres does not know (libpq-only ones such as `sslcrl` or `gssencmode`)
//! is left out with a warning naming it, rather than failing the start: the pool, through
//! libpq, still applies it. The same holds for a keyword/value connection string
//! (`host=db sslmode=verify-full sslrootcert='/etc/ca.pem'`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The query parameters tokio-postgres reads (besides the TLS ones taken out here).
const KNOWN: [&str; 18] = [
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// libpq's TLS parameters, as written.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

impl TlsParams {
    fn set(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            _ => return false,
        };
        *slot = Some(value);
        true
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndHost,
}

/// The listener's connection: its settings and the TLS connector they call for.
pub(crate) struct Connection {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
}

/// Reads `url` as described in the module's documentation; `env` looks up an environment
/// variable.
pub(crate) fn connection(
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Connection> {
    let (rest, mut params) = split_tls_params(url)?;
    if params.is_empty() {
        params = TlsParams {
            sslmode: env("PGSSLMODE"),
            sslrootcert: env("PGSSLROOTCERT"),
            sslcert: env("PGSSLCERT"),
            sslkey: env("PGSSLKEY"),
        };
    }
    let mut config: tokio_postgres::Config = rest.parse().context("parsing the database URL")?;
    let (mode, check) = match params.sslmode.as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Check::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Check::Nothing),
        "require" => (SslMode::Require, Check::Nothing),
        "verify-ca" => (SslMode::Require, Check::Chain),
        "verify-full" => (SslMode::Require, Check::ChainAndHost),
        other => bail!(
            "sslmode {other:?} in the database URL is none of disable, allow, prefer, \
             require, verify-ca, verify-full"
        ),
    };
    config.ssl_mode(mode);
    let tls = if mode == SslMode::Disable {
        // Never used: tokio-postgres asks for TLS only when the mode allows it.
        client_config(Check::Nothing, None, &params)?
    } else {
        let roots = match (&params.sslrootcert, check) {
            (Some(given), _) => Some(roots(given)?),
            (None, Check::Nothing) => None,
            (None, _) => {
                let default = home_file(&env, "root.crt")
                    .filter(|path| path.exists())
                    .context(
                        "sslmode verify-ca or verify-full needs sslrootcert (a PEM file, or \
                     system), or ~/.postgresql/root.crt",
                    )?;
                Some(roots(&default.to_string_lossy())?)
            }
        };
        // As libpq: with a root certificate, require and prefer check the chain too.
        let check = match (check, &roots) {
            (Check::Nothing, Some(_)) => Check::Chain,
            (check, _) => check,
        };
        client_config(check, roots, &params)?
    };
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

/// Takes libpq's TLS parameters out of a URL's query or a keyword/value string, and any
/// parameter tokio-postgres does not know (with a warning). What is left is kept as written
/// (a keyword/value string re-quoted).
fn split_tls_params(url: &str) -> anyhow::Result<(String, TlsParams)> {
    let mut params = TlsParams::default();
    // Whether tokio-postgres is to get the parameter: the TLS ones are taken, unknown
    // ones left out.
    let mut keep = |key: &str, value: String| {
        if KNOWN.contains(&key) {
            return true;
        }
        if !params.set(key, value) {
            tracing::warn!(
                parameter = %key,
                "the outbox listener's connection ignores this database URL parameter \
                 (libpq's pool applies it)"
            );
        }
        false
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let mut kept = Vec::new();
        for (key, value) in keyword_values(url)? {
            if keep(&key, value.clone()) {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push(format!("{key}='{quoted}'"));
            }
        }
        return Ok((kept.join(" "), params));
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), params));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key)
            .decode_utf8()
            .context("a database URL parameter's name is not UTF-8")?;
        let value = percent_decode_str(value)
            .decode_utf8()
            .with_context(|| format!("the database URL parameter {key} is not UTF-8"))?
            .into_owned();
        if keep(&key, value) {
            // As written: tokio-postgres decodes it.
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, params))
}

/// The `keyword = value` pairs of a libpq keyword/value string: a value may be written in
/// single quotes (then it may hold spaces), and a backslash takes the next character as
/// it is. Error messages never show a value (it may be a password).
fn keyword_values(conninfo: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    let skip_spaces = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_spaces(&mut chars);
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        skip_spaces(&mut chars);
        if chars.next() != Some('=') {
            bail!("the database connection string's {key:?} has no \"=\"");
        }
        skip_spaces(&mut chars);
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.peek().copied() {
                None if quoted => {
                    bail!("the database connection string's {key} has an unterminated quote")
                }
                None => break,
                Some('\'') if quoted => {
                    chars.next();
                    break;
                }
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => {
                    chars.next();
                    let escaped = chars.next().with_context(|| {
                        format!("the database connection string's {key} ends with a backslash")
                    })?;
                    value.push(escaped);
                }
                Some(c) => {
                    chars.next();
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `~/.postgresql/<name>`, libpq's default place for TLS files.
fn home_file(env: impl Fn(&str) -> Option<String>, name: &str) -> Option<PathBuf> {
    env("HOME").map(|home| Path::new(&home).join(".postgresql").join(name))
}

/// The CAs of `sslrootcert`: a PEM file, or `system` for the web's roots.
fn roots(sslrootcert: &str) -> anyhow::Result<RootCertStore> {
    if sslrootcert == "system" {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    }
    let certificates = CertificateDer::pem_file_iter(sslrootcert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading sslrootcert {sslrootcert}"))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certificates);
    if added == 0 {
        bail!("sslrootcert {sslrootcert} holds no usable PEM certificate");
    }
    Ok(store)
}

fn client_config(
    check: Check,
    roots: Option<RootCertStore>,
    params: &TlsParams,
) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let roots = Arc::new(roots.unwrap_or_else(RootCertStore::empty));
    let builder = match check {
        Check::ChainAndHost => builder.with_root_certificates(roots),
        Check::Chain | Check::Nothing => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(WithoutHostName {
                    roots: (check == Check::Chain).then_some(roots),
                    algorithms,
                }))
        }
    };
    match (&params.sslcert, &params.sslkey) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| format!("reading sslcert {cert}"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading sslkey {key}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("sslcert and sslkey do not make a client certificate")
        }
        _ => bail!("sslcert and sslkey go together"),
    }
}

/// The server's certificate as libpq checks it short of `verify-full`: signed by a CA of
/// `roots` whatever name it was issued for (`verify-ca`, and `prefer` or `require` with a
/// root certificate), or not at all without `roots` (encrypted, but any certificate is
/// taken). The handshake's signatures are checked either way.
#[derive(Debug)]
struct WithoutHostName {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for WithoutHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn libpq_tls_parameters_leave_the_url_and_the_rest_is_kept_as_written() {
        let (rest, params) = split_tls_params(
            "postgres://u:p%40ss@db:5432/shop?sslmode=verify-full&application_name=a%20b\
             &sslrootcert=%2Fetc%2Fca+1.pem&sslcrl=x.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%40ss@db:5432/shop?application_name=a%20b&connect_timeout=3"
        );
        assert_eq!(
            params,
            TlsParams {
                sslmode: Some("verify-full".into()),
                sslrootcert: Some("/etc/ca+1.pem".into()),
                ..TlsParams::default()
            }
        );
        let (rest, params) = split_tls_params("postgres://db/shop?sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), params.sslmode.as_deref()),
            ("postgres://db/shop", Some("disable"))
        );
        let (rest, params) = split_tls_params(
            "host=db  user = u sslmode=verify-full sslrootcert='/etc/my ca.pem' \
             password='it\\'s \\\\ here' sslcrl=x.pem application_name=a\\ b",
        )
        .unwrap();
        assert_eq!(
            rest,
            r"host='db' user='u' password='it\'s \\ here' application_name='a b'"
        );
        assert_eq!(
            params,
            TlsParams {
                sslmode: Some("verify-full".into()),
                sslrootcert: Some("/etc/my ca.pem".into()),
                ..TlsParams::default()
            }
        );
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&br"it's \ here"[..]));
        for broken in ["host", "host=db port", "password='open", r"password=x\"] {
            let refused = split_tls_params(broken);
            assert!(refused.is_err(), "{broken}");
        }
        assert!(
            split_tls_params("password='s3cret")
                .is_err_and(|e| !format!("{e:#}").contains("s3cret")),
            "a value is never shown"
        );
    }

    #[test]
    fn every_libpq_sslmode_is_understood_and_another_is_refused() {
        for (mode, want) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
        ] {
            let connection =
                connection(&format!("postgres://u@db/shop?sslmode={mode}"), no_env).unwrap();
            assert_eq!(connection.config.get_ssl_mode(), want, "{mode}");
        }
        assert_eq!(
            connection("postgres://u@db/shop", no_env)
                .unwrap()
                .config
                .get_ssl_mode(),
            SslMode::Prefer,
            "libpq's default"
        );
        let refused = connection("postgres://u@db/shop?sslmode=sometimes", no_env);
        assert!(
            refused.is_err_and(|e| e.to_string().contains("sometimes")),
            "an unknown mode is a start-up error"
        );
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_that_can_be_read() {
        let missing = connection(
            "postgres://u@db/shop?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            no_env,
        );
        assert!(
            missing.is_err_and(|e| format!("{e:#}").contains("/nonexistent/ca.pem")),
            "a named root certificate that cannot be read is a start-up error"
        );
        let system = connection(
            "postgres://u@db/shop?sslmode=verify-full&sslrootcert=system",
            no_env,
        )
        .unwrap();
        assert_eq!(system.config.get_ssl_mode(), SslMode::Require);
        let half = connection(
            "postgres://u@db/shop?sslmode=require&sslcert=/c.pem",
            no_env,
        );
        assert!(half.is_err_and(|e| e.to_string().contains("together")));
    }

    #[test]
    fn verifying_modes_fall_back_to_the_root_certificate_in_the_home_directory() {
        let pki = crate::test_support::tls::TestPki::new("home").unwrap();
        let home = std::env::temp_dir().join(format!("shop-home-{}", std::process::id()));
        let home_env = |name: &str| (name == "HOME").then(|| home.display().to_string());
        let url = "postgres://u@db/shop?sslmode=verify-ca";
        let missing = connection(url, home_env);
        assert!(
            missing.is_err_and(|e| e.to_string().contains("~/.postgresql/root.crt")),
            "no sslrootcert and no ~/.postgresql/root.crt"
        );
        std::fs::create_dir_all(home.join(".postgresql")).unwrap();
        std::fs::copy(pki.ca_file(), home.join(".postgresql/root.crt")).unwrap();
        let found = connection(url, home_env);
        std::fs::remove_dir_all(&home).unwrap();
        assert_eq!(found.unwrap().config.get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn the_environment_gives_the_tls_parameters_only_when_the_url_names_none() {
        let env = |name: &str| (name == "PGSSLMODE").then(|| "require".to_owned());
        let from_env = connection("postgres://u@db/shop", env).unwrap();
        assert_eq!(from_env.config.get_ssl_mode(), SslMode::Require);
        let from_url = connection("postgres://u@db/shop?sslmode=disable", env).unwrap();
        assert_eq!(from_url.config.get_ssl_mode(), SslMode::Disable);
    }
}

//! Configuration from environment variables, with defaults (README.md's configuration table
//! lists them).

use std::time::Duration;

use adapter_dataplatform::WebhookSecret;
use adapter_identity::MIN_SECRET_BYTES;
use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Serialized};
use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};

/// Every setting of the server. Field names are the environment variables, lowercased.
///
/// Its `Debug` output hides secrets (see [`Config::redacted`]), so a `Config` may be
/// logged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// PostgreSQL URL. Required.
    pub database_url: String,
    /// PostgreSQL itself, for the connections that need a session of their own (the
    /// migrations' advisory lock, the outbox listener's `LISTEN`) when `database_url` goes
    /// through a transaction-mode pooler; unset, they use `database_url`.
    pub database_direct_url: Option<String>,
    /// A streaming replica for the reads that tolerate a little lag (the catalogue's page
    /// and detail); unset, every read goes to the primary.
    pub database_read_url: Option<String>,
    /// The most the replica may lag before those reads go to the primary.
    pub database_read_max_lag_ms: u64,
    /// Address to listen on.
    pub bind_addr: String,
    /// Bearer token of the admin API; unset or empty disables the admin API.
    pub admin_token: Option<String>,
    /// Where paid orders are delivered: `http(s)://` posts them, `nats://` or `tls://`
    /// publishes them to a JetStream stream; unset logs them instead.
    pub data_platform_url: Option<String>,
    /// PEM file of extra trusted roots (a private CA) for an `https://` data platform, or
    /// the CA certificates trusted for a `tls://` NATS server.
    pub data_platform_ca_file: Option<String>,
    /// The subject paid orders are published to (JetStream).
    pub data_platform_subject: String,
    /// The stream that holds them, created when missing (JetStream).
    pub data_platform_stream: String,
    /// How many servers hold the stream when the server creates it (JetStream; 3 on a
    /// cluster).
    pub data_platform_stream_replicas: usize,
    /// A NATS credentials file (JetStream).
    pub data_platform_nats_creds: Option<String>,
    /// `whsec_<base64>`: signs every HTTP delivery (Standard Webhooks headers); unset or
    /// empty sends them unsigned.
    pub data_platform_secret: Option<String>,
    /// How long delivered outbox events are kept before the hourly purge deletes them.
    pub outbox_retention_days: u64,
    /// Data-platform deliveries the relay keeps in flight at once.
    pub outbox_delivery_concurrency: usize,
    /// How long deliveries in flight may still finish after the stop signal; the rest are
    /// abandoned (and delivered again later).
    pub outbox_shutdown_grace_ms: u64,
    /// How long an order waits for payment.
    pub order_payment_timeout_secs: u64,
    /// The longest the expiry scheduler waits between scans; it scans sooner, at the
    /// earliest deadline of an unpaid order.
    pub order_expiry_scan_secs: u64,
    /// How often the best-seller roll-up and cache refresh run.
    pub best_seller_refresh_secs: u64,
    /// IANA zone of the business day.
    pub business_timezone: String,
    /// Connections in this instance's pool (instances × this < max_connections).
    pub db_pool_size: u32,
    /// How long a request waits for a pooled connection before a 503.
    pub db_checkout_timeout_ms: u64,
    pub db_statement_timeout_ms: u64,
    pub db_lock_timeout_ms: u64,
    /// Named prepared statements on each pooled connection (the default); off, every
    /// statement is sent unnamed, for a transaction-mode pooler that does not track them.
    pub db_prepared_statements: bool,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    /// How long in-flight requests get to finish on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Coupon issues that may wait in this instance for a write; one more is refused
    /// with 503 `SERVICE_UNAVAILABLE` and `Retry-After`.
    pub coupon_issue_queue_limit: usize,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Seed a demo catalogue into an empty database at start-up.
    pub seed_demo_data: bool,
    /// HS256 secret of end-user bearer tokens (at least 32 bytes); unset or empty
    /// leaves end-user authentication off.
    pub auth_jwt_secret: Option<String>,
    /// A JWK set file of the identity provider's public keys (RS256, ES256), read at
    /// start-up; instead of `auth_jwt_secret`.
    pub auth_jwks_file: Option<String>,
    /// A URL serving the identity provider's JWK set (its `jwks_uri`), fetched at
    /// start-up, every `auth_jwks_refresh_secs`, and (at most once a minute) when a
    /// token names an unknown `kid`; instead of `auth_jwt_secret` and `auth_jwks_file`.
    pub auth_jwks_url: Option<String>,
    /// How often the JWK set at `auth_jwks_url` is fetched again.
    pub auth_jwks_refresh_secs: u64,
    /// How old the keys fetched from `auth_jwks_url` may grow without a successful fetch
    /// before every token is refused.
    pub auth_jwks_max_age_secs: u64,
    /// Takes an `http://` `auth_jwks_url` (development only).
    pub auth_jwks_allow_http: bool,
    /// The `iss` a token must carry; unset means not checked (required with JWKS).
    pub auth_jwt_issuer: Option<String>,
    /// The `aud` a token must name; unset means not checked (required with JWKS).
    pub auth_jwt_audience: Option<String>,
    /// Refuse to start without key material (the production profile).
    pub auth_required: bool,
}

/// Settings whose whole value is a secret.
const SECRETS: [&str; 3] = ["admin_token", "auth_jwt_secret", "data_platform_secret"];

/// Settings that are URLs, which may carry credentials in their user part or query.
const URLS: [&str; 5] = [
    "database_url",
    "database_direct_url",
    "database_read_url",
    "data_platform_url",
    "auth_jwks_url",
];

const REDACTED: &str = "<redacted>";

/// `url` with its user part (`user:password@`, or a NATS token) and its query
/// (`?password=…`) hidden: the rest says where it points. A value that is no URL (a libpq
/// keyword/value string such as `host=db password=…`) is hidden whole.
fn redact_url(url: &str) -> String {
    // A comma-separated list (the seeds of a NATS cluster) is redacted URL by URL.
    if url.contains(',') {
        return url
            .split(',')
            .map(|part| redact_url(part.trim()))
            .collect::<Vec<_>>()
            .join(",");
    }
    // A string the URL parser does not take (a libpq keyword/value string, or a raw `?`
    // in a password, which ends the authority for the parser) is hidden whole.
    let Ok(mut parsed) = url::Url::parse(url) else {
        return REDACTED.to_owned();
    };
    if parsed.cannot_be_a_base() {
        return REDACTED.to_owned();
    }
    // A URL's parts are percent-encoded, so they are hidden with a plain word.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let _ = parsed.set_password(None);
        let _ = parsed.set_username("redacted");
    }
    if parsed.query().is_some() {
        parsed.set_query(Some("redacted"));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some("redacted"));
    }
    parsed.to_string()
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Config");
        for (name, value) in &self.redacted() {
            out.field(name, value);
        }
        out.finish()
    }
}

impl Config {
    /// Every setting by name, as it may be shown: the value of a secret setting
    /// (`ADMIN_TOKEN`, `AUTH_JWT_SECRET`, `DATA_PLATFORM_SECRET`) is `<redacted>` when set,
    /// and a URL's credentials and query are hidden. Settings added later are included
    /// as they are, so a new secret must be named in `SECRETS`.
    pub fn redacted(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let Ok(Value::Object(mut fields)) = serde_json::to_value(self) else {
            return serde_json::Map::new();
        };
        for (name, value) in &mut fields {
            match value {
                Value::String(secret) if SECRETS.contains(&name.as_str()) => {
                    *secret = REDACTED.to_owned();
                }
                Value::String(url) if URLS.contains(&name.as_str()) => *url = redact_url(url),
                _ => {}
            }
        }
        fields
    }

    /// The URL of the connections that need a session of their own: `database_direct_url`,
    /// else `database_url`.
    pub fn direct_database_url(&self) -> &str {
        self.database_direct_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }

    /// Whether end-user authentication is on: key material is configured.
    pub fn auth_enabled(&self) -> bool {
        self.auth_jwt_secret.is_some()
            || self.auth_jwks_file.is_some()
            || self.auth_jwks_url.is_some()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            database_direct_url: None,
            database_read_url: None,
            database_read_max_lag_ms: 1_000,
            bind_addr: "127.0.0.1:8080".into(),
            admin_token: None,
            data_platform_url: None,
            data_platform_ca_file: None,
            data_platform_secret: None,
            data_platform_subject: adapter_dataplatform::DEFAULT_SUBJECT.into(),
            data_platform_stream: adapter_dataplatform::DEFAULT_STREAM.into(),
            data_platform_stream_replicas: 1,
            db_prepared_statements: true,
            data_platform_nats_creds: None,
            outbox_retention_days: 7,
            outbox_delivery_concurrency: 64,
            outbox_shutdown_grace_ms: 2_000,
            order_payment_timeout_secs: 300,
            order_expiry_scan_secs: 30,
            best_seller_refresh_secs: 60,
            business_timezone: "Asia/Seoul".into(),
            db_pool_size: 16,
            db_checkout_timeout_ms: 2_000,
            db_statement_timeout_ms: 5_000,
            db_lock_timeout_ms: 3_000,
            http_workers: 0,
            shutdown_timeout_secs: 30,
            coupon_issue_queue_limit: 1_024,
            log_format: "text".into(),
            seed_demo_data: false,
            auth_jwt_secret: None,
            auth_jwks_file: None,
            auth_jwks_url: None,
            auth_jwks_refresh_secs: 600,
            auth_jwks_max_age_secs: 86_400,
            auth_jwks_allow_http: false,
            auth_jwt_issuer: None,
            auth_jwt_audience: None,
            auth_required: false,
        }
    }
}

/// The adapter a `DATA_PLATFORM_URL` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlatformKind {
    /// `http://` or `https://` (any other scheme is refused when the adapter is built).
    Http,
    /// `nats://` or `tls://`: a JetStream stream.
    JetStream,
}

/// Number and boolean settings: figment's `Env` provider parses their text.
const TYPED: [&str; 21] = [
    "OUTBOX_RETENTION_DAYS",
    "OUTBOX_DELIVERY_CONCURRENCY",
    "OUTBOX_SHUTDOWN_GRACE_MS",
    "ORDER_PAYMENT_TIMEOUT_SECS",
    "ORDER_EXPIRY_SCAN_SECS",
    "BEST_SELLER_REFRESH_SECS",
    "DB_POOL_SIZE",
    "DB_CHECKOUT_TIMEOUT_MS",
    "DB_STATEMENT_TIMEOUT_MS",
    "DB_LOCK_TIMEOUT_MS",
    "HTTP_WORKERS",
    "SHUTDOWN_TIMEOUT_SECS",
    "COUPON_ISSUE_QUEUE_LIMIT",
    "SEED_DEMO_DATA",
    "AUTH_REQUIRED",
    "AUTH_JWKS_REFRESH_SECS",
    "AUTH_JWKS_MAX_AGE_SECS",
    "AUTH_JWKS_ALLOW_HTTP",
    "DATA_PLATFORM_STREAM_REPLICAS",
    "DB_PREPARED_STATEMENTS",
    "DATABASE_READ_MAX_LAG_MS",
];

/// Text settings, taken verbatim. `Env` parses every value (`0123` becomes the number 123,
/// `true` a boolean, `"x"` loses its quotes), so these variables' text reaches figment as
/// string values instead.
const VERBATIM: [&str; 18] = [
    "DATABASE_URL",
    "DATABASE_DIRECT_URL",
    "DATABASE_READ_URL",
    "BIND_ADDR",
    "ADMIN_TOKEN",
    "DATA_PLATFORM_URL",
    "DATA_PLATFORM_CA_FILE",
    "DATA_PLATFORM_SECRET",
    "DATA_PLATFORM_SUBJECT",
    "DATA_PLATFORM_STREAM",
    "DATA_PLATFORM_NATS_CREDS",
    "BUSINESS_TIMEZONE",
    "LOG_FORMAT",
    "AUTH_JWT_SECRET",
    "AUTH_JWKS_FILE",
    "AUTH_JWKS_URL",
    "AUTH_JWT_ISSUER",
    "AUTH_JWT_AUDIENCE",
];

/// The `VERBATIM` variables that are set, each as a figment string value: `Env::iter` yields
/// the text unparsed.
fn verbatim_env() -> Serialized<Dict> {
    let text = Env::raw()
        .only(&VERBATIM)
        .iter()
        .map(|(name, value)| (name.into_string(), Value::from(value)))
        .collect();
    Serialized::defaults(text)
}

/// The bounds of `AUTH_JWKS_REFRESH_SECS`: no more often than the unknown-`kid`
/// refetch's minute, at least daily.
pub const AUTH_JWKS_REFRESH_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;

/// The bounds of `AUTH_JWKS_MAX_AGE_SECS`: a minute to a week.
pub const AUTH_JWKS_MAX_AGE_SECS: std::ops::RangeInclusive<u64> = 60..=604_800;

/// The largest `COUPON_ISSUE_QUEUE_LIMIT`: far beyond any sensible value.
const COUPON_ISSUE_QUEUE_MAX: usize = 1_000_000;
/// The largest `OUTBOX_DELIVERY_CONCURRENCY`.
const OUTBOX_DELIVERY_CONCURRENCY_MAX: usize = 1_024;

impl Config {
    /// Reads the environment over the defaults: number and boolean settings parsed, text
    /// settings verbatim (`ADMIN_TOKEN=0123` is the token `0123`).
    ///
    /// # Errors
    /// When a variable has the wrong type or a value is out of range.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read_env()?.validated()
    }

    /// Reads only what `shop-server token` needs, the `AUTH_*` settings, checked as
    /// [`Self::from_env`] checks them (no `DATABASE_URL` needed).
    ///
    /// # Errors
    /// When a variable has the wrong type or an `AUTH_*` setting is invalid.
    pub fn auth_from_env() -> anyhow::Result<Self> {
        let mut config = Self::read_env()?;
        config.validate_auth()?;
        Ok(config)
    }

    fn read_env() -> anyhow::Result<Self> {
        Figment::from(Serialized::defaults(Self::default()))
            .merge(Env::raw().only(&TYPED))
            .merge(verbatim_env())
            .extract()
            .context("reading configuration from the environment")
    }

    /// Empty `AUTH_*` texts mean unset; `AUTH_REQUIRED` needs key material; the
    /// secret has a minimum length.
    fn validate_auth(&mut self) -> anyhow::Result<()> {
        self.auth_jwt_secret = self.auth_jwt_secret.take().filter(|s| !s.is_empty());
        self.auth_jwks_file = self.auth_jwks_file.take().filter(|s| !s.trim().is_empty());
        self.auth_jwks_url = self.auth_jwks_url.take().filter(|s| !s.trim().is_empty());
        self.auth_jwt_issuer = self.auth_jwt_issuer.take().filter(|s| !s.is_empty());
        self.auth_jwt_audience = self.auth_jwt_audience.take().filter(|s| !s.is_empty());
        if self.auth_required && !self.auth_enabled() {
            anyhow::bail!(
                "AUTH_REQUIRED=true but no key material is configured: set AUTH_JWT_SECRET \
                 (the HS256 secret of end-user tokens), AUTH_JWKS_FILE or AUTH_JWKS_URL, or \
                 unset AUTH_REQUIRED"
            );
        }
        let sources = [
            self.auth_jwt_secret.is_some(),
            self.auth_jwks_file.is_some(),
            self.auth_jwks_url.is_some(),
        ];
        if sources.into_iter().filter(|set| *set).count() > 1 {
            anyhow::bail!("set one of AUTH_JWT_SECRET, AUTH_JWKS_FILE and AUTH_JWKS_URL");
        }
        for (name, set) in [
            ("AUTH_JWKS_FILE", self.auth_jwks_file.is_some()),
            ("AUTH_JWKS_URL", self.auth_jwks_url.is_some()),
        ] {
            if set && (self.auth_jwt_issuer.is_none() || self.auth_jwt_audience.is_none()) {
                anyhow::bail!("{name} needs AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE");
            }
        }
        if let Some(url) = &self.auth_jwks_url {
            let scheme = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("AUTH_JWKS_URL is not a URL: {e}"))?
                .scheme()
                .to_owned();
            match scheme.as_str() {
                "https" => {}
                "http" if self.auth_jwks_allow_http => {}
                "http" => anyhow::bail!(
                    "AUTH_JWKS_URL is http://, which lets anyone on the path hand the server \
                     keys of their own: use https://, or set AUTH_JWKS_ALLOW_HTTP=true for a \
                     development identity provider"
                ),
                _ => anyhow::bail!("AUTH_JWKS_URL must be an https:// URL"),
            }
        }
        if !AUTH_JWKS_MAX_AGE_SECS.contains(&self.auth_jwks_max_age_secs)
            || self.auth_jwks_max_age_secs < self.auth_jwks_refresh_secs
        {
            anyhow::bail!(
                "AUTH_JWKS_MAX_AGE_SECS must be {}..={} and at least AUTH_JWKS_REFRESH_SECS \
                 (got {})",
                AUTH_JWKS_MAX_AGE_SECS.start(),
                AUTH_JWKS_MAX_AGE_SECS.end(),
                self.auth_jwks_max_age_secs
            );
        }
        if !AUTH_JWKS_REFRESH_SECS.contains(&self.auth_jwks_refresh_secs) {
            anyhow::bail!(
                "AUTH_JWKS_REFRESH_SECS must be {}..={} (got {})",
                AUTH_JWKS_REFRESH_SECS.start(),
                AUTH_JWKS_REFRESH_SECS.end(),
                self.auth_jwks_refresh_secs
            );
        }
        if let Some(secret) = &self.auth_jwt_secret
            && secret.len() < MIN_SECRET_BYTES
        {
            anyhow::bail!(
                "AUTH_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (got {})",
                secret.len()
            );
        }
        Ok(())
    }

    /// Which adapter `DATA_PLATFORM_URL` selects, by its scheme.
    pub fn data_platform_kind(&self) -> Option<DataPlatformKind> {
        let url = self.data_platform_url.as_deref()?;
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        Some(match scheme.to_ascii_lowercase().as_str() {
            "nats" | "tls" => DataPlatformKind::JetStream,
            _ => DataPlatformKind::Http,
        })
    }

    /// Empty `DATA_PLATFORM_*` texts mean unset; the secret must parse; the subject and
    /// stream must be valid; settings of the other adapter are refused.
    fn validate_data_platform(&mut self) -> anyhow::Result<()> {
        self.data_platform_secret = self.data_platform_secret.take().filter(|s| !s.is_empty());
        self.data_platform_nats_creds = self
            .data_platform_nats_creds
            .take()
            .filter(|f| !f.trim().is_empty());
        if let Some(secret) = &self.data_platform_secret {
            WebhookSecret::parse(secret)?;
        }
        adapter_dataplatform::check_subject(&self.data_platform_subject)?;
        adapter_dataplatform::check_stream_name(&self.data_platform_stream)?;
        if !(1..=adapter_dataplatform::MAX_REPLICAS).contains(&self.data_platform_stream_replicas) {
            anyhow::bail!(
                "DATA_PLATFORM_STREAM_REPLICAS must be 1..={} (got {})",
                adapter_dataplatform::MAX_REPLICAS,
                self.data_platform_stream_replicas
            );
        }
        match self.data_platform_kind() {
            Some(DataPlatformKind::JetStream) if self.data_platform_secret.is_some() => {
                anyhow::bail!(
                    "DATA_PLATFORM_SECRET signs HTTP deliveries; it has no use with a nats:// or \
                     tls:// DATA_PLATFORM_URL (unset it)"
                )
            }
            Some(DataPlatformKind::Http) | None if self.data_platform_nats_creds.is_some() => {
                anyhow::bail!(
                    "DATA_PLATFORM_NATS_CREDS needs a nats:// or tls:// DATA_PLATFORM_URL"
                )
            }
            _ => Ok(()),
        }
    }

    /// Normalises and checks the settings.
    ///
    /// # Errors
    /// When a required setting is missing or a value is out of range.
    pub fn validated(mut self) -> anyhow::Result<Self> {
        if self.database_url.trim().is_empty() {
            anyhow::bail!("DATABASE_URL is required (`make run` provides a local one)");
        }
        self.database_direct_url = self
            .database_direct_url
            .take()
            .filter(|u| !u.trim().is_empty());
        self.database_read_url = self
            .database_read_url
            .take()
            .filter(|u| !u.trim().is_empty());
        self.admin_token = self.admin_token.filter(|t| !t.trim().is_empty());
        self.data_platform_url = self.data_platform_url.filter(|u| !u.trim().is_empty());
        self.data_platform_ca_file = self.data_platform_ca_file.filter(|f| !f.trim().is_empty());
        self.validate_data_platform()?;
        self.validate_auth()?;
        if self.db_pool_size == 0 {
            anyhow::bail!("DB_POOL_SIZE must be at least 1");
        }
        if self.order_payment_timeout_secs == 0 {
            anyhow::bail!("ORDER_PAYMENT_TIMEOUT_SECS must be at least 1");
        }
        if self.order_expiry_scan_secs == 0 || self.best_seller_refresh_secs == 0 {
            anyhow::bail!("scheduler intervals must be at least 1 second");
        }
        if !(1..=COUPON_ISSUE_QUEUE_MAX).contains(&self.coupon_issue_queue_limit) {
            anyhow::bail!(
                "COUPON_ISSUE_QUEUE_LIMIT must be 1..={COUPON_ISSUE_QUEUE_MAX} (got {})",
                self.coupon_issue_queue_limit
            );
        }
        if !(1..=OUTBOX_DELIVERY_CONCURRENCY_MAX).contains(&self.outbox_delivery_concurrency) {
            anyhow::bail!(
                "OUTBOX_DELIVERY_CONCURRENCY must be 1..={OUTBOX_DELIVERY_CONCURRENCY_MAX} (got {})",
                self.outbox_delivery_concurrency
            );
        }
        for (name, value, most) in self.durations() {
            if value > most {
                anyhow::bail!("{name} may be at most {most} (got {value})");
            }
        }
        Ok(self)
    }

    /// Every duration setting with its upper bound: far beyond any sensible value, and
    /// small enough that no time arithmetic on it can overflow.
    fn durations(&self) -> [(&'static str, u64, u64); 11] {
        const DAY_SECS: u64 = 24 * 3600;
        const HOUR_MS: u64 = 3600 * 1000;
        [
            (
                "ORDER_PAYMENT_TIMEOUT_SECS",
                self.order_payment_timeout_secs,
                30 * DAY_SECS,
            ),
            (
                "ORDER_EXPIRY_SCAN_SECS",
                self.order_expiry_scan_secs,
                DAY_SECS,
            ),
            (
                "BEST_SELLER_REFRESH_SECS",
                self.best_seller_refresh_secs,
                DAY_SECS,
            ),
            (
                "DB_CHECKOUT_TIMEOUT_MS",
                self.db_checkout_timeout_ms,
                HOUR_MS,
            ),
            (
                "DB_STATEMENT_TIMEOUT_MS",
                self.db_statement_timeout_ms,
                HOUR_MS,
            ),
            ("DB_LOCK_TIMEOUT_MS", self.db_lock_timeout_ms, HOUR_MS),
            (
                "DATABASE_READ_MAX_LAG_MS",
                self.database_read_max_lag_ms,
                HOUR_MS,
            ),
            (
                "SHUTDOWN_TIMEOUT_SECS",
                self.shutdown_timeout_secs,
                DAY_SECS,
            ),
            ("DB_POOL_SIZE", u64::from(self.db_pool_size), 10_000),
            ("OUTBOX_RETENTION_DAYS", self.outbox_retention_days, 3650),
            (
                "OUTBOX_SHUTDOWN_GRACE_MS",
                self.outbox_shutdown_grace_ms,
                HOUR_MS,
            ),
        ]
    }

    pub fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.db_checkout_timeout_ms)
    }
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail closures return figment::Error"
)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn debug_output_hides_secrets_and_url_credentials() {
        let config = Config {
            database_url:
                "postgres://shop:db-pass@db:5432/shop?sslmode=verify-full&password=q-pass".into(),
            admin_token: Some("admin-secret".into()),
            auth_jwt_secret: Some("jwt-secret".into()),
            data_platform_secret: Some("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".into()),
            data_platform_url: Some("nats://nats-token@nats:4222".into()),
            auth_jwks_url: Some("https://idp:jwks-pass@idp.example/jwks?key=k-pass".into()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        for secret in [
            "db-pass",
            "q-pass",
            "admin-secret",
            "jwt-secret",
            "c2VjcmV0",
            "nats-token",
            "jwks-pass",
            "k-pass",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        for place in [
            "db:5432/shop",
            "nats:4222",
            "idp.example/jwks",
            "<redacted>",
        ] {
            assert!(shown.contains(place), "{place} not shown in {shown}");
        }
        let keyword_value = Config {
            database_url: "host=db user=shop password=kv-pass".into(),
            ..Config::default()
        };
        let shown = format!("{keyword_value:?}");
        assert!(!shown.contains("kv-pass"), "{shown}");
    }

    #[test]
    fn defaults_apply_and_the_environment_overrides_them() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("DB_POOL_SIZE", "7");
            jail.set_env("ADMIN_TOKEN", "012345");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.db_pool_size, 7);
            assert_eq!(config.bind_addr, "127.0.0.1:8080");
            assert_eq!(config.order_payment_timeout_secs, 300);
            assert_eq!(config.business_timezone, "Asia/Seoul");
            assert_eq!(config.admin_token.as_deref(), Some("012345"));
            Ok(())
        });
    }

    #[test]
    fn text_settings_are_taken_verbatim_even_when_they_read_as_numbers() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y?application_name=0123");
            jail.set_env("ADMIN_TOKEN", "0123");
            jail.set_env("BIND_ADDR", " 1.50 ");
            jail.set_env("DATA_PLATFORM_URL", "\"quoted\"");
            jail.set_env("DATA_PLATFORM_CA_FILE", "[ca]");
            jail.set_env("BUSINESS_TIMEZONE", "true");
            jail.set_env("LOG_FORMAT", "007");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.database_url, "postgres://x/y?application_name=0123");
            assert_eq!(config.admin_token.as_deref(), Some("0123"));
            assert_eq!(config.bind_addr, " 1.50 ");
            assert_eq!(config.data_platform_url.as_deref(), Some("\"quoted\""));
            assert_eq!(config.data_platform_ca_file.as_deref(), Some("[ca]"));
            assert_eq!(config.business_timezone, "true");
            assert_eq!(config.log_format, "007");
            Ok(())
        });
    }

    #[test]
    fn every_setting_is_read_from_the_environment_exactly_once() {
        let fields = Value::serialize(Config::default())
            .ok()
            .and_then(Value::into_dict)
            .map(|dict| dict.into_keys().collect::<Vec<_>>());
        let mut named: Vec<String> = TYPED
            .iter()
            .chain(&VERBATIM)
            .map(|name| name.to_ascii_lowercase())
            .collect();
        named.sort();
        assert_eq!(fields, Some(named));
    }

    #[test]
    fn a_missing_database_url_or_a_zero_pool_is_refused() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            assert!(Config::from_env().is_err());
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("DB_POOL_SIZE", "0");
            assert!(Config::from_env().is_err());
            jail.set_env("DB_POOL_SIZE", "many");
            assert!(Config::from_env().is_err());
            Ok(())
        });
    }

    #[test]
    fn a_huge_duration_is_a_start_up_error_not_a_panic() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("ORDER_PAYMENT_TIMEOUT_SECS", "18446744073709551615");
            let err = Config::from_env().unwrap_err().to_string();
            assert!(err.contains("ORDER_PAYMENT_TIMEOUT_SECS"), "{err}");
            jail.set_env("ORDER_PAYMENT_TIMEOUT_SECS", "2592000");
            assert!(Config::from_env().is_ok(), "30 days is allowed");
            jail.set_env("DB_STATEMENT_TIMEOUT_MS", "99999999999");
            assert!(Config::from_env().is_err());
            Ok(())
        });
    }

    #[test]
    fn the_coupon_issue_queue_limit_is_read_and_bounded() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.coupon_issue_queue_limit, 1_024);
            jail.set_env("COUPON_ISSUE_QUEUE_LIMIT", "8");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.coupon_issue_queue_limit, 8);
            for refused in ["0", "1000001", "-1"] {
                jail.set_env("COUPON_ISSUE_QUEUE_LIMIT", refused);
                assert!(Config::from_env().is_err(), "{refused}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_outbox_delivery_settings_are_read_and_bounded() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(
                (
                    config.outbox_delivery_concurrency,
                    config.outbox_shutdown_grace_ms
                ),
                (64, 2_000)
            );
            jail.set_env("OUTBOX_DELIVERY_CONCURRENCY", "4");
            jail.set_env("OUTBOX_SHUTDOWN_GRACE_MS", "500");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(
                (
                    config.outbox_delivery_concurrency,
                    config.outbox_shutdown_grace_ms
                ),
                (4, 500)
            );
            for refused in ["0", "1025", "-1"] {
                jail.set_env("OUTBOX_DELIVERY_CONCURRENCY", refused);
                assert!(Config::from_env().is_err(), "{refused}");
            }
            jail.set_env("OUTBOX_DELIVERY_CONCURRENCY", "4");
            jail.set_env("OUTBOX_SHUTDOWN_GRACE_MS", "3600001");
            assert!(Config::from_env().is_err());
            Ok(())
        });
    }

    #[test]
    fn an_empty_admin_token_disables_the_admin_api() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("ADMIN_TOKEN", "");
            assert_eq!(
                Config::from_env().map_err(|e| e.to_string())?.admin_token,
                None
            );
            Ok(())
        });
    }

    #[test]
    fn the_data_platform_ca_file_is_taken_verbatim_and_empty_means_unset() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("DATA_PLATFORM_CA_FILE", "/etc/shop/0123.pem");
            assert_eq!(
                Config::from_env()
                    .map_err(|e| e.to_string())?
                    .data_platform_ca_file
                    .as_deref(),
                Some("/etc/shop/0123.pem")
            );
            jail.set_env("DATA_PLATFORM_CA_FILE", " ");
            assert_eq!(
                Config::from_env()
                    .map_err(|e| e.to_string())?
                    .data_platform_ca_file,
                None
            );
            Ok(())
        });
    }

    #[test]
    fn a_data_platform_secret_must_be_whsec_and_base64_and_empty_means_unset() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("DATA_PLATFORM_URL", "https://p.example/events");
            jail.set_env("DATA_PLATFORM_SECRET", "");
            assert_eq!(
                Config::from_env()
                    .map_err(|e| e.to_string())?
                    .data_platform_secret,
                None
            );
            let good = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
            jail.set_env("DATA_PLATFORM_SECRET", good);
            assert_eq!(
                Config::from_env()
                    .map_err(|e| e.to_string())?
                    .data_platform_secret
                    .as_deref(),
                Some(good)
            );
            for bad in [
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "whsec_not*base64",
                "whsec_AAECAwQ=",
            ] {
                jail.set_env("DATA_PLATFORM_SECRET", bad);
                let err = Config::from_env().unwrap_err().to_string();
                assert!(err.contains("DATA_PLATFORM_SECRET"), "{bad}: {err}");
                assert!(!err.contains(bad), "the secret is not echoed: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn a_nats_url_selects_jetstream_with_its_subject_stream_and_creds() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.data_platform_kind(), None);
            assert_eq!(
                (
                    config.data_platform_subject.as_str(),
                    config.data_platform_stream.as_str()
                ),
                ("shop.orders.paid", "SHOP_ORDERS")
            );
            jail.set_env("DATA_PLATFORM_URL", "https://p.example/events");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.data_platform_kind(), Some(DataPlatformKind::Http));
            for url in ["nats://n.example:4222", "tls://user:pw@n.example:4222"] {
                jail.set_env("DATA_PLATFORM_URL", url);
                let config = Config::from_env().map_err(|e| e.to_string())?;
                assert_eq!(
                    config.data_platform_kind(),
                    Some(DataPlatformKind::JetStream)
                );
            }
            jail.set_env("DATA_PLATFORM_SUBJECT", "0123.paid");
            jail.set_env("DATA_PLATFORM_STREAM", "007");
            jail.set_env("DATA_PLATFORM_NATS_CREDS", "/etc/shop/0123.creds");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(
                (
                    config.data_platform_subject.as_str(),
                    config.data_platform_stream.as_str(),
                    config.data_platform_nats_creds.as_deref()
                ),
                ("0123.paid", "007", Some("/etc/shop/0123.creds"))
            );
            Ok(())
        });
    }

    #[test]
    fn wildcard_subjects_bad_stream_names_and_the_other_adapters_settings_are_refused() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("DATA_PLATFORM_URL", "nats://n.example:4222");
            for (name, bad) in [
                ("DATA_PLATFORM_SUBJECT", "shop.orders.*"),
                ("DATA_PLATFORM_SUBJECT", "shop.>"),
                ("DATA_PLATFORM_SUBJECT", "shop..paid"),
                ("DATA_PLATFORM_SUBJECT", ""),
                ("DATA_PLATFORM_STREAM", "SHOP.ORDERS"),
                ("DATA_PLATFORM_STREAM", ""),
            ] {
                jail.set_env(name, bad);
                let err = Config::from_env().unwrap_err().to_string();
                assert!(err.contains(name), "{bad}: {err}");
                jail.set_env(
                    name,
                    if name.ends_with("SUBJECT") {
                        "a.b"
                    } else {
                        "S"
                    },
                );
            }
            jail.set_env(
                "DATA_PLATFORM_SECRET",
                "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            );
            let err = Config::from_env().unwrap_err().to_string();
            assert!(err.contains("DATA_PLATFORM_SECRET"), "{err}");
            jail.set_env("DATA_PLATFORM_URL", "https://p.example/events");
            assert!(Config::from_env().is_ok(), "a secret for HTTP");
            jail.set_env("DATA_PLATFORM_NATS_CREDS", "/etc/shop/nats.creds");
            let err = Config::from_env().unwrap_err().to_string();
            assert!(err.contains("DATA_PLATFORM_NATS_CREDS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn end_user_authentication_is_off_unless_a_secret_is_set() {
        const SECRET: &str = "0123456789abcdef0123456789abcdef";
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert!(!config.auth_enabled() && !config.auth_required);
            jail.set_env("AUTH_JWT_SECRET", "");
            assert!(
                !Config::from_env()
                    .map_err(|e| e.to_string())?
                    .auth_enabled()
            );
            // Verbatim: a secret of digits stays text.
            jail.set_env("AUTH_JWT_SECRET", SECRET);
            jail.set_env("AUTH_JWT_ISSUER", "0123");
            jail.set_env("AUTH_JWT_AUDIENCE", "true");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.auth_jwt_secret.as_deref(), Some(SECRET));
            assert_eq!(config.auth_jwt_issuer.as_deref(), Some("0123"));
            assert_eq!(config.auth_jwt_audience.as_deref(), Some("true"));
            jail.set_env("AUTH_JWT_SECRET", "too-short");
            let err = Config::from_env().unwrap_err().to_string();
            assert!(err.contains("AUTH_JWT_SECRET"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn auth_required_without_key_material_is_a_start_up_error() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("AUTH_REQUIRED", "true");
            let err = Config::from_env().unwrap_err().to_string();
            assert!(
                err.contains("AUTH_REQUIRED") && err.contains("AUTH_JWT_SECRET"),
                "{err}"
            );
            jail.set_env("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef");
            assert!(Config::from_env().map_err(|e| e.to_string())?.auth_required);
            Ok(())
        });
    }

    #[test]
    fn a_jwks_file_needs_issuer_and_audience_and_excludes_the_secret() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("AUTH_REQUIRED", "true");
            jail.set_env("AUTH_JWKS_FILE", "/etc/shop/0123.json");
            let err = Config::from_env().unwrap_err().to_string();
            assert!(err.contains("AUTH_JWT_ISSUER"), "{err}");
            jail.set_env("AUTH_JWT_ISSUER", "https://id.example");
            jail.set_env("AUTH_JWT_AUDIENCE", "shop");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert!(config.auth_enabled());
            assert_eq!(
                config.auth_jwks_file.as_deref(),
                Some("/etc/shop/0123.json")
            );
            jail.set_env("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef");
            assert!(Config::from_env().is_err(), "not both");
            Ok(())
        });
    }

    #[test]
    fn a_jwks_url_needs_issuer_and_audience_and_is_the_only_key_source() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("AUTH_REQUIRED", "true");
            jail.set_env("AUTH_JWKS_URL", "https://id.example/.well-known/jwks.json");
            let err = Config::from_env().unwrap_err().to_string();
            assert!(
                err.contains("AUTH_JWKS_URL") && err.contains("AUTH_JWT_ISSUER"),
                "{err}"
            );
            jail.set_env("AUTH_JWT_ISSUER", "https://id.example");
            jail.set_env("AUTH_JWT_AUDIENCE", "shop");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert!(config.auth_enabled());
            assert_eq!(config.auth_jwks_refresh_secs, 600);
            for (name, bad) in [
                ("AUTH_JWKS_REFRESH_SECS", "59"),
                ("AUTH_JWKS_REFRESH_SECS", "86401"),
            ] {
                jail.set_env(name, bad);
                let err = Config::from_env().unwrap_err().to_string();
                assert!(err.contains(name), "{err}");
            }
            jail.set_env("AUTH_JWKS_REFRESH_SECS", "60");
            assert_eq!(
                Config::from_env()
                    .map_err(|e| e.to_string())?
                    .auth_jwks_refresh_secs,
                60
            );
            jail.set_env("AUTH_JWKS_FILE", "/etc/shop/jwks.json");
            assert!(Config::from_env().is_err(), "not a file too");
            jail.set_env("AUTH_JWKS_FILE", "");
            jail.set_env("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef");
            assert!(Config::from_env().is_err(), "not a secret too");
            jail.set_env("AUTH_JWT_SECRET", "");
            jail.set_env("AUTH_JWKS_URL", "id.example/jwks");
            assert!(Config::from_env().is_err(), "not a URL");
            Ok(())
        });
    }

    #[test]
    fn an_http_jwks_url_needs_the_development_setting_and_keys_have_a_maximum_age() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("AUTH_JWT_ISSUER", "https://id.example");
            jail.set_env("AUTH_JWT_AUDIENCE", "shop");
            jail.set_env("AUTH_JWKS_URL", "http://idp:pw@id.example/jwks?k=v");
            let err = Config::from_env().unwrap_err().to_string();
            assert!(err.contains("AUTH_JWKS_ALLOW_HTTP"), "{err}");
            assert!(!err.contains("pw") && !err.contains("k=v"), "{err}");
            jail.set_env("AUTH_JWKS_ALLOW_HTTP", "true");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.auth_jwks_max_age_secs, 86_400, "a day");
            jail.set_env("AUTH_JWKS_URL", "ftp://id.example/jwks");
            assert!(Config::from_env().is_err(), "not http(s)");
            jail.set_env("AUTH_JWKS_URL", "https://id.example/jwks");
            for bad in ["59", "604801", "300"] {
                jail.set_env("AUTH_JWKS_REFRESH_SECS", "600");
                jail.set_env("AUTH_JWKS_MAX_AGE_SECS", bad);
                let err = Config::from_env().unwrap_err().to_string();
                assert!(err.contains("AUTH_JWKS_MAX_AGE_SECS"), "{bad}: {err}");
            }
            jail.set_env("AUTH_JWKS_MAX_AGE_SECS", "3600");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.auth_jwks_max_age_secs, 3600);
            Ok(())
        });
    }

    #[test]
    fn the_stream_replicas_are_one_to_five() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("DATA_PLATFORM_URL", "nats://n1:4222,nats://n2:4222");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.data_platform_stream_replicas, 1);
            assert_eq!(
                config.data_platform_kind(),
                Some(DataPlatformKind::JetStream)
            );
            jail.set_env("DATA_PLATFORM_STREAM_REPLICAS", "3");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.data_platform_stream_replicas, 3);
            for bad in ["0", "6"] {
                jail.set_env("DATA_PLATFORM_STREAM_REPLICAS", bad);
                let err = Config::from_env().unwrap_err().to_string();
                assert!(
                    err.contains("DATA_PLATFORM_STREAM_REPLICAS"),
                    "{bad}: {err}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn url_redaction_parses_the_url() {
        for (url, shown) in [
            (
                "postgres://shop:pw@db:5432/shop?sslmode=verify-full",
                "postgres://redacted@db:5432/shop?redacted",
            ),
            ("https://id.example/jwks", "https://id.example/jwks"),
            (
                "https://id.example/jwks#frag",
                "https://id.example/jwks#redacted",
            ),
            // A raw `?` in a password ends the authority for a URL parser: the whole
            // text is hidden, not the password's head shown.
            ("postgres://shop:pa?ss@db/shop", "<redacted>"),
            ("host=db password=pw", "<redacted>"),
            ("mailto:someone@example.com", "<redacted>"),
            (
                "nats://u:p@n1:4222,nats://u:p@n2:4222",
                "nats://redacted@n1:4222,nats://redacted@n2:4222",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_direct_url_is_optional_and_hidden_like_the_others() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://shop:pw@pgbouncer:6432/shop");
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(config.database_direct_url, None);
            assert_eq!(config.direct_database_url(), config.database_url);
            jail.set_env(
                "DATABASE_DIRECT_URL",
                "postgres://shop:direct-pw@db:5432/shop",
            );
            let config = Config::from_env().map_err(|e| e.to_string())?;
            assert_eq!(
                config.direct_database_url(),
                "postgres://shop:direct-pw@db:5432/shop"
            );
            let shown = format!("{config:?}");
            assert!(
                !shown.contains("direct-pw") && shown.contains("db:5432"),
                "{shown}"
            );
            Ok(())
        });
    }
}

//! The identity provider's public keys from its JWK set URL (`AUTH_JWKS_URL`).
//!
//! The set is fetched once at start-up, then every `AUTH_JWKS_REFRESH_SECS`, and when a
//! token names a `kid` the verifier holds no key for — then at most once per
//! [`UNKNOWN_KID_REFETCH_EVERY`] counted from the last fetch, whatever started it. That
//! token itself is refused (401): the request never waits for a fetch; a request after
//! the fetch finds the new key. A fetch that fails, times out, or brings a set the
//! verifier cannot use keeps the keys held (logged as a warning) until they are older
//! than [`JwksSettings::max_key_age`]: from then on every token is refused until a fetch
//! succeeds, so a key the provider withdrew does not verify forever.
//!
//! The URL must be `https://` unless [`JwksSettings::allow_http`] says otherwise (a
//! development provider). Logs and errors show it without credentials, query or fragment.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::verifier::Verifier;

/// How long one fetch of the set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest set read: a provider's set holds a handful of keys.
const MAX_SET_BYTES: usize = 1 << 20;
/// The shortest time between a fetch and a refetch a token with an unknown `kid` asks
/// for, per instance.
pub const UNKNOWN_KID_REFETCH_EVERY: Duration = Duration::from_secs(60);

/// How the keys are fetched and trusted.
#[derive(Debug, Clone, Copy)]
pub struct JwksSettings {
    /// Past this age without a successful fetch, the keys are no longer trusted
    /// (`AUTH_JWKS_MAX_AGE_SECS`).
    pub max_key_age: Duration,
    /// Takes an `http://` URL (`AUTH_JWKS_ALLOW_HTTP`, for development only: anyone on
    /// the path could hand the server keys of their own).
    pub allow_http: bool,
}

/// `url` as logs and errors may show it: scheme, host, port and path; no user, password,
/// query or fragment.
pub fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Fetches the set at one URL into a verifier, and wakes on its unknown-`kid` hook.
pub struct JwksRefresher {
    url: url::Url,
    /// [`redacted`] `url`.
    shown: String,
    client: reqwest::Client,
    verifier: Arc<Verifier>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for JwksRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksRefresher")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl JwksRefresher {
    /// A verifier without keys yet, and what fills it from `url`.
    ///
    /// # Errors
    /// When `url` is not an `https://` URL (or `http://` with [`JwksSettings::allow_http`]),
    /// or the HTTP client cannot be built. The error never shows the URL's credentials
    /// or query.
    pub fn new(
        url: &str,
        issuer: String,
        audience: String,
        settings: JwksSettings,
    ) -> anyhow::Result<Self> {
        let url = url::Url::parse(url).map_err(|e| anyhow::anyhow!("not a URL: {e}"))?;
        let shown = redacted(&url);
        match url.scheme() {
            "https" => {}
            "http" if settings.allow_http => {}
            "http" => anyhow::bail!(
                "{shown}: http:// lets anyone on the path hand the server keys of their own; \
                 use https://, or set AUTH_JWKS_ALLOW_HTTP=true for a development provider"
            ),
            other => anyhow::bail!("{shown}: the scheme {other}:// is not https://"),
        }
        let wake = Arc::new(Notify::new());
        let hook = Arc::clone(&wake);
        let verifier = Verifier::without_keys(issuer, audience)
            .with_max_key_age(settings.max_key_age)
            .on_unknown_kid(Arc::new(move || hook.notify_one()));
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .context("building the JWKS client")?;
        Ok(Self {
            url,
            shown,
            client,
            verifier: Arc::new(verifier),
            wake,
        })
    }

    pub fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.verifier)
    }

    /// The URL as logs may show it ([`redacted`]).
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Fetches the set and gives its keys to the verifier; returns how many it holds.
    ///
    /// # Errors
    /// When the URL does not answer 200 within [`FETCH_TIMEOUT`] with a set holding a
    /// usable key: the verifier's keys are then unchanged. The error does not show the
    /// URL.
    pub async fn fetch(&self) -> anyhow::Result<usize> {
        let response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(reqwest::Error::without_url)?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_SET_BYTES as u64)
        {
            anyhow::bail!("the JWK set is larger than {MAX_SET_BYTES} bytes");
        }
        let body = response
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?;
        if body.len() > MAX_SET_BYTES {
            anyhow::bail!("the JWK set is larger than {MAX_SET_BYTES} bytes");
        }
        let json = std::str::from_utf8(&body).context("the JWK set is not UTF-8")?;
        self.verifier.replace_jwk_set(json)
    }

    async fn fetch_logged(&self) {
        match self.fetch().await {
            Ok(keys) => tracing::debug!(url = %self.shown, keys, "fetched the JWK set"),
            Err(e) => tracing::warn!(
                url = %self.shown,
                error = format!("{e:#}"),
                keys = self.verifier.key_count(),
                "fetching the JWK set failed; keeping the keys held until they are too old"
            ),
        }
    }

    /// Refetches every `refresh_every` after the last fetch, and when woken by an
    /// unknown `kid` no sooner than `min_refetch` after it, until `stop` turns true. The
    /// start-up fetch is the caller's.
    pub async fn run(
        self,
        refresh_every: Duration,
        min_refetch: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last = Instant::now();
        loop {
            let woken = tokio::select! {
                () = tokio::time::sleep_until(last + refresh_every) => false,
                () = self.wake.notified() => true,
                _ = stop.changed() => break,
            };
            if woken {
                tokio::select! {
                    () = tokio::time::sleep_until(last + min_refetch) => {}
                    _ = stop.changed() => break,
                }
            }
            self.fetch_logged().await;
            last = Instant::now();
        }
        tracing::debug!(job = "jwks-refresh", "scheduler stopped");
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::get_current_timestamp;
    use serde_json::{Value, json};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::test_keys::{EC_A, EC_A_PRIVATE, EC_B, EC_B_PRIVATE, ec_jwk, es256};

    const ISSUER: &str = "https://id.example";
    const AUDIENCE: &str = "shop";
    const LONG: Duration = Duration::from_secs(3600);
    /// The mock server speaks http://.
    const DEV: JwksSettings = JwksSettings {
        max_key_age: LONG,
        allow_http: true,
    };

    fn set(keys: &[(&str, (&str, &str))]) -> Value {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(kid, point)| ec_jwk(kid, *point))
            .collect();
        json!({ "keys": keys })
    }

    fn token(private: &str, kid: &str) -> String {
        let claims = json!({"sub": "u", "iss": ISSUER, "aud": AUDIENCE, "exp": get_current_timestamp() + 600});
        es256(private, kid, &claims)
    }

    /// A JWKS server answering `set` (replacing what it answered before).
    async fn serve(server: &MockServer, response: ResponseTemplate) {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(response)
            .mount(server)
            .await;
    }

    async fn fetches(server: &MockServer) -> usize {
        server.received_requests().await.unwrap_or_default().len()
    }

    async fn started(server: &MockServer) -> JwksRefresher {
        let refresher = JwksRefresher::new(
            &format!("{}/jwks", server.uri()),
            ISSUER.into(),
            AUDIENCE.into(),
            DEV,
        )
        .unwrap();
        assert_eq!(refresher.fetch().await.unwrap(), 1);
        refresher
    }

    /// Polls `check` for up to 5 s.
    async fn eventually(mut check: impl FnMut() -> bool) -> bool {
        for _ in 0..100 {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        check()
    }

    #[tokio::test]
    async fn a_token_with_a_new_kid_is_accepted_once_the_set_has_rotated() {
        let server = MockServer::start().await;
        serve(
            &server,
            ResponseTemplate::new(200).set_body_json(set(&[("a", EC_A)])),
        )
        .await;
        let refresher = started(&server).await;
        let verifier = refresher.verifier();
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(refresher.run(LONG, Duration::from_millis(200), stopped));

        let a = token(EC_A_PRIVATE, "a");
        let b = token(EC_B_PRIVATE, "b");
        assert!(verifier.verify(&a).is_ok());
        serve(
            &server,
            ResponseTemplate::new(200).set_body_json(set(&[("b", EC_B)])),
        )
        .await;
        // The first token naming b is refused and asks for a refetch; later ones pass.
        assert!(verifier.verify(&b).is_err());
        assert!(
            eventually(|| verifier.verify(&b).is_ok()).await,
            "the new key was never fetched"
        );
        assert!(verifier.verify(&a).is_err(), "a was rotated out");
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let server = MockServer::start().await;
        serve(
            &server,
            ResponseTemplate::new(200).set_body_json(set(&[("a", EC_A)])),
        )
        .await;
        let refresher = started(&server).await;
        let verifier = refresher.verifier();
        let (_stop, stopped) = watch::channel(false);
        let min_refetch = Duration::from_millis(1000);
        tokio::spawn(refresher.run(LONG, min_refetch, stopped));
        let start = Instant::now();
        assert_eq!(fetches(&server).await, 1, "the start-up fetch");

        let unknown = token(EC_B_PRIVATE, "z");
        for _ in 0..50 {
            assert!(verifier.verify(&unknown).is_err());
        }
        tokio::time::sleep(min_refetch / 2).await;
        assert_eq!(fetches(&server).await, 1, "no refetch within the interval");
        // Polled rather than timed, so a loaded machine does not fail the test.
        let mut refetched = false;
        for _ in 0..100 {
            if fetches(&server).await >= 2 {
                refetched = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(refetched, "the unknown kid never triggered a refetch");
        assert!(start.elapsed() >= min_refetch, "not before the interval");
        // A known kid never asks; nothing asked since the 50 tokens.
        assert!(verifier.verify(&token(EC_A_PRIVATE, "a")).is_ok());
        tokio::time::sleep(min_refetch * 2).await;
        assert_eq!(fetches(&server).await, 2, "one refetch for the 50 tokens");
    }

    #[tokio::test]
    async fn the_set_is_refreshed_periodically() {
        let server = MockServer::start().await;
        serve(
            &server,
            ResponseTemplate::new(200).set_body_json(set(&[("a", EC_A)])),
        )
        .await;
        let refresher = started(&server).await;
        let verifier = refresher.verifier();
        let (stop, stopped) = watch::channel(false);
        let job = tokio::spawn(refresher.run(Duration::from_millis(300), LONG, stopped));
        serve(
            &server,
            ResponseTemplate::new(200).set_body_json(set(&[("b", EC_B)])),
        )
        .await;
        let a = token(EC_A_PRIVATE, "a");
        assert!(
            eventually(|| verifier.verify(&a).is_err()).await,
            "the periodic refresh never rotated a out"
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), job)
            .await
            .expect("the job stops")
            .unwrap();
    }

    #[tokio::test]
    async fn a_failing_or_unreachable_endpoint_keeps_the_last_good_keys() {
        let server = MockServer::start().await;
        serve(
            &server,
            ResponseTemplate::new(200).set_body_json(set(&[("a", EC_A)])),
        )
        .await;
        let refresher = started(&server).await;
        let a = token(EC_A_PRIVATE, "a");
        for bad in [
            ResponseTemplate::new(503),
            ResponseTemplate::new(200).set_body_string("not json"),
            ResponseTemplate::new(200).set_body_json(json!({"keys": []})),
            ResponseTemplate::new(200).set_delay(FETCH_TIMEOUT + Duration::from_secs(1)),
        ] {
            serve(&server, bad).await;
            assert!(refresher.fetch().await.is_err());
            assert!(refresher.verifier().verify(&a).is_ok());
        }
        // Through the job: the endpoint gone, an unknown kid's refetch fails.
        let verifier = refresher.verifier();
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(refresher.run(LONG, Duration::from_millis(100), stopped));
        drop(server);
        assert!(verifier.verify(&token(EC_B_PRIVATE, "b")).is_err());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(verifier.verify(&a).is_ok());
        assert_eq!(verifier.key_count(), 1);
    }

    #[test]
    fn only_https_is_taken_unless_http_is_allowed_and_errors_hide_credentials_and_query() {
        let strict = JwksSettings {
            max_key_age: LONG,
            allow_http: false,
        };
        let new = |url: &str, settings| {
            JwksRefresher::new(url, ISSUER.into(), AUDIENCE.into(), settings).map(|_| ())
        };
        let err = new("http://idp:s3cret@id.example/jwks?key=hidden", strict).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("AUTH_JWKS_ALLOW_HTTP"), "{text}");
        assert!(text.contains("http://id.example/jwks"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("hidden"),
            "{text}"
        );
        assert!(new("ftp://id.example/jwks", DEV).is_err());
        assert!(new("not a url", DEV).is_err());
        assert!(new("http://id.example/jwks", DEV).is_ok());
        assert!(new("https://id.example/jwks", strict).is_ok());
        let refresher = JwksRefresher::new(
            "https://idp:s3cret@id.example/jwks?key=hidden#f",
            ISSUER.into(),
            AUDIENCE.into(),
            strict,
        )
        .unwrap();
        assert_eq!(refresher.shown_url(), "https://id.example/jwks");
        assert_eq!(
            format!("{refresher:?}"),
            "JwksRefresher { url: \"https://id.example/jwks\", .. }"
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_does_not_show_the_urls_query() {
        let server = MockServer::start().await;
        serve(&server, ResponseTemplate::new(503)).await;
        let refresher = JwksRefresher::new(
            &format!("{}/jwks?api_key=hidden", server.uri()),
            ISSUER.into(),
            AUDIENCE.into(),
            DEV,
        )
        .unwrap();
        let err = format!("{:#}", refresher.fetch().await.unwrap_err());
        assert!(err.contains("503"), "{err}");
        assert!(!err.contains("hidden"), "{err}");
    }
}

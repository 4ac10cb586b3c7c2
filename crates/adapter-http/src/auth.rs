//! End-user authentication: the server as an OAuth 2.0 resource server that trusts JWT
//! bearer tokens from an identity provider (RFC 6750), off unless key material is
//! configured.
//!
//! [`Verifier`] checks a token against the keys the server trusts; [`Authentication`]
//! (application data) holds the verifier, or none when authentication is off; the
//! [`Caller`] extractor hands a handler the [`Principal`] a request's token names.
//! Refusals are [`AuthError`]s: 401 `UNAUTHORIZED` or 403 `FORBIDDEN` with the
//! `WWW-Authenticate` challenge RFC 6750 §3 asks for.
//!
//! Tokens are never logged, nor any part of one; a refusal says nothing about why the
//! token was refused.

use std::collections::HashSet;
use std::future::{Ready, ready};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// The scope that lets a token call the admin API.
pub const ADMIN_SCOPE: &str = "shop:admin";

/// How far a token's `exp` and `nbf` may be off the server's clock.
pub const LEEWAY_SECS: u64 = 60;

/// The shortest HS256 secret accepted: a key as long as the hash (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// How many verified tokens a verifier remembers, so that a client's next request with the
/// same token skips the signature check (an RS256 check costs about 110 µs of CPU, an
/// ES256 one about 360 µs; see docs/benchmarks.md). At most a few MiB.
pub const REMEMBERED_TOKENS: usize = 10_000;

/// Who made a request, as a verified token says.
///
/// `subject` is the token's `sub` claim exactly as the identity provider wrote it: an
/// opaque string, unique per end user within that provider, never empty. It is not a
/// shop user id; mapping a subject to a user is the users' routes' business.
/// `admin` is true when the token's `scope` claim (space-separated scopes, RFC 8693
/// §4.2) contains [`ADMIN_SCOPE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub admin: bool,
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No bearer token: 401 with the challenge of an unusable token,
    /// `error="invalid_token"`, so that a client has one case to handle (RFC 6750 §3.1
    /// allows leaving the error code out when no credentials were sent; the server
    /// names it always).
    MissingToken,
    /// Malformed, badly signed, expired, not yet valid, or for another issuer or
    /// audience: 401 `error="invalid_token"`, whatever the reason.
    InvalidToken,
    /// A valid token without the scope the route needs: 403 `error="insufficient_scope"`.
    InsufficientScope(&'static str),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::MissingToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "a bearer token is required",
            )
            .with_challenge(r#"Bearer error="invalid_token""#.into()),
            AuthError::InvalidToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "the bearer token is not valid",
            )
            .with_challenge(r#"Bearer error="invalid_token""#.into()),
            AuthError::InsufficientScope(scope) => ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!("the bearer token lacks the scope {scope}"),
            )
            .with_challenge(format!(
                r#"Bearer error="insufficient_scope", scope="{scope}""#
            )),
        }
    }
}

/// One key the server trusts, with the one algorithm it verifies: the algorithm comes
/// from the key's type, never from the token, so `alg: none` and algorithm confusion
/// (an HMAC token against a public key, or the reverse) find no key.
struct TrustedKey {
    /// The `kid` a token names this key by; `None` matches a token without one or
    /// with a `kid` no other key has.
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The claims the server reads; any others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// A NumericDate: seconds, possibly with a fraction (RFC 7519 §2).
    exp: f64,
    #[serde(default)]
    scope: Option<String>,
}

/// The keys trusted at one time. `generation` counts the replacements, so a token
/// verified with an earlier set is never taken as verified by a later one.
struct KeySet {
    generation: u64,
    keys: Vec<TrustedKey>,
}

/// A token that passed every check: whom it names, with which keys, and until when (its
/// `exp` plus the leeway, Unix seconds) it may be taken without checking it again.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    generation: u64,
    until: u64,
}

/// What a verifier does when a token names a `kid` it holds no key for: typically,
/// wake whatever refetches the JWK set. Called on the request path, so it must return
/// at once (never fetch in place).
pub type UnknownKidHook = Arc<dyn Fn() + Send + Sync>;

/// Checks bearer tokens: the signature with a trusted key, `exp` and `nbf` (required:
/// `exp`; both with [`LEEWAY_SECS`]), `iss` and `aud` when configured (then required),
/// and a non-empty `sub`.
///
/// The keys of a JWK set can be replaced while the verifier is in use
/// ([`Verifier::replace_jwk_set`]): a check takes the current set under a read lock held
/// only to clone an `Arc`, so it never waits for a fetch.
///
/// A token that passed is remembered by its exact text (up to [`REMEMBERED_TOKENS`]) until
/// its `exp` plus the leeway, so the signature of a client's token is checked once per
/// instance, not on every request. Any other text (one changed character) is checked in
/// full; a replaced key set forgets every token verified before.
pub struct Verifier {
    keys: RwLock<Arc<KeySet>>,
    verified: quick_cache::sync::Cache<Box<str>, Verified>,
    issuer: Option<String>,
    audience: Option<String>,
    on_unknown_kid: Option<UnknownKidHook>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys().keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl Verifier {
    /// A verifier of HS256 tokens signed with `secret`.
    ///
    /// # Errors
    /// When the secret is shorter than [`MIN_SECRET_BYTES`].
    pub fn hs256(
        secret: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<Self> {
        if secret.len() < MIN_SECRET_BYTES {
            anyhow::bail!(
                "the HS256 secret must be at least {MIN_SECRET_BYTES} bytes (got {})",
                secret.len()
            );
        }
        let key = DecodingKey::from_secret(secret)
            .map_err(|e| anyhow::anyhow!("reading the HS256 secret: {e}"))?;
        Ok(Self {
            keys: RwLock::new(Arc::new(KeySet {
                generation: 0,
                keys: vec![TrustedKey {
                    kid: None,
                    algorithm: Algorithm::HS256,
                    key,
                }],
            })),
            verified: quick_cache::sync::Cache::new(REMEMBERED_TOKENS),
            issuer,
            audience,
            on_unknown_kid: None,
        })
    }

    /// A verifier of tokens signed with the public keys of a JWK set (RFC 7517): an RSA
    /// key verifies RS256 only, a P-256 key ES256 only, each found by the token's `kid`.
    /// Keys of another type, for encryption, or naming another algorithm are skipped.
    /// With public keys from elsewhere, the issuer and the audience are required.
    ///
    /// # Errors
    /// When the set cannot be read or holds no usable key.
    pub fn from_jwk_set(json: &str, issuer: String, audience: String) -> anyhow::Result<Self> {
        let verifier = Self::without_keys(issuer, audience);
        verifier.replace_jwk_set(json)?;
        Ok(verifier)
    }

    /// A verifier for the keys of a JWK set not read yet: it refuses every token until
    /// [`Verifier::replace_jwk_set`] gives it keys.
    pub fn without_keys(issuer: String, audience: String) -> Self {
        Self {
            keys: RwLock::new(Arc::new(KeySet {
                generation: 0,
                keys: Vec::new(),
            })),
            verified: quick_cache::sync::Cache::new(REMEMBERED_TOKENS),
            issuer: Some(issuer),
            audience: Some(audience),
            on_unknown_kid: None,
        }
    }

    /// Calls `hook` whenever a token names a `kid` the verifier holds no key for.
    #[must_use]
    pub fn on_unknown_kid(self, hook: UnknownKidHook) -> Self {
        Self {
            on_unknown_kid: Some(hook),
            ..self
        }
    }

    /// How many keys the verifier holds now.
    pub fn key_count(&self) -> usize {
        self.keys().keys.len()
    }

    /// Replaces the keys with those of the JWK set `json` (read as
    /// [`Verifier::from_jwk_set`] does) and returns how many there are now.
    ///
    /// # Errors
    /// When the set cannot be read or holds no usable key: the keys held are then kept.
    pub fn replace_jwk_set(&self, json: &str) -> anyhow::Result<usize> {
        let keys = Self::read_jwk_set(json)?;
        let count = keys.len();
        {
            let mut held = self.keys.write().unwrap_or_else(PoisonError::into_inner);
            *held = Arc::new(KeySet {
                generation: held.generation.wrapping_add(1),
                keys,
            });
        }
        // Tokens verified with the old keys no longer count (the generation already
        // says so; this frees their memory).
        self.verified.clear();
        Ok(count)
    }

    fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn read_jwk_set(json: &str) -> anyhow::Result<Vec<TrustedKey>> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| anyhow::anyhow!("reading the JWK set: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone();
            let (algorithm, named) = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    (Algorithm::ES256, KeyAlgorithm::ES256)
                }
                _ => {
                    tracing::warn!(?kid, "JWK of an unsupported type skipped");
                    continue;
                }
            };
            let for_signatures = !matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            );
            if !for_signatures || jwk.common.key_algorithm.is_some_and(|alg| alg != named) {
                tracing::warn!(?kid, "JWK not for {algorithm:?} signatures skipped");
                continue;
            }
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| anyhow::anyhow!("reading the JWK {kid:?}: {e}"))?;
            keys.push(TrustedKey {
                kid,
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            anyhow::bail!("the JWK set holds no RS256 or ES256 signing key");
        }
        Ok(keys)
    }

    /// The principal `token` names.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] for any token that does not pass every check.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let keys = self.keys();
        if let Some(principal) = self.remembered(token, keys.generation, unix_now()) {
            return Ok(principal);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let Some(trusted) = keys
            .keys
            .iter()
            .find(|k| k.kid.is_some() && k.kid == header.kid)
            .or_else(|| keys.keys.iter().find(|k| k.kid.is_none()))
        else {
            if header.kid.is_some()
                && let Some(hook) = &self.on_unknown_kid
            {
                hook();
            }
            return Err(AuthError::InvalidToken);
        };
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &trusted.key,
            &self.validation(trusted.algorithm),
        )
        .map_err(|_| AuthError::InvalidToken)?;
        let Claims { sub, exp, scope } = data.claims;
        if sub.is_empty() {
            return Err(AuthError::InvalidToken);
        }
        let principal = Principal {
            subject: sub,
            admin: scope
                .as_deref()
                .is_some_and(|s| s.split_ascii_whitespace().any(|s| s == ADMIN_SCOPE)),
        };
        self.verified.insert(
            token.into(),
            Verified {
                principal: principal.clone(),
                generation: keys.generation,
                until: whole_seconds(exp).saturating_add(LEEWAY_SECS),
            },
        );
        Ok(principal)
    }

    /// The principal of `token` if it passed every check with the keys of `generation`
    /// and is not past its `exp` (plus the leeway) at `now`.
    fn remembered(&self, token: &str, generation: u64, now: u64) -> Option<Principal> {
        self.verified
            .get(token)
            .filter(|hit| hit.generation == generation && now < hit.until)
            .map(|hit| hit.principal)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required: HashSet<String> = ["exp", "sub"].map(String::from).into();
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.insert("iss".into());
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.insert("aud".into());
            }
            // No audience configured: a token's `aud`, if any, is not checked.
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required;
        validation
    }
}

/// A NumericDate's whole seconds: 0 for a negative one or NaN, `u64::MAX` past it (an
/// `as` cast saturates).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole_seconds(date: f64) -> u64 {
    date.floor() as u64
}

/// Seconds since the Unix epoch (0 for a clock before it, which no token passes).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Application data: the verifier when end-user authentication is on, none when off.
#[derive(Debug, Clone, Default)]
pub struct Authentication(Option<Arc<Verifier>>);

impl Authentication {
    pub fn new(verifier: Option<Verifier>) -> Self {
        Self(verifier.map(Arc::new))
    }

    /// Authentication on with a verifier shared with whatever refreshes its keys.
    pub fn shared(verifier: Arc<Verifier>) -> Self {
        Self(Some(verifier))
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.0.as_deref()
    }

    /// The principal of a request with `authorization` as its `Authorization` header;
    /// `Ok(None)` when authentication is off (the header is then not looked at).
    ///
    /// # Errors
    /// When authentication is on and the header carries no valid bearer token.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Principal>, AuthError> {
        let Some(verifier) = self.verifier() else {
            return Ok(None);
        };
        let token = bearer_token(authorization).ok_or(AuthError::MissingToken)?;
        let token = std::str::from_utf8(token).map_err(|_| AuthError::InvalidToken)?;
        verifier.verify(token).map(Some)
    }
}

/// The credentials of a `Bearer` authorization, trimmed: the scheme name is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` work as `Bearer` does.
pub(crate) fn bearer_token(authorization: Option<&[u8]>) -> Option<&[u8]> {
    let (scheme, token) = authorization?.split_at_checked(b"Bearer ".len())?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"Bearer ") && !token.is_empty()).then_some(token)
}

/// The caller of a request, for a handler to take as an argument: with
/// authentication on, the request must carry a valid bearer token (else the handler
/// never runs and the client gets 401); with it off, every caller is anonymous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// End-user authentication is off: the request says nothing trusted about who
    /// made it.
    Anonymous,
    Authenticated(Principal),
}

impl Caller {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Self::Anonymous => None,
            Self::Authenticated(principal) => Some(principal),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(header::HeaderValue::as_bytes);
        let caller = match req.app_data::<web::Data<Authentication>>() {
            Some(auth) => auth.authenticate(authorization),
            None => Ok(None),
        };
        ready(
            caller
                .map(|p| p.map_or(Self::Anonymous, Self::Authenticated))
                .map_err(ApiError::from),
        )
    }
}

/// What a minted token says: for `shop-server token` and tests.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub subject: &'a str,
    pub admin: bool,
    pub ttl: Duration,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// An HS256 token signed with `secret`, valid from now for `request.ttl`.
///
/// # Errors
/// When the secret is too short or the clock is before 1970.
pub fn mint_hs256(secret: &[u8], request: &TokenRequest<'_>) -> anyhow::Result<String> {
    if secret.len() < MIN_SECRET_BYTES {
        anyhow::bail!("the HS256 secret must be at least {MIN_SECRET_BYTES} bytes");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = MintedClaims {
        sub: request.subject,
        iat: now,
        exp: now.saturating_add(request.ttl.as_secs()),
        scope: request.admin.then_some(ADMIN_SCOPE),
        iss: request.issuer,
        aud: request.audience,
    };
    let key = EncodingKey::from_secret(secret)
        .map_err(|e| anyhow::anyhow!("reading the HS256 secret: {e}"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| anyhow::anyhow!("signing the token: {e}"))
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use jsonwebtoken::{encode, get_current_timestamp};
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
    const ISSUER: &str = "https://id.example";
    const AUDIENCE: &str = "shop";

    fn verifier() -> Verifier {
        Verifier::hs256(SECRET, Some(ISSUER.into()), Some(AUDIENCE.into())).unwrap()
    }

    fn now() -> i64 {
        i64::try_from(get_current_timestamp()).unwrap()
    }

    fn claims() -> Value {
        json!({"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600})
    }

    fn with(changes: Value) -> Value {
        let mut claims = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    fn sign(claims: &Value) -> String {
        sign_with(claims, SECRET)
    }

    fn sign_with(claims: &Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    /// Unpadded base64url (RFC 7515 §2), for hand-made tokens.
    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn verify(token: &str) -> Result<Principal, AuthError> {
        verifier().verify(token)
    }

    #[test]
    fn the_right_token_names_its_subject() {
        assert_eq!(
            verify(&sign(&claims())),
            Ok(Principal {
                subject: "user-1".into(),
                admin: false
            })
        );
    }

    #[test]
    fn the_admin_scope_makes_an_admin_and_other_scopes_do_not() {
        let admin = |scope: &str| verify(&sign(&with(json!({"scope": scope})))).map(|p| p.admin);
        assert_eq!(admin("openid shop:admin profile"), Ok(true));
        assert_eq!(admin("shop:admin"), Ok(true));
        assert_eq!(admin("openid shop:administrator"), Ok(false));
        assert_eq!(admin("shop:admin:read"), Ok(false));
        assert_eq!(admin(""), Ok(false));
    }

    #[test]
    fn malformed_and_wrongly_signed_tokens_are_invalid() {
        let good = sign(&claims());
        for bad in [
            "",
            "not-a-token",
            "a.b.c",
            &good[..good.len() - 2],
            &format!("{good}x"),
            &sign_with(&claims(), b"another-secret-of-at-least-32-bytes!"),
        ] {
            assert_eq!(verify(bad), Err(AuthError::InvalidToken), "{bad}");
        }
    }

    #[test]
    fn expiry_and_not_before_are_checked_with_a_minute_of_leeway() {
        let at = |claim: &str, offset: i64| verify(&sign(&with(json!({claim: now() + offset}))));
        assert_eq!(at("exp", -120), Err(AuthError::InvalidToken));
        assert!(at("exp", -30).is_ok(), "within the leeway");
        assert_eq!(at("nbf", 120), Err(AuthError::InvalidToken));
        assert!(at("nbf", 30).is_ok(), "within the leeway");
        // A claim of the wrong type is refused, not skipped.
        for claim in ["exp", "nbf"] {
            let token = sign(&with(json!({claim: "99999999999"})));
            assert_eq!(verify(&token), Err(AuthError::InvalidToken), "{claim}");
        }
        assert_eq!(
            verify(&sign(&with(json!({"exp": null})))),
            Err(AuthError::InvalidToken),
            "exp is required"
        );
    }

    #[test]
    fn issuer_audience_and_subject_are_required_and_checked() {
        for changes in [
            json!({"iss": "https://evil.example"}),
            json!({"iss": null}),
            json!({"aud": "other"}),
            json!({"aud": null}),
            json!({"sub": null}),
            json!({"sub": ""}),
            json!({"sub": 42}),
        ] {
            assert_eq!(
                verify(&sign(&with(changes.clone()))),
                Err(AuthError::InvalidToken),
                "{changes}"
            );
        }
        assert!(verify(&sign(&with(json!({"aud": ["other", AUDIENCE]})))).is_ok());
    }

    #[test]
    fn without_issuer_or_audience_configured_they_are_not_checked() {
        let open = Verifier::hs256(SECRET, None, None).unwrap();
        let token = sign(&with(json!({"iss": "anyone", "aud": "anything"})));
        assert!(open.verify(&token).is_ok());
        assert!(
            open.verify(&sign(&json!({"sub": "u", "exp": now() + 60})))
                .is_ok()
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let payload = b64(claims().to_string().as_bytes());
        let unsigned = |alg: &str| {
            let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
            format!("{header}.{payload}.")
        };
        for alg in ["none", "None", "NONE"] {
            assert_eq!(
                verify(&unsigned(alg)),
                Err(AuthError::InvalidToken),
                "{alg}"
            );
        }
        // A token whose header names RS256, signed with the shared secret (what a
        // verifier that took the algorithm from the token and the secret as the key
        // would accept), and one signed with HS512: the algorithm is the key's, never
        // the token's.
        let header = b64(json!({"alg": "RS256", "typ": "JWT"}).to_string().as_bytes());
        let message = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET).unwrap(),
            Algorithm::HS256,
        )
        .unwrap();
        assert_eq!(
            verify(&format!("{message}.{signature}")),
            Err(AuthError::InvalidToken)
        );
        // The same construction under an HS256 header passes: the refusal above is
        // the algorithm's.
        let header = b64(json!({"alg": "HS256", "typ": "JWT"}).to_string().as_bytes());
        let message = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET).unwrap(),
            Algorithm::HS256,
        )
        .unwrap();
        assert!(verify(&format!("{message}.{signature}")).is_ok());
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims(),
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert_eq!(verify(&hs512), Err(AuthError::InvalidToken));
    }

    /// Two P-256 key pairs (PKCS #8 DER, and the public point) and an RSA public key,
    /// made for these tests only.
    const EC_A_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgERaQ0ERV+hqS10NhlMryJsZXpUl6yV7MCR7STkxXZzehRANCAASwz+XB9KtsMWH8QReGCI2KYCykZ8y/JaKEWRd8XCxEGZVgbC/L87nNPBYRSb+lPHUk2EiTpRrKCAxI4ZMPPF27";
    const EC_A: (&str, &str) = (
        "sM_lwfSrbDFh_EEXhgiNimAspGfMvyWihFkXfFwsRBk",
        "lWBsL8vzuc08FhFJv6U8dSTYSJOlGsoIDEjhkw88Xbs",
    );
    const EC_B_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPf/74t0FuZKXHvudDmX5WW9ddWaaVsS2nxMaMN7PW/6hRANCAAR8a4ec9eqqEIK50vFxrLr/Ft2X1YZEGv6b+LuDO4fCbMj0CHG9Oam8kZaXxzWZ/UNwV0Fo75WniMTkrnSpyENh";
    const EC_B: (&str, &str) = (
        "fGuHnPXqqhCCudLxcay6_xbdl9WGRBr-m_i7gzuHwmw",
        "yPQIcb05qbyRlpfHNZn9Q3BXQWjvlaeIxOSudKnIQ2E",
    );
    const RSA_N: &str = "tlIXWhS8xB89vlven5dGFKoctDs6VhstzaHJ8F5wSFcFLAo7FvT9BcdMULEKdlBzhOqPWs6DPcGukYhL6L-Oqq3bNOhbW8C_YFnLCg57sfGPxbI86WRx__U0gprOg-r7PruAqUmJfeNHqKEVggS2cyDHkhGVRnYJdW32ap2HoEN2TRFR0FJ05Olt2sgg13rUpoiTsCYRJD_DeGp3oiUZcG0MEPIAznpSCgCTrqQ3Cd1oa1pPt7PAVw56lJrF8S3KS3oK7pvvnZSuE9-3vds02_GYhHRt1JizN_xD6h5dheb98ly_VbkdgbCS6Xx7spG67ozXynq_40avlQQIWYV57Q";

    fn ec_jwk(kid: &str, (x, y): (&str, &str)) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"})
    }

    fn jwks_verifier(keys: Value) -> anyhow::Result<Verifier> {
        Verifier::from_jwk_set(
            &json!({ "keys": keys }).to_string(),
            ISSUER.into(),
            AUDIENCE.into(),
        )
    }

    fn es256(private: &str, kid: &str) -> String {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(private)
            .unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        encode(&header, &claims(), &EncodingKey::from_ec_der(&der)).unwrap()
    }

    #[test]
    fn a_jwk_set_verifies_es256_tokens_by_kid() {
        let set = jwks_verifier(json!([ec_jwk("a", EC_A), ec_jwk("b", EC_B)])).unwrap();
        assert!(set.verify(&es256(EC_A_PRIVATE, "a")).is_ok());
        assert!(set.verify(&es256(EC_B_PRIVATE, "b")).is_ok());
        // Signed by one key, naming the other.
        assert_eq!(
            set.verify(&es256(EC_A_PRIVATE, "b")),
            Err(AuthError::InvalidToken)
        );
        // A key the set does not hold (a rotated-out or a foreign key).
        let only_b = jwks_verifier(json!([ec_jwk("b", EC_B)])).unwrap();
        assert_eq!(
            only_b.verify(&es256(EC_A_PRIVATE, "a")),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn an_hs256_token_against_a_public_key_set_is_refused() {
        let rsa = json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "r"});
        let set = jwks_verifier(json!([rsa, ec_jwk("a", EC_A)])).unwrap();
        // HMAC with the public key's bytes as the secret: the classic confusion.
        for (kid, secret) in [("r", RSA_N), ("a", EC_A.0)] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(kid.into());
            let token = encode(
                &header,
                &claims(),
                &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
            )
            .unwrap();
            assert_eq!(set.verify(&token), Err(AuthError::InvalidToken), "{kid}");
        }
        // An ES256 token naming the RSA key's kid is refused too.
        assert_eq!(
            set.verify(&es256(EC_A_PRIVATE, "r")),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn unusable_jwks_are_skipped_and_a_set_without_a_usable_key_is_refused() {
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        let enc = json!({"kty": "EC", "crv": "P-256", "x": EC_A.0, "y": EC_A.1, "kid": "e", "use": "enc"});
        let other_alg = json!({"kty": "EC", "crv": "P-256", "x": EC_A.0, "y": EC_A.1, "kid": "o", "alg": "RS256"});
        assert!(jwks_verifier(json!([oct.clone(), enc.clone(), other_alg.clone()])).is_err());
        assert!(jwks_verifier(json!([])).is_err());
        assert!(Verifier::from_jwk_set("not json", ISSUER.into(), AUDIENCE.into()).is_err());
        let set = jwks_verifier(json!([oct, enc, other_alg, ec_jwk("a", EC_A)])).unwrap();
        assert_eq!(set.key_count(), 1);
        // The set's issuer and audience are required.
        let token = es256(EC_A_PRIVATE, "a");
        assert!(set.verify(&token).is_ok());
    }

    #[test]
    fn replacing_the_jwk_set_rotates_keys_and_a_bad_set_keeps_the_old_ones() {
        let set = jwks_verifier(json!([ec_jwk("a", EC_A)])).unwrap();
        let a = es256(EC_A_PRIVATE, "a");
        let b = es256(EC_B_PRIVATE, "b");
        assert!(set.verify(&a).is_ok());
        assert_eq!(set.verify(&b), Err(AuthError::InvalidToken));
        let rotated = json!({"keys": [ec_jwk("b", EC_B)]}).to_string();
        assert_eq!(set.replace_jwk_set(&rotated).unwrap(), 1);
        assert!(set.verify(&b).is_ok());
        assert_eq!(set.verify(&a), Err(AuthError::InvalidToken), "rotated out");
        for bad in [
            "",
            "not json",
            r#"{"keys": []}"#,
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
        ] {
            assert!(set.replace_jwk_set(bad).is_err(), "{bad}");
            assert!(set.verify(&b).is_ok(), "kept after {bad}");
        }
        // No keys yet: every token is refused until a set arrives.
        let empty = Verifier::without_keys(ISSUER.into(), AUDIENCE.into());
        assert_eq!(empty.verify(&a), Err(AuthError::InvalidToken));
        empty.replace_jwk_set(&rotated).unwrap();
        assert!(empty.verify(&b).is_ok());
    }

    #[test]
    fn a_verified_token_is_remembered_until_its_expiry_and_only_by_its_exact_text() {
        let v = verifier();
        let exp = now() + 600;
        let token = sign(&with(json!({"exp": exp})));
        let at = |offset: i64| u64::try_from(exp + offset).unwrap();
        let leeway = i64::try_from(LEEWAY_SECS).unwrap();
        assert_eq!(
            v.remembered(&token, 0, at(-600)),
            None,
            "not before a check"
        );
        let principal = v.verify(&token).unwrap();
        assert_eq!(v.remembered(&token, 0, at(-600)), Some(principal.clone()));
        assert_eq!(v.remembered(&token, 0, at(leeway - 1)), Some(principal));
        assert_eq!(
            v.remembered(&token, 0, at(leeway)),
            None,
            "past exp + leeway"
        );
        assert_eq!(v.remembered(&token, 1, at(-600)), None, "another key set");
        // One character more or less is another text, checked in full (and refused).
        for tampered in [format!("{token}x"), token[..token.len() - 1].to_owned()] {
            assert_eq!(v.remembered(&tampered, 0, at(-600)), None);
            assert_eq!(v.verify(&tampered), Err(AuthError::InvalidToken));
        }
        // A refused token is never remembered.
        let expired = sign(&with(json!({"exp": now() - 3600})));
        assert_eq!(v.verify(&expired), Err(AuthError::InvalidToken));
        assert_eq!(v.remembered(&expired, 0, 0), None);
    }

    #[test]
    fn a_replaced_key_set_forgets_the_tokens_verified_before() {
        let set = jwks_verifier(json!([ec_jwk("a", EC_A)])).unwrap();
        let a = es256(EC_A_PRIVATE, "a");
        assert!(set.verify(&a).is_ok());
        let generation = set.keys().generation;
        assert!(set.remembered(&a, generation, 0).is_some());
        // The same key under a new set: checked again, and passing again.
        set.replace_jwk_set(&json!({"keys": [ec_jwk("a", EC_A)]}).to_string())
            .unwrap();
        assert!(set.remembered(&a, generation, 0).is_none());
        assert!(set.remembered(&a, set.keys().generation, 0).is_none());
        assert!(set.verify(&a).is_ok());
        assert!(set.remembered(&a, set.keys().generation, 0).is_some());
    }

    #[test]
    fn an_expiry_with_a_fraction_is_a_numeric_date() {
        let token = sign(&with(
            json!({"exp": f64::from(u32::try_from(now() + 600).unwrap()) + 0.5}),
        ));
        assert!(verify(&token).is_ok());
    }

    #[test]
    fn an_unknown_kid_calls_the_hook_and_a_known_one_does_not() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let set = jwks_verifier(json!([ec_jwk("a", EC_A)]))
            .unwrap()
            .on_unknown_kid(Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }));
        assert!(set.verify(&es256(EC_A_PRIVATE, "a")).is_ok());
        // Known kid, wrong signature: not a reason to refetch.
        assert!(set.verify(&es256(EC_B_PRIVATE, "a")).is_err());
        assert!(set.verify("not-a-token").is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(set.verify(&es256(EC_B_PRIVATE, "b")).is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(Verifier::hs256(b"short", None, None).is_err());
        assert!(mint_hs256(b"short", &request("u", false)).is_err());
    }

    fn request(subject: &str, admin: bool) -> TokenRequest<'_> {
        TokenRequest {
            subject,
            admin,
            ttl: Duration::from_secs(3600),
            issuer: Some(ISSUER),
            audience: Some(AUDIENCE),
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let admin = mint_hs256(SECRET, &request("ops", true)).unwrap();
        assert_eq!(
            verify(&admin),
            Ok(Principal {
                subject: "ops".into(),
                admin: true
            })
        );
        let user = mint_hs256(SECRET, &request("u", false)).unwrap();
        assert_eq!(verify(&user).map(|p| p.admin), Ok(false));
    }

    #[test]
    fn bearer_credentials_are_read_from_the_authorization_header() {
        let auth = Authentication::new(Some(verifier()));
        let token = sign(&claims());
        for header in [format!("Bearer {token}"), format!("bearer  {token} ")] {
            assert!(
                auth.authenticate(Some(header.as_bytes())).is_ok(),
                "{header}"
            );
        }
        for missing in [None, Some(&b"Bearer "[..]), Some(b"Basic abc"), Some(b"")] {
            assert_eq!(auth.authenticate(missing), Err(AuthError::MissingToken));
        }
        assert_eq!(
            auth.authenticate(Some(b"Bearer \xff.x.y")),
            Err(AuthError::InvalidToken)
        );
        // Off: nothing is looked at.
        assert_eq!(
            Authentication::default().authenticate(Some(b"Bearer junk")),
            Ok(None)
        );
    }

    #[test]
    fn refusals_carry_the_rfc_6750_challenge() {
        let challenge = |err: AuthError| {
            let response = ApiError::from(err).error_response();
            (
                response.status().as_u16(),
                response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            )
        };
        assert_eq!(
            challenge(AuthError::MissingToken),
            (401, Some(r#"Bearer error="invalid_token""#.into()))
        );
        assert_eq!(
            challenge(AuthError::InvalidToken),
            (401, Some(r#"Bearer error="invalid_token""#.into()))
        );
        assert_eq!(
            challenge(AuthError::InsufficientScope(ADMIN_SCOPE)),
            (
                403,
                Some(r#"Bearer error="insufficient_scope", scope="shop:admin""#.into())
            )
        );
    }
}

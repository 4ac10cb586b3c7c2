//! [`Verifier`]: the [`TokenVerifier`] port on JWTs (RFC 7519) checked against the keys the
//! server trusts: one HS256 secret, or the public keys of a JWK set (RFC 7517), from a file
//! or fetched by [`crate::jwks::JwksRefresher`].

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use domain::identity::{ADMIN_SCOPE, InvalidToken, Principal};
use domain::ports::{ComponentStatus, TokenVerifier};
use domain::user::Subject;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How far a token's `exp` and `nbf` may be off the server's clock.
pub const LEEWAY_SECS: u64 = 60;

/// The shortest HS256 secret accepted: a key as long as the hash (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// How many bytes of verified tokens a verifier remembers at most, so that a client's next
/// request with the same token skips the signature check (an RS256 check costs about
/// 110 µs of CPU, an ES256 one about 360 µs; see docs/benchmarks.md). Each remembered token
/// weighs its own length, its principal's subject and issuer, and [`ENTRY_OVERHEAD`]; the
/// least recently useful go first. So the cache holds at most 4 MiB of such weight, and
/// never more than 4 MiB / 256 B = 16,384 tokens, however long the tokens are.
pub const REMEMBERED_BYTES: u64 = 4 << 20;

/// What one remembered token weighs beyond its text and principal: the cache's own
/// bookkeeping, the key's box and the principal's strings' headers.
pub const ENTRY_OVERHEAD: u64 = 256;

/// One key the server trusts, with the one algorithm it verifies: the algorithm comes
/// from the key's type, never from the token, so `alg: none` and algorithm confusion
/// (an HMAC token against a public key, or the reverse) find no key.
struct TrustedKey {
    /// The `kid` a token names this key by, together with its algorithm; `None` matches
    /// a token of its algorithm without a `kid` or with one no other key has.
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
    #[serde(default)]
    iss: Option<String>,
}

/// The keys trusted at one time. `generation` counts the replacements, so a token
/// verified with an earlier set is never taken as verified by a later one.
struct KeySet {
    generation: u64,
    keys: Vec<TrustedKey>,
    /// When a fetch last brought keys (fetched sets only: a secret or a file does not age).
    fetched_at: Option<Instant>,
}

/// A token that passed every check: whom it names, with which keys, and until when (its
/// `exp` plus the leeway, Unix seconds) it may be taken without checking it again.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    generation: u64,
    until: u64,
}

/// Weighs a remembered token by its bytes (see [`REMEMBERED_BYTES`]).
#[derive(Debug, Clone, Copy)]
struct TokenWeight;

impl quick_cache::Weighter<Box<str>, Verified> for TokenWeight {
    fn weight(&self, token: &Box<str>, verified: &Verified) -> u64 {
        let subject = &verified.principal.subject;
        let bytes = token.len() + subject.sub().len() + subject.issuer().len();
        u64::try_from(bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(ENTRY_OVERHEAD)
    }
}

/// What a verifier does when a token names a `kid` it holds no key for: typically,
/// wake whatever refetches the JWK set. Called on the request path, so it must return
/// at once (never fetch in place).
pub type UnknownKidHook = Arc<dyn Fn() + Send + Sync>;

/// Checks bearer tokens: the signature with a trusted key, `exp` and `nbf` (required:
/// `exp`; both with [`LEEWAY_SECS`]), `iss` and `aud` when configured (then required;
/// without a configured issuer, a token naming any issuer is refused), and a `sub` that
/// is a valid [`Subject`] within the issuer.
///
/// The keys of a JWK set can be replaced while the verifier is in use
/// ([`Verifier::replace_jwk_set`]): a check takes the current set under a read lock held
/// only to clone an `Arc`, so it never waits for a fetch. Fetched keys may be given a
/// maximum age ([`Verifier::with_max_key_age`]): past it without a successful fetch, every
/// token is refused, since a key the provider withdrew would otherwise verify forever.
///
/// A token that passed is remembered by its exact text (up to [`REMEMBERED_BYTES`]) until
/// its `exp` plus the leeway, so the signature of a client's token is checked once per
/// instance, not on every request. Any other text (one changed character) is checked in
/// full; a replaced key set forgets every token verified before.
pub struct Verifier {
    keys: RwLock<Arc<KeySet>>,
    verified: quick_cache::sync::Cache<Box<str>, Verified, TokenWeight>,
    issuer: Option<String>,
    audience: Option<String>,
    max_key_age: Option<Duration>,
    on_unknown_kid: Option<UnknownKidHook>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys().keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("max_key_age", &self.max_key_age)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    fn with_keys(keys: KeySet, issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            verified: quick_cache::sync::Cache::with_weighter(
                10_000,
                REMEMBERED_BYTES,
                TokenWeight,
            ),
            issuer,
            audience,
            max_key_age: None,
            on_unknown_kid: None,
        }
    }

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
        let keys = KeySet {
            generation: 0,
            keys: vec![TrustedKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key,
            }],
            fetched_at: None,
        };
        Ok(Self::with_keys(keys, issuer, audience))
    }

    /// A verifier of tokens signed with the public keys of a JWK set read from a file (the
    /// keys do not age): see [`Verifier::replace_jwk_set`] for which keys are taken. With
    /// public keys from elsewhere, the issuer and the audience are required.
    ///
    /// # Errors
    /// When the set cannot be read or holds no usable key.
    pub fn from_jwk_set(json: &str, issuer: String, audience: String) -> anyhow::Result<Self> {
        let keys = KeySet {
            generation: 0,
            keys: read_jwk_set(json)?,
            fetched_at: None,
        };
        Ok(Self::with_keys(keys, Some(issuer), Some(audience)))
    }

    /// A verifier for the keys of a JWK set not fetched yet: it refuses every token until
    /// [`Verifier::replace_jwk_set`] gives it keys.
    pub fn without_keys(issuer: String, audience: String) -> Self {
        let keys = KeySet {
            generation: 0,
            keys: Vec::new(),
            fetched_at: None,
        };
        Self::with_keys(keys, Some(issuer), Some(audience))
    }

    /// Calls `hook` whenever a token names a `kid` the verifier holds no key for.
    #[must_use]
    pub fn on_unknown_kid(self, hook: UnknownKidHook) -> Self {
        Self {
            on_unknown_kid: Some(hook),
            ..self
        }
    }

    /// Refuses every token once the keys a fetch brought are older than `max_age` (none
    /// fetched since); keys from a secret or a file do not age.
    #[must_use]
    pub fn with_max_key_age(self, max_age: Duration) -> Self {
        Self {
            max_key_age: Some(max_age),
            ..self
        }
    }

    /// How many keys the verifier holds now.
    pub fn key_count(&self) -> usize {
        self.keys().keys.len()
    }

    /// Replaces the keys with those of the fetched JWK set `json` and returns how many
    /// there are now; the keys count as fetched now.
    ///
    /// An RSA key verifies RS256 only, a P-256 key ES256 only, each found by the token's
    /// `kid` and algorithm together. Keys of another type, for encryption, naming another
    /// algorithm, or that cannot be read are skipped, each with a warning naming its `kid`.
    ///
    /// # Errors
    /// When the set cannot be read or holds no usable key: the keys held are then kept.
    pub fn replace_jwk_set(&self, json: &str) -> anyhow::Result<usize> {
        let keys = read_jwk_set(json)?;
        let count = keys.len();
        {
            let mut held = self.keys.write().unwrap_or_else(PoisonError::into_inner);
            *held = Arc::new(KeySet {
                generation: held.generation.wrapping_add(1),
                keys,
                fetched_at: Some(Instant::now()),
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

    /// Why the keys cannot be trusted now, if they cannot.
    fn stale(&self, keys: &KeySet) -> Option<&'static str> {
        let max_age = self.max_key_age?;
        match keys.fetched_at {
            None if keys.keys.is_empty() => Some("no key set fetched yet"),
            None => None,
            Some(at) if at.elapsed() > max_age => {
                Some("the key set is older than its maximum age and no fetch has succeeded since")
            }
            Some(_) => None,
        }
    }

    /// The principal `token` names.
    ///
    /// # Errors
    /// [`InvalidToken`] for any token that does not pass every check.
    pub fn verify(&self, token: &str) -> Result<Principal, InvalidToken> {
        let keys = self.keys();
        if self.stale(&keys).is_some() {
            return Err(InvalidToken);
        }
        if let Some(principal) = self.remembered(token, keys.generation, unix_now()) {
            return Ok(principal);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken)?;
        let of_alg = |k: &&TrustedKey| k.algorithm == header.alg;
        let Some(trusted) = keys
            .keys
            .iter()
            .filter(of_alg)
            .find(|k| k.kid.is_some() && k.kid == header.kid)
            .or_else(|| keys.keys.iter().filter(of_alg).find(|k| k.kid.is_none()))
        else {
            if header.kid.is_some()
                && !keys.keys.iter().any(|k| k.kid == header.kid)
                && let Some(hook) = &self.on_unknown_kid
            {
                hook();
            }
            return Err(InvalidToken);
        };
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &trusted.key,
            &self.validation(trusted.algorithm),
        )
        .map_err(|_| InvalidToken)?;
        let Claims {
            sub,
            exp,
            scope,
            iss,
        } = data.claims;
        // With an issuer configured the validation required it; without one, a token that
        // names an issuer comes from somewhere the server was not told to trust.
        if self.issuer.is_none() && iss.is_some() {
            return Err(InvalidToken);
        }
        let subject = Subject::new(Subject::issuer_of(self.issuer.as_deref()), &sub)
            .map_err(|_| InvalidToken)?;
        let principal = Principal {
            subject,
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

    /// The weight of the tokens remembered now (see [`REMEMBERED_BYTES`]).
    pub fn remembered_weight(&self) -> u64 {
        self.verified.weight()
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

impl TokenVerifier for Verifier {
    fn verify(&self, token: &str) -> Result<Principal, InvalidToken> {
        Verifier::verify(self, token)
    }
}

/// The state of fetched keys in the readiness detail: down before the first fetch and
/// once they are older than their maximum age (tokens are refused then).
impl ComponentStatus for Verifier {
    fn name(&self) -> &'static str {
        "identityKeys"
    }

    fn status(&self) -> Result<(), String> {
        match self.stale(&self.keys()) {
            Some(why) => Err(format!("{why}: bearer tokens are refused")),
            None => Ok(()),
        }
    }
}

/// The usable keys of the JWK set `json`: each key is read on its own, so one that cannot
/// be read, or is not for RS256 or ES256 signatures, is skipped with a warning naming its
/// `kid` and the others are kept.
fn read_jwk_set(json: &str) -> anyhow::Result<Vec<TrustedKey>> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet =
        serde_json::from_str(json).map_err(|e| anyhow::anyhow!("reading the JWK set: {e}"))?;
    let mut keys = Vec::new();
    for raw in set.keys {
        let named_kid = raw
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let jwk: Jwk = match serde_json::from_value(raw) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::warn!(kid = ?named_kid, error = %e, "JWK that cannot be read skipped");
                continue;
            }
        };
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
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push(TrustedKey {
                kid,
                algorithm,
                key,
            }),
            Err(e) => tracing::warn!(?kid, error = %e, "JWK that cannot be read skipped"),
        }
    }
    if keys.is_empty() {
        anyhow::bail!("the JWK set holds no RS256 or ES256 signing key");
    }
    Ok(keys)
}

/// A NumericDate's whole seconds: 0 for a negative one or NaN, `u64::MAX` past it (an
/// `as` cast saturates).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole_seconds(date: f64) -> u64 {
    date.floor() as u64
}

/// Seconds since the Unix epoch (0 for a clock before it, which no token passes).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, get_current_timestamp};
    use serde_json::{Value, json};

    use jsonwebtoken::{EncodingKey, Header};

    use super::*;
    use crate::mint::{TokenRequest, mint_hs256};
    use crate::test_keys::{self, EC_A, EC_A_PRIVATE, EC_B, EC_B_PRIVATE, ec_jwk};

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

    fn verify(token: &str) -> Result<Principal, InvalidToken> {
        verifier().verify(token)
    }

    #[test]
    fn the_right_token_names_its_subject() {
        assert_eq!(
            verify(&sign(&claims())),
            Ok(Principal {
                subject: Subject::new(ISSUER, "user-1").unwrap(),
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
            assert_eq!(verify(bad), Err(InvalidToken), "{bad}");
        }
    }

    #[test]
    fn expiry_and_not_before_are_checked_with_a_minute_of_leeway() {
        let at = |claim: &str, offset: i64| verify(&sign(&with(json!({claim: now() + offset}))));
        assert_eq!(at("exp", -120), Err(InvalidToken));
        assert!(at("exp", -30).is_ok(), "within the leeway");
        assert_eq!(at("nbf", 120), Err(InvalidToken));
        assert!(at("nbf", 30).is_ok(), "within the leeway");
        // A claim of the wrong type is refused, not skipped.
        for claim in ["exp", "nbf"] {
            let token = sign(&with(json!({claim: "99999999999"})));
            assert_eq!(verify(&token), Err(InvalidToken), "{claim}");
        }
        assert_eq!(
            verify(&sign(&with(json!({"exp": null})))),
            Err(InvalidToken),
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
                Err(InvalidToken),
                "{changes}"
            );
        }
        assert!(verify(&sign(&with(json!({"aud": ["other", AUDIENCE]})))).is_ok());
    }

    #[test]
    fn without_an_issuer_configured_a_token_naming_one_is_refused_and_aud_is_not_checked() {
        let open = Verifier::hs256(SECRET, None, None).unwrap();
        let token = sign(&with(json!({"iss": "anyone", "aud": "anything"})));
        assert_eq!(
            open.verify(&token),
            Err(InvalidToken),
            "an issuer nobody configured"
        );
        let token = sign(&with(json!({"iss": null, "aud": "anything"})));
        assert_eq!(
            open.verify(&token),
            Ok(Principal {
                subject: Subject::new("", "user-1").unwrap(),
                admin: false
            }),
            "no issuer: the secret's own subjects"
        );
        assert!(
            open.verify(&sign(&json!({"sub": "u", "exp": now() + 60})))
                .is_ok()
        );
    }

    #[test]
    fn one_sub_from_two_issuers_is_two_principals() {
        let other = Verifier::hs256(
            SECRET,
            Some("https://other.example".into()),
            Some(AUDIENCE.into()),
        )
        .unwrap();
        let mine = verify(&sign(&claims())).unwrap();
        let theirs = other
            .verify(&sign(&with(json!({"iss": "https://other.example"}))))
            .unwrap();
        assert_eq!(mine.subject.sub(), theirs.subject.sub());
        assert_ne!(mine.subject, theirs.subject);
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let payload = b64(claims().to_string().as_bytes());
        let unsigned = |alg: &str| {
            let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
            format!("{header}.{payload}.")
        };
        for alg in ["none", "None", "NONE"] {
            assert_eq!(verify(&unsigned(alg)), Err(InvalidToken), "{alg}");
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
        assert_eq!(verify(&format!("{message}.{signature}")), Err(InvalidToken));
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
        assert_eq!(verify(&hs512), Err(InvalidToken));
    }

    /// An RSA public key, made for these tests only.
    const RSA_N: &str = "tlIXWhS8xB89vlven5dGFKoctDs6VhstzaHJ8F5wSFcFLAo7FvT9BcdMULEKdlBzhOqPWs6DPcGukYhL6L-Oqq3bNOhbW8C_YFnLCg57sfGPxbI86WRx__U0gprOg-r7PruAqUmJfeNHqKEVggS2cyDHkhGVRnYJdW32ap2HoEN2TRFR0FJ05Olt2sgg13rUpoiTsCYRJD_DeGp3oiUZcG0MEPIAznpSCgCTrqQ3Cd1oa1pPt7PAVw56lJrF8S3KS3oK7pvvnZSuE9-3vds02_GYhHRt1JizN_xD6h5dheb98ly_VbkdgbCS6Xx7spG67ozXynq_40avlQQIWYV57Q";

    fn jwks_verifier(keys: Value) -> anyhow::Result<Verifier> {
        Verifier::from_jwk_set(
            &json!({ "keys": keys }).to_string(),
            ISSUER.into(),
            AUDIENCE.into(),
        )
    }

    fn es256(private: &str, kid: &str) -> String {
        test_keys::es256(private, kid, &claims())
    }

    #[test]
    fn a_jwk_set_verifies_es256_tokens_by_kid() {
        let set = jwks_verifier(json!([ec_jwk("a", EC_A), ec_jwk("b", EC_B)])).unwrap();
        assert!(set.verify(&es256(EC_A_PRIVATE, "a")).is_ok());
        assert!(set.verify(&es256(EC_B_PRIVATE, "b")).is_ok());
        // Signed by one key, naming the other.
        assert_eq!(set.verify(&es256(EC_A_PRIVATE, "b")), Err(InvalidToken));
        // A key the set does not hold (a rotated-out or a foreign key).
        let only_b = jwks_verifier(json!([ec_jwk("b", EC_B)])).unwrap();
        assert_eq!(only_b.verify(&es256(EC_A_PRIVATE, "a")), Err(InvalidToken));
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
            assert_eq!(set.verify(&token), Err(InvalidToken), "{kid}");
        }
        // An ES256 token naming the RSA key's kid is refused too.
        assert_eq!(set.verify(&es256(EC_A_PRIVATE, "r")), Err(InvalidToken));
    }

    #[test]
    fn unusable_jwks_are_skipped_and_a_set_without_a_usable_key_is_refused() {
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        let enc = json!({"kty": "EC", "crv": "P-256", "x": EC_A.0, "y": EC_A.1, "kid": "e", "use": "enc"});
        let other_alg = json!({"kty": "EC", "crv": "P-256", "x": EC_A.0, "y": EC_A.1, "kid": "o", "alg": "RS256"});
        assert!(jwks_verifier(json!([oct.clone(), enc.clone(), other_alg.clone()])).is_err());
        assert!(jwks_verifier(json!([])).is_err());
        assert!(Verifier::from_jwk_set("not json", ISSUER.into(), AUDIENCE.into()).is_err());
        // A key that cannot be read (a modulus that is not base64url, an unknown type,
        // no `x`) is skipped; the others are kept.
        let broken = json!({"kty": "RSA", "n": "!!!", "e": "AQAB", "kid": "broken"});
        let unknown_type = json!({"kty": "XYZ", "kid": "unknown"});
        let no_x = json!({"kty": "EC", "crv": "P-256", "y": EC_A.1, "kid": "no-x"});
        let set = jwks_verifier(json!([
            oct,
            enc,
            other_alg,
            broken,
            unknown_type,
            no_x,
            ec_jwk("a", EC_A)
        ]))
        .unwrap();
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
        assert_eq!(set.verify(&b), Err(InvalidToken));
        let rotated = json!({"keys": [ec_jwk("b", EC_B)]}).to_string();
        assert_eq!(set.replace_jwk_set(&rotated).unwrap(), 1);
        assert!(set.verify(&b).is_ok());
        assert_eq!(set.verify(&a), Err(InvalidToken), "rotated out");
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
        assert_eq!(empty.verify(&a), Err(InvalidToken));
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
            assert_eq!(v.verify(&tampered), Err(InvalidToken));
        }
        // A refused token is never remembered.
        let expired = sign(&with(json!({"exp": now() - 3600})));
        assert_eq!(v.verify(&expired), Err(InvalidToken));
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
                subject: Subject::new(ISSUER, "ops").unwrap(),
                admin: true
            })
        );
        let user = mint_hs256(SECRET, &request("u", false)).unwrap();
        assert_eq!(verify(&user).map(|p| p.admin), Ok(false));
    }

    #[test]
    fn a_kid_is_matched_together_with_the_algorithm() {
        // One kid for an RSA and a P-256 key, the RSA one first: an ES256 token naming the
        // kid is checked with the P-256 key.
        let rsa = json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "k"});
        let set = jwks_verifier(json!([rsa, ec_jwk("k", EC_A)])).unwrap();
        assert_eq!(set.key_count(), 2);
        assert!(set.verify(&es256(EC_A_PRIVATE, "k")).is_ok());
        assert_eq!(set.verify(&es256(EC_B_PRIVATE, "k")), Err(InvalidToken));
    }

    #[test]
    fn fetched_keys_past_their_maximum_age_refuse_every_token_until_a_fetch_succeeds() {
        let set = Verifier::without_keys(ISSUER.into(), AUDIENCE.into())
            .with_max_key_age(Duration::from_millis(200));
        assert!(set.status().is_err(), "nothing fetched yet");
        let keys = json!({"keys": [ec_jwk("a", EC_A)]}).to_string();
        set.replace_jwk_set(&keys).unwrap();
        let a = es256(EC_A_PRIVATE, "a");
        assert!(set.verify(&a).is_ok());
        assert_eq!(set.status(), Ok(()));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(set.verify(&a), Err(InvalidToken), "remembered or not");
        let down = set.status().unwrap_err();
        assert!(down.contains("refused"), "{down}");
        set.replace_jwk_set(&keys).unwrap();
        assert!(set.verify(&a).is_ok(), "a fetch trusts them again");
        // Keys from a file or a secret do not age.
        let file = jwks_verifier(json!([ec_jwk("a", EC_A)]))
            .unwrap()
            .with_max_key_age(Duration::ZERO);
        assert!(file.verify(&a).is_ok());
        assert_eq!(file.status(), Ok(()));
    }

    #[test]
    fn remembered_tokens_are_bounded_by_bytes_however_long_they_are() {
        let v = verifier();
        let pad = "x".repeat(100 * 1024);
        for i in 0..200 {
            let token = sign(&with(json!({"pad": pad, "n": i})));
            assert!(token.len() > 100 * 1024);
            assert!(v.verify(&token).is_ok());
        }
        let weight = v.remembered_weight();
        assert!(
            weight <= REMEMBERED_BYTES,
            "200 tokens of 133 KiB weigh {weight} bytes"
        );
        assert!(weight > 0, "some are remembered");
    }
}

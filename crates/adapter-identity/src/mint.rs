//! Minting HS256 tokens: for `shop-server token` (development and operations against a
//! server that trusts one secret) and for tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::identity::ADMIN_SCOPE;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::verifier::MIN_SECRET_BYTES;

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

//! Keys and tokens of the unit tests: two P-256 key pairs (PKCS #8 DER, and the public
//! point), made for these tests only.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

pub(crate) const EC_A_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgERaQ0ERV+hqS10NhlMryJsZXpUl6yV7MCR7STkxXZzehRANCAASwz+XB9KtsMWH8QReGCI2KYCykZ8y/JaKEWRd8XCxEGZVgbC/L87nNPBYRSb+lPHUk2EiTpRrKCAxI4ZMPPF27";
pub(crate) const EC_A: (&str, &str) = (
    "sM_lwfSrbDFh_EEXhgiNimAspGfMvyWihFkXfFwsRBk",
    "lWBsL8vzuc08FhFJv6U8dSTYSJOlGsoIDEjhkw88Xbs",
);
pub(crate) const EC_B_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPf/74t0FuZKXHvudDmX5WW9ddWaaVsS2nxMaMN7PW/6hRANCAAR8a4ec9eqqEIK50vFxrLr/Ft2X1YZEGv6b+LuDO4fCbMj0CHG9Oam8kZaXxzWZ/UNwV0Fo75WniMTkrnSpyENh";
pub(crate) const EC_B: (&str, &str) = (
    "fGuHnPXqqhCCudLxcay6_xbdl9WGRBr-m_i7gzuHwmw",
    "yPQIcb05qbyRlpfHNZn9Q3BXQWjvlaeIxOSudKnIQ2E",
);

/// The public JWK of the point `(x, y)`, for ES256 signatures, named `kid`.
pub(crate) fn ec_jwk(kid: &str, (x, y): (&str, &str)) -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"})
}

/// `claims` signed ES256 with the private key `private`, naming `kid`.
pub(crate) fn es256(private: &str, kid: &str, claims: &Value) -> String {
    let der = base64::engine::general_purpose::STANDARD
        .decode(private)
        .unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_ec_der(&der)).unwrap()
}

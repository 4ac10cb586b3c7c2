//! The admin API's gate: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant
//! time. Runs before any extractor, so an unauthorised request learns nothing about
//! its body's validity.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::problem::ApiError;

/// The configured token, kept only as its SHA-256 digest: comparing digests takes the
/// same time whatever the presented token's length or content.
#[derive(Clone)]
pub struct AdminToken(Option<[u8; 32]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AdminToken")
            .field(&self.0.map(|_| "<configured>"))
            .finish()
    }
}

impl AdminToken {
    /// `None` disables the admin API (every call gets 403 `ADMIN_DISABLED`).
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| Sha256::digest(t.as_bytes()).into()))
    }

    /// Checks an `Authorization` header value.
    ///
    /// # Errors
    /// 403 `ADMIN_DISABLED` without a configured token; 401 `UNAUTHORIZED` for a
    /// missing, malformed or wrong one.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), ApiError> {
        let Some(expected) = &self.0 else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ADMIN_DISABLED",
                "the admin API is disabled: no ADMIN_TOKEN is configured",
            ));
        };
        let presented = authorization
            .and_then(bearer_token)
            .map(|token| Sha256::digest(token.trim_ascii()));
        match presented {
            Some(digest) if bool::from(digest.as_slice().ct_eq(expected)) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "a valid admin bearer token is required",
            )),
        }
    }
}

/// The credentials of a `Bearer` authorization: the scheme name is case-insensitive
/// (RFC 9110 §11.1), so `bearer` and `BEARER` work as `Bearer` does.
fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = authorization.split_at_checked(b"Bearer ".len())?;
    scheme.eq_ignore_ascii_case(b"Bearer ").then_some(token)
}

/// Middleware for the admin scope.
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let verdict = match req.app_data::<web::Data<AdminToken>>() {
        Some(token) => token.check(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(header::HeaderValue::as_bytes),
        ),
        None => AdminToken::new(None).check(None),
    };
    verdict?;
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let gate = AdminToken::new(Some("s3cret"));
        for good in [&b"Bearer s3cret"[..], b"bearer s3cret", b"BEARER s3cret"] {
            assert!(gate.check(Some(good)).is_ok());
        }
        for bad in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"s3cret",
            b"Basic s3cret",
            b"Bearer ",
            b"Bearers3cret",
            b"Beare",
        ] {
            assert_eq!(gate.check(Some(bad)).unwrap_err().code(), "UNAUTHORIZED");
        }
        assert_eq!(gate.check(None).unwrap_err().code(), "UNAUTHORIZED");
    }

    #[test]
    fn without_a_token_the_admin_api_is_disabled() {
        let gate = AdminToken::new(None);
        let err = gate.check(Some(b"Bearer anything")).unwrap_err();
        assert_eq!((err.status().as_u16(), err.code()), (403, "ADMIN_DISABLED"));
    }
}

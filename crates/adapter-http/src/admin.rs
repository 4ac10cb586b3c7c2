//! The admin API's gate: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant
//! time, or, with end-user authentication on, a bearer token whose scope holds
//! [`ADMIN_SCOPE`]. Runs before any extractor, so an unauthorised request learns
//! nothing about its body's validity.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{ADMIN_SCOPE, AuthError, Authentication, bearer_token};
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
        if self.0.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ADMIN_DISABLED",
                "the admin API is disabled: no ADMIN_TOKEN is configured",
            ));
        }
        if self.matches(authorization) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "a valid admin bearer token is required",
            ))
        }
    }

    /// Whether a token is configured and `authorization` presents it.
    fn matches(&self, authorization: Option<&[u8]>) -> bool {
        let (Some(expected), Some(token)) = (&self.0, bearer_token(authorization)) else {
            return false;
        };
        bool::from(Sha256::digest(token).as_slice().ct_eq(expected))
    }
}

/// The admin gate's verdict on an `Authorization` header: the static token passes;
/// with end-user authentication on, so does a valid token with [`ADMIN_SCOPE`], and
/// any other is refused as RFC 6750 says (401 for a missing or invalid token, 403
/// for one without the scope). With it off, [`AdminToken::check`] decides alone.
///
/// # Errors
/// The refusal, as above.
pub fn authorise(
    token: &AdminToken,
    auth: &Authentication,
    authorization: Option<&[u8]>,
) -> Result<(), ApiError> {
    if token.matches(authorization) {
        return Ok(());
    }
    if auth.verifier().is_none() {
        return token.check(authorization);
    }
    match auth.authenticate(authorization)? {
        Some(principal) if principal.admin => Ok(()),
        _ => Err(AuthError::InsufficientScope(ADMIN_SCOPE).into()),
    }
}

/// Middleware for the admin scope.
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(header::HeaderValue::as_bytes);
    let disabled = AdminToken::new(None);
    let token = req
        .app_data::<web::Data<AdminToken>>()
        .map_or(&disabled, |t| t.get_ref());
    let off = Authentication::default();
    let auth = req
        .app_data::<web::Data<Authentication>>()
        .map_or(&off, |a| a.get_ref());
    authorise(token, auth, authorization)?;
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

    /// End-user authentication on, with a verifier that takes `admin-jwt` as an admin's
    /// token and `user-jwt` as a user's.
    fn jwt_on() -> Authentication {
        let mut verifier = domain::ports::MockTokenVerifier::new();
        verifier.expect_verify().returning(|token| {
            let admin = match token {
                "admin-jwt" => true,
                "user-jwt" => false,
                _ => return Err(domain::identity::InvalidToken),
            };
            Ok(domain::identity::Principal {
                subject: domain::user::Subject::new("", "ops").unwrap(),
                admin,
            })
        });
        Authentication::new(Some(std::sync::Arc::new(verifier)))
    }

    fn bearer(admin: bool) -> String {
        format!("Bearer {}", if admin { "admin-jwt" } else { "user-jwt" })
    }

    fn verdict(token: &AdminToken, auth: &Authentication, header: Option<&str>) -> (u16, String) {
        match authorise(token, auth, header.map(str::as_bytes)) {
            Ok(()) => (200, String::new()),
            Err(err) => (err.status().as_u16(), err.code().to_owned()),
        }
    }

    #[test]
    fn with_end_user_authentication_on_an_admin_scoped_token_passes_too() {
        let admin = bearer(true);
        let user = bearer(false);
        for token in [AdminToken::new(Some("s3cret")), AdminToken::new(None)] {
            assert_eq!(verdict(&token, &jwt_on(), Some(&admin)).0, 200);
            assert_eq!(
                verdict(&token, &jwt_on(), Some(&user)),
                (403, "FORBIDDEN".into())
            );
            for refused in [None, Some("Bearer junk"), Some("Bearer s3cre")] {
                assert_eq!(
                    verdict(&token, &jwt_on(), refused),
                    (401, "UNAUTHORIZED".into())
                );
            }
        }
        // The static token still passes, compared as before.
        let token = AdminToken::new(Some("s3cret"));
        assert_eq!(verdict(&token, &jwt_on(), Some("Bearer s3cret")).0, 200);
        // With it off, a JWT is just a wrong static token.
        let off = Authentication::default();
        assert_eq!(
            verdict(&token, &off, Some(&admin)),
            (401, "UNAUTHORIZED".into())
        );
        assert_eq!(
            verdict(&AdminToken::new(None), &off, Some(&admin)),
            (403, "ADMIN_DISABLED".into())
        );
    }

    #[test]
    fn without_a_token_the_admin_api_is_disabled() {
        let gate = AdminToken::new(None);
        let err = gate.check(Some(b"Bearer anything")).unwrap_err();
        assert_eq!((err.status().as_u16(), err.code()), (403, "ADMIN_DISABLED"));
    }
}

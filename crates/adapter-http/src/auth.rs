//! End-user authentication at the HTTP edge (RFC 6750): reading the bearer token of a
//! request's `Authorization` header, handing it to the [`TokenVerifier`] port (the
//! identity provider's side, in `adapter-identity`), and answering a refusal with 401
//! `UNAUTHORIZED` or 403 `FORBIDDEN` and the `WWW-Authenticate` challenge RFC 6750 §3 asks
//! for.
//!
//! [`Authentication`] (application data) holds the verifier, or none when authentication
//! is off; the [`Caller`] extractor hands a handler the [`Principal`] a request's token
//! names. Tokens are never logged, nor any part of one; a refusal says nothing about why
//! the token was refused.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use domain::identity::InvalidToken;
pub use domain::identity::{ADMIN_SCOPE, Principal};
use domain::ports::TokenVerifier;

use crate::problem::ApiError;

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

/// Application data: the token verifier when end-user authentication is on, none when off.
#[derive(Clone, Default)]
pub struct Authentication(Option<Arc<dyn TokenVerifier>>);

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Authentication")
            .field(&if self.0.is_some() { "on" } else { "off" })
            .finish()
    }
}

impl Authentication {
    /// Authentication on with `verifier` (shared with whatever refreshes its keys), or off.
    pub fn new(verifier: Option<Arc<dyn TokenVerifier>>) -> Self {
        Self(verifier)
    }

    pub fn verifier(&self) -> Option<&dyn TokenVerifier> {
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
        verifier
            .verify(token)
            .map(Some)
            .map_err(|InvalidToken| AuthError::InvalidToken)
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

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use domain::ports::MockTokenVerifier;
    use domain::user::Subject;

    use super::*;

    /// A verifier that takes the token `good` only.
    fn verifier() -> Arc<dyn TokenVerifier> {
        let mut verifier = MockTokenVerifier::new();
        verifier.expect_verify().returning(|token| {
            (token == "good")
                .then(|| Principal {
                    subject: Subject::new("https://id.example", "u").unwrap(),
                    admin: false,
                })
                .ok_or(InvalidToken)
        });
        Arc::new(verifier)
    }

    #[test]
    fn bearer_credentials_are_read_from_the_authorization_header() {
        let auth = Authentication::new(Some(verifier()));
        for header in ["Bearer good", "bearer  good ", "BEARER good"] {
            assert!(
                auth.authenticate(Some(header.as_bytes()))
                    .is_ok_and(|p| p.is_some()),
                "{header}"
            );
        }
        for missing in [None, Some(&b"Bearer "[..]), Some(b"Basic abc"), Some(b"")] {
            assert_eq!(auth.authenticate(missing), Err(AuthError::MissingToken));
        }
        assert_eq!(
            auth.authenticate(Some(b"Bearer bad")),
            Err(AuthError::InvalidToken)
        );
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

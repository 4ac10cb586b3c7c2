//! Who a user-scoped request acts for: the wallet charged, the orders listed, the coupon
//! issued to.
//!
//! With end-user authentication off, the request names its user (`userId` in the body or
//! the query), and that is required. With it on, the user is the one the bearer token's
//! subject registered (`POST /api/v1/users`); a `userId` the request names anyway must
//! be that user, else 403 `FORBIDDEN` — whether or not the named user exists, so a
//! token says nothing about other users' ids. A token whose subject has not registered
//! acts for no user: 404 `USER_NOT_FOUND` when it names none, 403 when it names one.
//!
//! The subject → user mapping never changes, so it is cached per instance
//! ([`ResolveSubject`](application::users::ResolveSubject)): a known subject costs no
//! round trip.

use actix_web::http::StatusCode;
use application::UseCases;
use application::users::ActingUserError;
use domain::UserId;

use crate::auth::{AuthError, Caller};
use crate::problem::ApiError;
use crate::refusals::Refusals;

/// The name of the field a user-scoped request names its user by.
pub const FIELD: &str = "userId";

/// The user a request by `caller` that names `named` (its `userId`, if any) acts for:
/// the rule is application's ([`ResolveSubject::acting_user`](application::users::ResolveSubject::acting_user)),
/// this reads it from the request and answers it in HTTP.
///
/// # Errors
/// - 400 `VALIDATION_FAILED` on `userId` when `named` is not a positive integer, or is
///   missing with authentication off;
/// - 403 `FORBIDDEN` when `named` is not the token's user;
/// - 404 `USER_NOT_FOUND` when the token's subject has no user and `named` is `None`;
/// - 401 `UNAUTHORIZED` when the token's subject cannot be a shop subject (too long);
/// - 500/503 when the subject cannot be looked up.
pub async fn acting_user(
    use_cases: &UseCases,
    caller: &Caller,
    named: Option<i64>,
) -> Result<UserId, ApiError> {
    let named = named.map(|id| UserId::parse(id, FIELD)).transpose()?;
    let subject = caller.principal().map(|principal| &principal.subject);
    Ok(use_cases
        .resolve_subject
        .acting_user(subject, named)
        .await?)
}

impl From<ActingUserError> for ApiError {
    fn from(err: ActingUserError) -> Self {
        match err {
            ActingUserError::Unnamed => ApiError::validation(FIELD, "is required"),
            ActingUserError::NotYours => not_yours(),
            ActingUserError::Unregistered => ApiError::not_found(
                "USER_NOT_FOUND",
                "the token's subject has no user yet: POST /api/v1/users registers it",
            ),
            ActingUserError::Unknown(e) => ApiError::unknown(&e),
        }
    }
}

fn not_yours() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        "a token acts only for its own user",
    )
}

/// The refusals of [`acting_user`] beyond a user-scoped route's own (its 400 and
/// `USER_NOT_FOUND`), for the OpenAPI document: with authentication on, 401 for a
/// missing or invalid token and 403 for another user's id.
#[derive(Debug)]
pub struct Acting;

impl Refusals for Acting {
    fn refusals() -> Vec<ApiError> {
        vec![AuthError::InvalidToken.into(), not_yours()]
    }
}

//! Who makes a request, as the identity provider says: the [`Principal`] a verified bearer
//! token names. Checking a token is the [`TokenVerifier`](crate::ports::TokenVerifier)
//! port's business.

use crate::user::Subject;

/// The scope that lets a token call the admin API.
pub const ADMIN_SCOPE: &str = "shop:admin";

/// Who made a request, as a verified token says.
///
/// `subject` is the token's issuer and `sub` claim: unique per end user within that
/// issuer. It is not a shop user id; mapping a subject to a user is the users' use cases'
/// business. `admin` is true when the token's `scope` claim (space-separated scopes,
/// RFC 8693 §4.2) contains [`ADMIN_SCOPE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Subject,
    pub admin: bool,
}

/// A bearer token that does not pass: malformed, badly signed, expired, not yet valid, for
/// another issuer or audience, or checked while the keys are too old to trust. It says
/// nothing more on purpose: a client learns nothing about why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bearer token is not valid")]
pub struct InvalidToken;

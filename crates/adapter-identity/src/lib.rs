//! The identity provider's side of end-user authentication, a driven adapter like the
//! database's: the server as an OAuth 2.0 resource server that trusts JWT bearer tokens
//! (RFC 6750) signed with one HS256 secret or with the public keys of a JWK set.
//!
//! - [`Verifier`] implements the domain's [`TokenVerifier`](domain::ports::TokenVerifier)
//!   port: a token in, the [`Principal`](domain::identity::Principal) it names out (its
//!   subject keyed by issuer), or a refusal that says nothing about why. It remembers the
//!   tokens that passed, within a byte budget.
//! - [`JwksRefresher`] fetches a JWK set from its URL and keeps it fresh; fetched keys
//!   have a maximum age.
//! - [`mint_hs256`] makes tokens for `shop-server token` and tests.
//!
//! Reading the `Authorization` header and answering a refusal with the RFC 6750
//! challenge are the HTTP adapter's business. Tokens are never logged, nor any part of one.

pub mod jwks;
mod mint;
#[cfg(test)]
mod test_keys;
mod verifier;

pub use jwks::{JwksRefresher, JwksSettings, UNKNOWN_KID_REFETCH_EVERY};
pub use mint::{TokenRequest, mint_hs256};
pub use verifier::{
    ENTRY_OVERHEAD, LEEWAY_SECS, MIN_SECRET_BYTES, REMEMBERED_BYTES, UnknownKidHook, Verifier,
};

//! Users. A user is an id and a creation time; their wallet is created with them. A
//! user may also be known to an identity provider by a [`Subject`], which names that one
//! user for good.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::{UserId, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub created_at: DateTime<Utc>,
}

/// What a read scoped to one user found: the user may not exist at all, which a
/// store tells apart in the same statement that reads their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForUser<T> {
    UnknownUser,
    Found(T),
}

impl<T> ForUser<T> {
    /// What was found, or `None` for an unknown user.
    pub fn found(self) -> Option<T> {
        match self {
            Self::UnknownUser => None,
            Self::Found(found) => Some(found),
        }
    }
}

/// Who a user is to the identity provider: the token's issuer (`iss`, as configured; empty
/// when the server trusts one HS256 secret and no issuer is configured) together with its
/// `sub` claim, compared exactly as given (never trimmed nor case-folded). Subjects are
/// unique only within their issuer, so two providers (or a change of provider) can never
/// map one's user onto another's wallet. `sub`: 1–255 characters; the issuer: at most
/// 2,048; neither holds a control character.
///
/// A subject names at most one user, and the pairing never changes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    issuer: String,
    sub: String,
}

impl Subject {
    pub const MAX_CHARS: usize = 255;
    pub const MAX_ISSUER_CHARS: usize = 2_048;
    /// The issuer of the subjects of a server configured with no issuer (one HS256
    /// secret): empty.
    pub const NO_ISSUER: &'static str = "";

    /// The issuer subjects are keyed by when `configured` is the configured issuer.
    pub fn issuer_of(configured: Option<&str>) -> &str {
        configured.unwrap_or(Self::NO_ISSUER)
    }

    /// # Errors
    /// [`ValidationError`] on `sub` when empty, longer than 255 characters or holding a
    /// control character; on `iss` when longer than 2,048 characters or holding one.
    pub fn new(issuer: &str, sub: &str) -> Result<Self, ValidationError> {
        ValidationError::refuse_control_characters("iss", issuer)?;
        if issuer.chars().count() > Self::MAX_ISSUER_CHARS {
            return Err(ValidationError::new(
                "iss",
                "must be at most 2048 characters",
            ));
        }
        ValidationError::refuse_control_characters("sub", sub)?;
        if sub.is_empty() {
            return Err(ValidationError::new("sub", "must not be empty"));
        }
        if sub.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                "sub",
                "must be at most 255 characters",
            ));
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            sub: sub.to_owned(),
        })
    }

    /// The issuer the subject is unique within (empty: the one HS256 secret's).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `sub` claim.
    pub fn sub(&self) -> &str {
        &self.sub
    }
}

/// A subject is an identifier an identity provider issued, not a secret; it is still
/// shown only in part, as its length, so that logs do not become a directory of users.
impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({} chars)", self.sub.chars().count())
    }
}

/// Whether registering a subject made its user or found the one it already had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The subject was new: its user, with an empty wallet, was created now.
    Created,
    /// The subject already had this user.
    Existing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_kept_exactly_as_given() {
        let subject = Subject::new("https://id.example/", " auth0|Abc ").unwrap();
        assert_eq!(
            (subject.issuer(), subject.sub()),
            ("https://id.example/", " auth0|Abc ")
        );
    }

    #[test]
    fn one_sub_of_two_issuers_is_two_subjects() {
        assert_ne!(
            Subject::new("https://a.example", "u1").unwrap(),
            Subject::new("https://b.example", "u1").unwrap()
        );
        assert_ne!(
            Subject::new("", "u1").unwrap(),
            Subject::new("https://a.example", "u1").unwrap()
        );
    }

    #[test]
    fn a_subject_is_one_to_255_characters() {
        assert_eq!(Subject::new("", "").unwrap_err().field, "sub");
        assert!(Subject::new("", "a").is_ok());
        // Characters, not bytes: 255 two-byte characters are a valid subject.
        assert!(Subject::new("", &"é".repeat(255)).is_ok());
        assert!(Subject::new("", &"é".repeat(256)).is_err());
        assert!(Subject::new(&"i".repeat(2_048), "a").is_ok());
        assert_eq!(
            Subject::new(&"i".repeat(2_049), "a").unwrap_err().field,
            "iss"
        );
    }

    #[test]
    fn a_subject_holds_no_control_character() {
        for raw in ["a\u{0}b", "a\nb", "a\u{1b}b", "a\u{7f}b"] {
            assert_eq!(Subject::new("", raw).unwrap_err().field, "sub", "{raw:?}");
            assert_eq!(Subject::new(raw, "a").unwrap_err().field, "iss", "{raw:?}");
        }
    }

    #[test]
    fn a_subject_is_not_printed_in_debug_output() {
        let subject = Subject::new("https://id.example", "user-1234").unwrap();
        assert_eq!(format!("{subject:?}"), "Subject(9 chars)");
    }
}

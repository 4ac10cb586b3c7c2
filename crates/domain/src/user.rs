//! Users. A user is an id and a creation time; their wallet is created with them.

use chrono::{DateTime, Utc};

use crate::UserId;

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

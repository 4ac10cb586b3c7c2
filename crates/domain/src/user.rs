//! Users. A user is an id and a creation time; their wallet is created with them.

use chrono::{DateTime, Utc};

use crate::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub created_at: DateTime<Utc>,
}

//! Turning diesel and r2d2 failures into the domain's error vocabulary.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use domain::StoreUnavailable;

use crate::retry::Conflicted;

/// An error inside a transaction: either the domain refused, or the database failed.
/// Diesel rolls the transaction back on either.
#[derive(Debug)]
pub(crate) enum TxError<E> {
    Domain(E),
    Db(DieselError),
}

impl<E> From<DieselError> for TxError<E> {
    fn from(err: DieselError) -> Self {
        Self::Db(err)
    }
}

impl<E: From<anyhow::Error>> TxError<E> {
    pub(crate) fn into_domain(self) -> E {
        match self {
            Self::Domain(err) => err,
            Self::Db(err) => E::from(db_error(err)),
        }
    }
}

/// Wraps a diesel error, marking the ones that mean "the database is not reachable
/// or is shedding load" as [`StoreUnavailable`] so callers answer 503, not 500. So is a
/// deadlock or serialization failure that outlasted its retries ([`crate::retry`]).
pub(crate) fn db_error(err: DieselError) -> anyhow::Error {
    let unavailable = err.conflict().is_some()
        || match &err {
            DieselError::DatabaseError(kind, info) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                ) || is_overload_message(info.message())
            }
            _ => false,
        };
    let err = anyhow::Error::new(err);
    if unavailable {
        err.context(StoreUnavailable)
    } else {
        err
    }
}

/// Statement and lock timeouts (SQLSTATE 57014 / 55P03), which diesel reports
/// without a kind or SQLSTATE, and the messages of a server that is going away. These are
/// the server's English texts: [`crate::pool::check_error_language`] makes sure at
/// start-up that the server speaks English to the pool.
pub(crate) fn is_overload_message(message: &str) -> bool {
    const PATTERNS: [&str; 5] = [
        "canceling statement due to statement timeout",
        "canceling statement due to lock timeout",
        "terminating connection",
        "server closed the connection",
        "the database system is",
    ];
    PATTERNS.iter().any(|p| message.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_lost_connections_count_as_unavailable() {
        assert!(is_overload_message(
            "canceling statement due to lock timeout"
        ));
        assert!(is_overload_message("the database system is shutting down"));
        assert!(!is_overload_message(
            "duplicate key value violates unique constraint"
        ));
    }
}

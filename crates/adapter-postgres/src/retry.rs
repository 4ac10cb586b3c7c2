//! Reruns a write that PostgreSQL rolled back to settle a conflict between transactions:
//! a deadlock's victim (SQLSTATE `40P01`) or a serialization failure (`40001`). Neither
//! says anything about the request, so the client never sees one: the whole transaction
//! (or the one autocommit statement) runs again from the start, a few times, after a short
//! jittered backoff, and each rerun is counted in `shop_db_transaction_retries_total`.
//!
//! The happy path costs nothing: no statement is added, and the first attempt starts at
//! once. A conflict that outlasts every attempt is reported as the store being
//! unavailable (503, try again), not as a failure of the request.
//!
//! Only top-level work is retried: never a statement inside an open transaction, which the
//! conflict rolled back as a whole, so only the caller that began it may run it again.

use std::sync::LazyLock;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, PgConnection};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::error::TxError;

/// Reruns after the first attempt.
pub(crate) const MAX_RETRIES: usize = 4;
/// The first backoff (then doubling, up to [`MAX_BACKOFF`]), plus a random share of it.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Why PostgreSQL rolled a transaction back although it did nothing wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// `40P01`: chosen as the victim that breaks a deadlock.
    Deadlock,
    /// `40001`: could not be serialized with concurrent transactions.
    Serialization,
}

impl Conflict {
    fn label(self) -> &'static str {
        match self {
            Self::Deadlock => "deadlock",
            Self::Serialization => "serialization",
        }
    }
}

/// An error that may be a [`Conflict`].
pub(crate) trait Conflicted {
    fn conflict(&self) -> Option<Conflict>;
}

impl Conflicted for DieselError {
    fn conflict(&self) -> Option<Conflict> {
        match self {
            Self::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                Some(Conflict::Serialization)
            }
            // Diesel gives `40P01` no kind or SQLSTATE of its own: its primary message
            // says it (in English: see `crate::pool::check_error_language`).
            Self::DatabaseError(_, info) if is_deadlock_message(info.message()) => {
                Some(Conflict::Deadlock)
            }
            _ => None,
        }
    }
}

impl<E> Conflicted for TxError<E> {
    fn conflict(&self) -> Option<Conflict> {
        match self {
            Self::Db(err) => err.conflict(),
            Self::Domain(_) => None,
        }
    }
}

/// The primary message of SQLSTATE `40P01`.
pub(crate) fn is_deadlock_message(message: &str) -> bool {
    message.starts_with("deadlock detected")
}

/// Runs `work` in one transaction, and again from `BEGIN` when the transaction was rolled
/// back for a [`Conflict`]; anything else (a refusal, another database error) comes back
/// at once. A drop-in for `conn.transaction(work)`.
pub(crate) fn transaction<T, E, F>(conn: &mut PgConnection, mut work: F) -> Result<T, E>
where
    F: FnMut(&mut PgConnection) -> Result<T, E>,
    E: From<DieselError> + Conflicted,
{
    retrying(conn, |conn| conn.transaction(&mut work))
}

/// Runs `attempt` (one autocommit statement, or a whole transaction) again when it fails
/// with a [`Conflict`]. Inside an open transaction it runs once: the conflict rolled the
/// whole transaction back, so only the caller that began it may run it again.
pub(crate) fn retrying<T, E: Conflicted>(
    conn: &mut PgConnection,
    mut attempt: impl FnMut(&mut PgConnection) -> Result<T, E>,
) -> Result<T, E> {
    if in_transaction(conn) {
        attempt(conn)
    } else {
        rerun_on_conflict(|| attempt(conn))
    }
}

fn in_transaction(conn: &mut PgConnection) -> bool {
    // A broken transaction state counts as open: never rerun on it.
    !matches!(
        AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(None)
    )
}

/// The retry policy: at most [`MAX_RETRIES`] reruns, each after a jittered backoff on the
/// calling (blocking) thread, each counted.
fn rerun_on_conflict<T, E: Conflicted>(attempt: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(MIN_BACKOFF)
                .with_max_delay(MAX_BACKOFF)
                .with_max_times(MAX_RETRIES)
                .with_jitter(),
        )
        .when(|err| err.conflict().is_some())
        .notify(|err, wait| {
            if let Some(conflict) = err.conflict() {
                count(conflict);
                tracing::info!(
                    conflict = conflict.label(),
                    ?wait,
                    "transaction rolled back by a conflict; running it again"
                );
            }
        })
        .call()
}

/// Retries so far in this process, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransactionRetries {
    pub deadlock: u64,
    pub serialization: u64,
}

static RETRIES: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "shop_db_transaction_retries_total",
            "Database transactions run again after a deadlock or a serialization failure",
        ),
        &["reason"],
    )
    .ok()
});

fn count(conflict: Conflict) {
    if let Some(retries) = RETRIES.as_ref() {
        retries.with_label_values(&[conflict.label()]).inc();
    }
}

/// How many transactions this process has run again, by cause (what `/metrics` shows).
pub fn transaction_retries() -> TransactionRetries {
    let read = |conflict: Conflict| {
        RETRIES
            .as_ref()
            .map_or(0, |r| r.with_label_values(&[conflict.label()]).get())
    };
    TransactionRetries {
        deadlock: read(Conflict::Deadlock),
        serialization: read(Conflict::Serialization),
    }
}

/// Adds `shop_db_transaction_retries_total{reason="deadlock"|"serialization"}` to
/// `registry` (both series start at zero, so a rate over them is defined from the start).
///
/// # Errors
/// When `registry` already has a metric of that name.
pub fn register_metrics(registry: &Registry) -> prometheus::Result<()> {
    let Some(retries) = RETRIES.as_ref() else {
        return Ok(());
    };
    for conflict in [Conflict::Deadlock, Conflict::Serialization] {
        retries.with_label_values(&[conflict.label()]);
    }
    registry.register(Box::new(retries.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadlock_message_is_recognised_and_nothing_else() {
        assert!(is_deadlock_message("deadlock detected"));
        assert!(!is_deadlock_message(
            "canceling statement due to lock timeout"
        ));
    }

    fn serialization_failure() -> DieselError {
        DieselError::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new(String::from("could not serialize access")),
        )
    }

    #[test]
    fn a_conflict_runs_again_a_bounded_number_of_times_and_each_rerun_is_counted() {
        let before = transaction_retries();
        let mut attempts = 0;
        let outcome = rerun_on_conflict(|| {
            attempts += 1;
            if attempts < 3 {
                Err(serialization_failure())
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(outcome.ok(), Some(3));
        let mut attempts = 0;
        let outcome: Result<(), _> = rerun_on_conflict(|| {
            attempts += 1;
            Err(serialization_failure())
        });
        assert_eq!(attempts, MAX_RETRIES + 1);
        let after = transaction_retries();
        assert_eq!(
            after.serialization - before.serialization,
            2 + MAX_RETRIES as u64
        );
        // Outlasting every retry is the store being unavailable (503), not a 500.
        let err = crate::error::db_error(outcome.unwrap_err());
        assert!(domain::error::is_unavailable(&err), "{err:#}");
    }

    #[test]
    fn inside_an_open_transaction_a_conflict_is_left_to_whoever_began_it() {
        // Deadlocks, not serialization failures: the test above counts those.
        let deadlock = || {
            DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(String::from("deadlock detected")),
            )
        };
        let db = crate::test_support::TestDatabase::create().unwrap();
        let mut conn = PgConnection::establish(db.url()).unwrap();
        let mut attempts = 0;
        let outcome: Result<(), DieselError> = conn.transaction(|conn| {
            retrying(conn, |_| {
                attempts += 1;
                Err(deadlock())
            })
        });
        assert!(outcome.is_err());
        assert_eq!(attempts, 1, "not rerun inside the transaction");
        let mut attempts = 0;
        let _ = retrying(&mut conn, |_| {
            attempts += 1;
            Err::<(), _>(deadlock())
        });
        assert_eq!(attempts, MAX_RETRIES + 1, "rerun at the top level");
    }

    #[test]
    fn a_refusal_or_another_error_is_not_retried() {
        let mut attempts = 0;
        let outcome: Result<(), DieselError> = rerun_on_conflict(|| {
            attempts += 1;
            Err(DieselError::NotFound)
        });
        assert!(outcome.is_err());
        assert_eq!(attempts, 1);
        let outcome: Result<(), TxError<&str>> = rerun_on_conflict(|| {
            attempts += 1;
            Err(TxError::Domain("refused"))
        });
        assert!(matches!(outcome, Err(TxError::Domain("refused"))));
        assert_eq!(attempts, 2);
    }
}

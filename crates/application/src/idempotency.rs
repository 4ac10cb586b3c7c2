//! The Idempotency-Key mechanism shared by every money- or stock-moving POST.
//!
//! A driving adapter calls [`Idempotency::begin`] before running a use case. When it
//! may proceed, it hands the use case a [`domain::idempotency::Completion`] so a
//! success stores its response atomically with its effect; an outcome that changed
//! nothing is recorded with [`Idempotency::finish`], and a failure that should be
//! retried releases the key with [`Idempotency::abandon`].

use std::sync::Arc;

use domain::idempotency::{
    Fingerprint, IdempotencyScope, LEASE, LeaseToken, RETENTION, StoredResponse, Verdict,
};
use domain::ports::{Claim, Clock, IdempotencyStore};

/// Claims, completes and releases idempotency keys.
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
}

/// What the request does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Run the request; complete the key under this token.
    Proceed(LeaseToken),
    /// The request already ran: send this response again.
    Replay(StoredResponse),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("this Idempotency-Key was already used with a different request body")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    InUse,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl Idempotency {
    pub fn new(store: Arc<dyn IdempotencyStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Claims `scope` for a request whose body has `fingerprint`.
    ///
    /// # Errors
    /// - [`IdempotencyError::KeyReused`] when the key was used with another body.
    /// - [`IdempotencyError::InUse`] while an earlier request with the key is running.
    #[tracing::instrument(name = "idempotency_begin", skip_all, fields(key = scope.key.as_str()))]
    pub async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &Fingerprint,
    ) -> Result<Begin, IdempotencyError> {
        let now = self.clock.now();
        let record = match self
            .store
            .claim(scope, fingerprint, now + LEASE, now)
            .await?
        {
            Claim::Acquired(token) => return Ok(Begin::Proceed(token)),
            Claim::Existing(record) => record,
        };
        match record.verdict(fingerprint, now) {
            Verdict::Replay(response) => Ok(Begin::Replay(response)),
            Verdict::Mismatch => Err(IdempotencyError::KeyReused),
            Verdict::InFlight => Err(IdempotencyError::InUse),
            Verdict::TakeOver { stale } => self
                .store
                .take_over(scope, stale, now + LEASE)
                .await?
                .map(Begin::Proceed)
                .ok_or(IdempotencyError::InUse),
        }
    }

    /// Records the response of a request that changed nothing (a refused request), so
    /// retries get the same answer.
    ///
    /// # Errors
    /// Only when the store fails.
    pub async fn finish(
        &self,
        scope: &IdempotencyScope,
        token: LeaseToken,
        response: &StoredResponse,
    ) -> anyhow::Result<()> {
        self.store.complete(scope, token, response).await?;
        Ok(())
    }

    /// Lets go of a key whose request failed in a way worth retrying.
    ///
    /// # Errors
    /// Only when the store fails.
    pub async fn abandon(&self, scope: &IdempotencyScope, token: LeaseToken) -> anyhow::Result<()> {
        self.store.release(scope, token).await
    }

    /// Deletes keys past their retention period; returns how many.
    ///
    /// # Errors
    /// Only when the store fails.
    #[tracing::instrument(name = "idempotency_purge", skip_all)]
    pub async fn purge_expired(&self) -> anyhow::Result<u64> {
        self.store
            .purge_older_than(self.clock.now() - RETENTION)
            .await
    }
}

crate::debug_opaque!(Idempotency);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use domain::UserId;
    use domain::idempotency::{IdempotencyKey, IdempotencyRecord};
    use domain::ports::{MockClock, MockIdempotencyStore};

    fn scope() -> IdempotencyScope {
        IdempotencyScope {
            user_id: UserId::new(1).unwrap(),
            method: "POST".into(),
            path: "/api/v1/points/charge".into(),
            key: IdempotencyKey::new("abc").unwrap(),
        }
    }

    fn fp() -> Fingerprint {
        Fingerprint(vec![1])
    }

    fn fixed_clock(now: DateTime<Utc>) -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        Arc::new(clock)
    }

    fn existing(response: Option<StoredResponse>, locked_until: DateTime<Utc>) -> Claim {
        Claim::Existing(IdempotencyRecord {
            fingerprint: fp(),
            token: LeaseToken(1),
            locked_until,
            response,
        })
    }

    #[tokio::test]
    async fn a_fresh_key_is_claimed_for_the_lease() {
        let now = Utc::now();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_claim()
            .withf(move |_, _, until, at| *until == now + LEASE && *at == now)
            .returning(|_, _, _, _| Ok(Claim::Acquired(LeaseToken(9))));
        let begin = Idempotency::new(Arc::new(store), fixed_clock(now))
            .begin(&scope(), &fp())
            .await
            .unwrap();
        assert_eq!(begin, Begin::Proceed(LeaseToken(9)));
    }

    #[tokio::test]
    async fn a_finished_key_replays_its_response() {
        let now = Utc::now();
        let done = StoredResponse {
            status: 200,
            body: b"{\"balance\":1}".to_vec(),
        };
        let stored = done.clone();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_claim()
            .returning(move |_, _, _, _| Ok(existing(Some(stored.clone()), now)));
        store.expect_take_over().never();
        let begin = Idempotency::new(Arc::new(store), fixed_clock(now))
            .begin(&scope(), &fp())
            .await
            .unwrap();
        assert_eq!(begin, Begin::Replay(done));
    }

    #[tokio::test]
    async fn a_different_body_is_refused() {
        let now = Utc::now();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_claim()
            .returning(move |_, _, _, _| Ok(existing(None, now + LEASE)));
        let err = Idempotency::new(Arc::new(store), fixed_clock(now))
            .begin(&scope(), &Fingerprint(vec![2]))
            .await
            .unwrap_err();
        assert!(matches!(err, IdempotencyError::KeyReused));
    }

    #[tokio::test]
    async fn a_running_request_keeps_its_key() {
        let now = Utc::now();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_claim()
            .returning(move |_, _, _, _| Ok(existing(None, now + LEASE)));
        store.expect_take_over().never();
        let err = Idempotency::new(Arc::new(store), fixed_clock(now))
            .begin(&scope(), &fp())
            .await
            .unwrap_err();
        assert!(matches!(err, IdempotencyError::InUse));
    }

    #[tokio::test]
    async fn a_dead_request_is_taken_over_from_its_stale_token() {
        let now = Utc::now();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_claim()
            .returning(move |_, _, _, _| Ok(existing(None, now - LEASE)));
        store
            .expect_take_over()
            .withf(|_, stale, _| *stale == LeaseToken(1))
            .times(1)
            .returning(|_, _, _| Ok(Some(LeaseToken(2))));
        let begin = Idempotency::new(Arc::new(store), fixed_clock(now))
            .begin(&scope(), &fp())
            .await
            .unwrap();
        assert_eq!(begin, Begin::Proceed(LeaseToken(2)));
    }

    #[tokio::test]
    async fn losing_a_take_over_race_means_in_use() {
        let now = Utc::now();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_claim()
            .returning(move |_, _, _, _| Ok(existing(None, now - LEASE)));
        store.expect_take_over().returning(|_, _, _| Ok(None));
        let err = Idempotency::new(Arc::new(store), fixed_clock(now))
            .begin(&scope(), &fp())
            .await
            .unwrap_err();
        assert!(matches!(err, IdempotencyError::InUse));
    }

    #[tokio::test]
    async fn purging_keeps_a_day_of_keys() {
        let now = Utc::now();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_purge_older_than()
            .withf(move |cutoff| *cutoff == now - RETENTION)
            .returning(|_| Ok(3));
        let purged = Idempotency::new(Arc::new(store), fixed_clock(now))
            .purge_expired()
            .await
            .unwrap();
        assert_eq!(purged, 3);
    }
}

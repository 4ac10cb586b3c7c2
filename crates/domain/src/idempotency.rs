//! Idempotency keys: a retried request with the same key never acts twice.
//!
//! A key is scoped by (user, method, path, key). The first request *claims* the key
//! with a lease; its response is stored when it finishes (for a success, in the same
//! transaction as its effect, so a crash can never leave an effect without its
//! response). A retry then replays that response, a different body is refused, and a
//! retry while the first is still running is told so. A request that died never
//! blocks its key for good: once its lease lapses, a retry may take the key over.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use crate::{UserId, ValidationError};

/// An `Idempotency-Key` header value: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    /// # Errors
    /// [`ValidationError`] when `raw` is empty, longer than 255 or not visible ASCII.
    pub fn new(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "Idempotency-Key",
                "must be 1 to 255 characters long",
            ));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "Idempotency-Key",
                "must contain only visible ASCII characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a key applies: the same key on another path or for another user is another key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyScope {
    pub user_id: UserId,
    pub method: String,
    pub path: String,
    pub key: IdempotencyKey,
}

/// A digest of the request body, to tell a true retry from a reused key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub Vec<u8>);

/// Proof that this request holds the key; the completion must present it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub u128);

/// The response replayed to retries: status and body as first sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How long a claim holds a key before a retry may take it over; also the longest a
/// retry waits for a dead request to let go (API.md: "after at most 30 s").
pub const LEASE: Duration = Duration::seconds(30);

/// How long a key is kept after first use (API.md: "at least 24 hours").
pub const RETENTION: Duration = Duration::hours(24);

/// A key as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: Fingerprint,
    pub token: LeaseToken,
    pub locked_until: DateTime<Utc>,
    pub response: Option<StoredResponse>,
}

/// What a request should do about an existing record of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The first request finished: send its response again.
    Replay(StoredResponse),
    /// The key was used with another body.
    Mismatch,
    /// The first request is still running.
    InFlight,
    /// The first request died (its lease lapsed): take the key over from `stale`.
    TakeOver { stale: LeaseToken },
}

impl IdempotencyRecord {
    /// Decides what a request with `fingerprint` arriving at `now` does about this record.
    pub fn verdict(&self, fingerprint: &Fingerprint, now: DateTime<Utc>) -> Verdict {
        if &self.fingerprint != fingerprint {
            return Verdict::Mismatch;
        }
        match &self.response {
            Some(response) => Verdict::Replay(response.clone()),
            None if now < self.locked_until => Verdict::InFlight,
            None => Verdict::TakeOver { stale: self.token },
        }
    }
}

/// The part of a use case's transaction that completes its idempotency claim.
///
/// A store that performs an idempotent operation saves the response for its outcome as
/// the key's response in the same transaction (or the same statement) as the effect, on
/// condition that the key is still held under `token`; if it is not (the lease lapsed and
/// another request took over), nothing is written. The store then [`keep`](Self::keep)s
/// the exact response it stored, and the caller answers with those bytes, taken from its
/// [`Receipt`]: the response is rendered once, and the first request and every replay
/// get the same bytes.
pub struct Completion<T> {
    pub scope: IdempotencyScope,
    pub token: LeaseToken,
    render: Box<dyn Fn(&T) -> StoredResponse + Send + Sync>,
    kept: Arc<Mutex<Option<StoredResponse>>>,
}

impl<T> Completion<T> {
    pub fn new(
        scope: IdempotencyScope,
        token: LeaseToken,
        render: impl Fn(&T) -> StoredResponse + Send + Sync + 'static,
    ) -> Self {
        Self {
            scope,
            token,
            render: Box::new(render),
            kept: Arc::default(),
        }
    }

    /// The response for `outcome`, to be stored with the effect (then [`keep`](Self::keep)
    /// it). Also how a store that builds the response in SQL learns its shape.
    pub fn render(&self, outcome: &T) -> StoredResponse {
        (self.render)(outcome)
    }

    /// Records the response as stored by the transaction that commits the effect. A
    /// transaction run again (after a deadlock) keeps its own, replacing the one of the
    /// attempt that rolled back.
    pub fn keep(&self, stored: StoredResponse) {
        if let Ok(mut kept) = self.kept.lock() {
            *kept = Some(stored);
        }
    }

    /// Where the caller finds the stored response once the operation returns.
    pub fn receipt(&self) -> Receipt {
        Receipt(Arc::clone(&self.kept))
    }
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("scope", &self.scope)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The caller's handle on the response a [`Completion`] stored.
#[derive(Debug, Clone)]
pub struct Receipt(Arc<Mutex<Option<StoredResponse>>>);

impl Receipt {
    /// The response stored with the effect; `None` when no store kept one.
    pub fn take(&self) -> Option<StoredResponse> {
        self.0.lock().ok().and_then(|mut kept| kept.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(response: Option<StoredResponse>, locked_until: DateTime<Utc>) -> IdempotencyRecord {
        IdempotencyRecord {
            fingerprint: Fingerprint(vec![1, 2, 3]),
            token: LeaseToken(7),
            locked_until,
            response,
        }
    }

    #[test]
    fn a_receipt_gives_the_response_the_last_attempt_kept_once() {
        let scope = IdempotencyScope {
            user_id: UserId::new(1).unwrap(),
            method: "POST".into(),
            path: "/p".into(),
            key: IdempotencyKey::new("k").unwrap(),
        };
        let completion = Completion::new(scope, LeaseToken(1), |n: &u8| StoredResponse {
            status: 200,
            body: vec![*n],
        });
        let receipt = completion.receipt();
        assert_eq!(receipt.take(), None);
        // A rolled-back attempt kept 1; the one that committed keeps 2.
        completion.keep(completion.render(&1));
        completion.keep(completion.render(&2));
        assert_eq!(receipt.take().map(|r| r.body), Some(vec![2]));
        assert_eq!(receipt.take(), None);
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::new("a").is_ok());
        assert!(IdempotencyKey::new(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::new("with space").is_err());
        assert!(IdempotencyKey::new("tab\there").is_err());
        assert!(IdempotencyKey::new("ключ").is_err());
    }

    #[test]
    fn a_finished_request_is_replayed_for_the_same_body() {
        let now = Utc::now();
        let done = StoredResponse {
            status: 200,
            body: b"{}".to_vec(),
        };
        let r = record(Some(done.clone()), now - LEASE);
        assert_eq!(
            r.verdict(&Fingerprint(vec![1, 2, 3]), now),
            Verdict::Replay(done)
        );
    }

    #[test]
    fn another_body_is_a_mismatch_whatever_the_state() {
        let now = Utc::now();
        let other = Fingerprint(vec![9]);
        assert_eq!(
            record(None, now + LEASE).verdict(&other, now),
            Verdict::Mismatch
        );
        assert_eq!(
            record(None, now - LEASE).verdict(&other, now),
            Verdict::Mismatch
        );
    }

    #[test]
    fn a_running_request_holds_its_key_until_its_lease_lapses() {
        let now = Utc::now();
        let fp = Fingerprint(vec![1, 2, 3]);
        let r = record(None, now + Duration::seconds(1));
        assert_eq!(r.verdict(&fp, now), Verdict::InFlight);
        assert_eq!(
            r.verdict(&fp, now + Duration::seconds(1)),
            Verdict::TakeOver {
                stale: LeaseToken(7)
            }
        );
    }
}

/// Marker error: a request's claim on its key lapsed and another request took the key
/// over before this one could complete. Its transaction was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the idempotency key was taken over by another request")]
pub struct LeaseLost;

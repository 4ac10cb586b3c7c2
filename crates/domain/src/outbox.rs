//! Events for the data platform (데이터 플랫폼), kept in a transactional outbox until
//! delivered: at least once, never lost, with a stable id for de-duplication.

use chrono::{DateTime, Duration, Utc};

/// An event waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Stable across retries; sent as the `Idempotency-Key` header.
    pub id: String,
    pub event_type: String,
    /// The JSON body, exactly as delivered.
    pub payload: String,
    /// Delivery attempts so far, this one included.
    pub attempts: i32,
}

/// How long a relay holds a claimed event before another relay may try it (a relay that
/// dies mid-delivery delays the event by at most this).
pub const CLAIM_LEASE: Duration = Duration::seconds(30);

/// When to try again after `attempts` failed deliveries: 0.5 s doubling, at most a minute.
/// Events are never given up on.
pub fn retry_at(attempts: i32, now: DateTime<Utc>) -> DateTime<Utc> {
    let exponent = u32::try_from(attempts.clamp(1, 8) - 1).unwrap_or(0);
    let delay_ms = (500_i64 << exponent).min(60_000);
    now + Duration::milliseconds(delay_ms)
}

/// Delivery counts, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxCounts {
    /// Not delivered, no failed attempt yet.
    pub pending: i64,
    pub delivered: i64,
    /// Not delivered yet, and the last attempt failed (they are retried).
    pub failed: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_minute() {
        let now = Utc::now();
        let delays: Vec<i64> = [1, 2, 3, 4, 8, 9, 50]
            .into_iter()
            .map(|a| (retry_at(a, now) - now).num_milliseconds())
            .collect();
        assert_eq!(
            delays,
            vec![500, 1_000, 2_000, 4_000, 60_000, 60_000, 60_000]
        );
    }
}

//! The outbox's claim leases on a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use adapter_postgres::PgOutboxStore;
use adapter_postgres::test_support::TestDatabase;
use chrono::Duration;
use domain::outbox::CLAIM_LEASE;
use domain::ports::OutboxStore;

fn seed(db: &TestDatabase, n: i64) {
    db.execute(&format!(
        "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
         SELECT gen_random_uuid(), 'ORDER_PAID', g, jsonb_build_object('n', g), now(), now() - interval '1 second' \
         FROM generate_series(1, {n}) g"
    ))
    .unwrap();
}

/// Moves every undelivered event's due time `seconds` earlier, as if that much time had
/// passed on the database's clock (the one claims and leases go by).
fn age(db: &TestDatabase, seconds: i64) {
    db.execute(&format!(
        "UPDATE outbox_events SET next_attempt_at = next_attempt_at - interval '{seconds} seconds' \
         WHERE delivered_at IS NULL"
    ))
    .unwrap();
}

#[tokio::test]
async fn a_claimed_event_is_not_claimed_again_until_its_lease_lapses() {
    let db = TestDatabase::create().unwrap();
    seed(&db, 3);
    let outbox = PgOutboxStore::new(db.pool(4));
    let first = outbox.claim_due(2).await.unwrap();
    let second = outbox.claim_due(10).await.unwrap();
    assert_eq!((first.len(), second.len()), (2, 1), "claims never overlap");
    assert!(
        first
            .iter()
            .chain(&second)
            .all(|e| e.attempts == 1 && e.payload.contains("\"n\""))
    );
    assert!(outbox.claim_due(10).await.unwrap().is_empty());
    // The lease ends CLAIM_LEASE after the claim by the database's clock.
    let lease = db
        .query_scalar(
            "SELECT round(extract(epoch FROM min(next_attempt_at) - now()))::text AS value \
             FROM outbox_events",
        )
        .unwrap();
    assert_eq!(lease, CLAIM_LEASE.num_seconds().to_string());
    age(&db, CLAIM_LEASE.num_seconds() - 2);
    assert!(outbox.claim_due(10).await.unwrap().is_empty(), "not yet");
    // A relay that died: its events come back after the lease, with the same id.
    age(&db, 3);
    let later = outbox.claim_due(10).await.unwrap();
    assert_eq!(later.len(), 3);
    assert!(later.iter().all(|e| e.attempts == 2));
    assert!(later.iter().any(|e| e.id == first[0].id));
}

#[tokio::test]
async fn delivered_events_stop_and_failed_ones_wait_for_their_retry() {
    let db = TestDatabase::create().unwrap();
    seed(&db, 2);
    let outbox = PgOutboxStore::new(db.pool(4));
    let events = outbox.claim_due(10).await.unwrap();
    outbox
        .mark_delivered(vec![events[0].id.clone()])
        .await
        .unwrap();
    let delivered_now = db
        .query_scalar(
            "SELECT (abs(extract(epoch FROM delivered_at - now())) < 5)::text AS value \
             FROM outbox_events WHERE delivered_at IS NOT NULL",
        )
        .unwrap();
    assert_eq!(delivered_now, "true", "delivered_at is the database's now");
    outbox
        .reschedule(events[1].id.clone(), Duration::seconds(5), "503".into())
        .await
        .unwrap();
    let counts = outbox.counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 1, 1));
    assert!(outbox.claim_due(10).await.unwrap().is_empty());
    age(&db, 4);
    assert!(outbox.claim_due(10).await.unwrap().is_empty());
    age(&db, 2);
    let retry = outbox.claim_due(10).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].id, events[1].id);
    // Marking twice is harmless.
    outbox
        .mark_delivered(vec![events[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(outbox.counts().await.unwrap().delivered, 1);
}

#[tokio::test]
async fn next_due_in_is_the_wait_for_the_earliest_undelivered_attempt_in_one_round_trip() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(2);
    let outbox = PgOutboxStore::new(pool);
    assert_eq!(outbox.next_due_in().await.unwrap(), None, "an empty outbox");
    seed(&db, 2);
    let (due_in, round_trips) = trips.count(outbox.next_due_in()).await;
    assert!(
        due_in.unwrap().unwrap() <= Duration::zero(),
        "seeded events are due"
    );
    assert_eq!(round_trips, 1);

    let claimed = outbox.claim_due(10).await.unwrap();
    let due_in = outbox.next_due_in().await.unwrap().unwrap();
    assert!(
        (due_in - CLAIM_LEASE).num_milliseconds().abs() < 1_000,
        "claimed events are next due when their lease ends: {due_in}"
    );
    outbox
        .reschedule(claimed[0].id.clone(), Duration::seconds(3), "503".into())
        .await
        .unwrap();
    let due_in = outbox.next_due_in().await.unwrap().unwrap();
    assert!(
        (due_in - Duration::seconds(3)).num_milliseconds().abs() < 1_000,
        "the retry: {due_in}"
    );
    for event in claimed {
        outbox.mark_delivered(vec![event.id]).await.unwrap();
    }
    assert_eq!(outbox.next_due_in().await.unwrap(), None, "all delivered");
}

//! The outbox's claim leases on a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use adapter_postgres::PgOutboxStore;
use adapter_postgres::test_support::TestDatabase;
use chrono::{Duration, SubsecRound, Utc};
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

#[tokio::test]
async fn a_claimed_event_is_not_claimed_again_until_its_lease_lapses() {
    let db = TestDatabase::create().unwrap();
    seed(&db, 3);
    let outbox = PgOutboxStore::new(db.pool(4));
    let now = Utc::now();
    let first = outbox.claim_due(now, 2).await.unwrap();
    let second = outbox.claim_due(now, 10).await.unwrap();
    assert_eq!((first.len(), second.len()), (2, 1), "claims never overlap");
    assert!(
        first
            .iter()
            .chain(&second)
            .all(|e| e.attempts == 1 && e.payload.contains("\"n\""))
    );
    assert!(outbox.claim_due(now, 10).await.unwrap().is_empty());
    // A relay that died: its events come back after the lease, with the same id.
    let later = outbox
        .claim_due(now + CLAIM_LEASE + Duration::seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 3);
    assert!(later.iter().all(|e| e.attempts == 2));
    assert!(later.iter().any(|e| e.id == first[0].id));
}

#[tokio::test]
async fn delivered_events_stop_and_failed_ones_wait_for_their_retry() {
    let db = TestDatabase::create().unwrap();
    seed(&db, 2);
    let outbox = PgOutboxStore::new(db.pool(4));
    let now = Utc::now();
    let events = outbox.claim_due(now, 10).await.unwrap();
    outbox
        .mark_delivered(vec![events[0].id.clone()], now)
        .await
        .unwrap();
    outbox
        .reschedule(
            events[1].id.clone(),
            now + Duration::seconds(5),
            "503".into(),
        )
        .await
        .unwrap();
    let counts = outbox.counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 1, 1));
    assert!(
        outbox
            .claim_due(now + Duration::seconds(4), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retry = outbox
        .claim_due(now + Duration::seconds(6), 10)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].id, events[1].id);
    // Marking twice is harmless.
    outbox
        .mark_delivered(vec![events[0].id.clone()], now)
        .await
        .unwrap();
    assert_eq!(outbox.counts().await.unwrap().delivered, 1);
}

#[tokio::test]
async fn next_due_is_the_earliest_undelivered_attempt_in_one_round_trip() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(2);
    let outbox = PgOutboxStore::new(pool);
    assert_eq!(outbox.next_due().await.unwrap(), None, "an empty outbox");
    seed(&db, 2);
    let now = Utc::now();
    let (due, round_trips) = trips.count(outbox.next_due()).await;
    assert!(due.unwrap().unwrap() <= now, "seeded events are due");
    assert_eq!(round_trips, 1);

    let claimed = outbox.claim_due(now, 10).await.unwrap();
    let due = outbox.next_due().await.unwrap().unwrap();
    assert!(
        (due - (now + CLAIM_LEASE)).num_milliseconds().abs() < 1_000,
        "claimed events are next due when their lease ends"
    );
    let retry = (now + Duration::seconds(3)).trunc_subsecs(6);
    outbox
        .reschedule(claimed[0].id.clone(), retry, "503".into())
        .await
        .unwrap();
    assert_eq!(outbox.next_due().await.unwrap(), Some(retry));
    for event in claimed {
        outbox.mark_delivered(vec![event.id], now).await.unwrap();
    }
    assert_eq!(outbox.next_due().await.unwrap(), None, "all delivered");
}

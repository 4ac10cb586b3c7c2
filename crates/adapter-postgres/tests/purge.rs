//! Retention purges delete in bounded batches until nothing past retention is left.

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{PgIdempotencyStore, PgOutboxStore};
use chrono::{Duration, Utc};
use domain::ports::{IdempotencyStore, OutboxStore};

#[tokio::test]
async fn a_million_expired_keys_are_purged_in_batches_and_fresh_ones_kept() {
    let db = TestDatabase::create().unwrap();
    db.execute(
        "INSERT INTO idempotency_keys (user_id, method, path, key, fingerprint, lease_token, \
                                       locked_until, response_status, response_body, created_at) \
         SELECT 1, 'POST', '/p', 'k' || g, '\\x00', gen_random_uuid(), now(), 200, '\\x7b7d', \
                now() - interval '2 days' \
         FROM generate_series(1, 1000000) g; \
         INSERT INTO idempotency_keys (user_id, method, path, key, fingerprint, lease_token, \
                                       locked_until, created_at) \
         SELECT 2, 'POST', '/p', 'fresh' || g, '\\x00', gen_random_uuid(), now(), now() \
         FROM generate_series(1, 5) g",
    )
    .unwrap();
    let store = PgIdempotencyStore::new(db.pool(2));
    let purged = store
        .purge_older_than(Utc::now() - Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(purged, 1_000_000);
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM idempotency_keys")
            .unwrap(),
        "5"
    );
}

#[tokio::test]
async fn delivered_events_past_retention_go_and_undelivered_ones_stay() {
    let db = TestDatabase::create().unwrap();
    db.execute(
        "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, \
                                    next_attempt_at, delivered_at) \
         SELECT gen_random_uuid(), 'ORDER_PAID', g, '{}', now() - interval '9 days', \
                now() - interval '9 days', \
                CASE WHEN g % 3 = 0 THEN NULL ELSE now() - interval '8 days' END \
         FROM generate_series(1, 30000) g; \
         INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, \
                                    next_attempt_at, delivered_at) \
         VALUES (gen_random_uuid(), 'ORDER_PAID', 0, '{}', now(), now(), now())",
    )
    .unwrap();
    let store = PgOutboxStore::new(db.pool(2));
    let purged = store
        .purge_delivered_before(Utc::now() - Duration::days(7))
        .await
        .unwrap();
    assert_eq!(purged, 20_000);
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM outbox_events WHERE delivered_at IS NULL")
            .unwrap(),
        "10000",
        "undelivered events are never purged, however old"
    );
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM outbox_events WHERE delivered_at IS NOT NULL")
            .unwrap(),
        "1",
        "a recent delivery is kept"
    );
}

#[tokio::test]
async fn two_instances_purging_together_delete_each_row_once() {
    let db = TestDatabase::create().unwrap();
    db.execute(
        "INSERT INTO idempotency_keys (user_id, method, path, key, fingerprint, lease_token, \
                                       locked_until, created_at) \
         SELECT 1, 'POST', '/p', 'k' || g, '\\x00', gen_random_uuid(), now(), \
                now() - interval '2 days' \
         FROM generate_series(1, 50000) g",
    )
    .unwrap();
    let (a, b) = (
        PgIdempotencyStore::new(db.pool(1)),
        PgIdempotencyStore::new(db.pool(1)),
    );
    let cutoff = Utc::now() - Duration::hours(24);
    let (x, y) = tokio::join!(a.purge_older_than(cutoff), b.purge_older_than(cutoff));
    let (x, y) = (x.unwrap(), y.unwrap());
    // Whoever found the other mid-batch stopped; a later run finishes the rest.
    let rest = a.purge_older_than(cutoff).await.unwrap();
    assert_eq!(x + y + rest, 50_000);
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM idempotency_keys")
            .unwrap(),
        "0"
    );
}

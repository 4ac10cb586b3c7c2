//! The outbox listener on a real PostgreSQL: a committed event wakes it, a rolled-back
//! one does not, and it reconnects by itself after the database drops it.
//!
//! Bounds are generous (seconds where a notification takes milliseconds) so the tests
//! cannot flake on a loaded machine, yet far below the waits they cut short.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use adapter_postgres::PgOutboxListener;
use adapter_postgres::test_support::TestDatabase;
use domain::ports::OutboxWakeup;

/// A wait that only a signal cuts short within the tests' bounds.
const LONG: Duration = Duration::from_secs(60);
/// What a prompt wake-up must beat.
const PROMPT: Duration = Duration::from_secs(10);

const INSERT: &str = "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
     VALUES (gen_random_uuid(), 'ORDER_PAID', (random() * 1e9)::bigint, '{}', now(), now())";

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long `wait(timeout)` took.
async fn timed_wait(listener: &PgOutboxListener, timeout: Duration) -> Duration {
    let started = Instant::now();
    listener.wait(timeout).await;
    started.elapsed()
}

async fn listening(db: &TestDatabase) -> PgOutboxListener {
    let listener = PgOutboxListener::start(db.url()).unwrap();
    until("listening", || listener.is_listening()).await;
    // Takes the signal that connecting leaves.
    listener.wait(Duration::ZERO).await;
    listener
}

#[tokio::test]
async fn a_committed_event_wakes_the_listener_and_a_rolled_back_one_does_not() {
    let db = TestDatabase::create().unwrap();
    let listener = listening(&db).await;
    assert!(
        timed_wait(&listener, Duration::from_millis(300)).await >= Duration::from_millis(250),
        "nothing committed, nothing signalled"
    );

    db.execute(&format!("BEGIN; {INSERT}; ROLLBACK")).unwrap();
    assert!(
        timed_wait(&listener, Duration::from_millis(500)).await >= Duration::from_millis(450),
        "a rolled-back insert notifies nobody"
    );

    db.execute(&format!("BEGIN; {INSERT}; {INSERT}; COMMIT"))
        .unwrap();
    assert!(
        timed_wait(&listener, LONG).await < PROMPT,
        "the commit woke it"
    );
    assert!(
        timed_wait(&listener, Duration::from_millis(300)).await >= Duration::from_millis(250),
        "one transaction, one wake-up"
    );
}

#[tokio::test]
async fn the_listener_reconnects_after_the_database_drops_it_and_polls_meanwhile() {
    let db = TestDatabase::create().unwrap();
    let listener = listening(&db).await;

    db.set_reachable(false).unwrap();
    until("disconnected", || !listener.is_listening()).await;
    listener.wait(Duration::ZERO).await;
    let waited = timed_wait(&listener, LONG).await;
    assert!(
        waited < PgOutboxListener::POLL_WHILE_DISCONNECTED + Duration::from_secs(2),
        "while disconnected the relay polls: waited {waited:?}"
    );

    db.set_reachable(true).unwrap();
    until("listening again", || listener.is_listening()).await;
    listener.wait(Duration::ZERO).await;
    db.execute(INSERT).unwrap();
    assert!(
        timed_wait(&listener, LONG).await < PROMPT,
        "notifications flow again"
    );
}

#[tokio::test]
async fn a_commit_notifies_only_while_no_other_event_waits_to_be_claimed() {
    let db = TestDatabase::create().unwrap();
    let listener = listening(&db).await;
    db.execute(INSERT).unwrap();
    assert!(
        timed_wait(&listener, LONG).await < PROMPT,
        "the first event wakes the relay"
    );

    db.execute(INSERT).unwrap();
    assert!(
        timed_wait(&listener, Duration::from_millis(500)).await >= Duration::from_millis(450),
        "while the first waits unclaimed, the relay has been told: no second NOTIFY"
    );

    // A relay claims both (the lease moves them out of what is due).
    db.execute("UPDATE outbox_events SET next_attempt_at = now() + interval '30 seconds'")
        .unwrap();
    db.execute(INSERT).unwrap();
    assert!(
        timed_wait(&listener, LONG).await < PROMPT,
        "with nothing left to claim, a commit notifies again"
    );
}

#[tokio::test]
async fn the_listeners_state_shows_in_its_status_and_its_gauge() {
    use domain::ports::ComponentStatus;
    let db = TestDatabase::create().unwrap();
    let listener = listening(&db).await;
    assert_eq!(listener.name(), "outboxListener");
    assert_eq!((listener.status(), listener.gauge().get()), (Ok(()), 1));

    db.set_reachable(false).unwrap();
    until("disconnected", || !listener.is_listening()).await;
    let status = listener.status().unwrap_err();
    assert!(status.contains("polls"), "{status}");
    assert!(
        !status.contains("127.0.0.1"),
        "no address in the probe: {status}"
    );
    assert_eq!(listener.gauge().get(), 0);

    // One that never connects is down from the start.
    let never = PgOutboxListener::start("postgres://nobody@127.0.0.1:1/none").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(never.status().is_err());
    assert_eq!(never.gauge().get(), 0);
}

/// The bound: a commit wakes the relay within 100 ms. Measured from the commit's
/// acknowledgement (the server sends the notification before it), the median of five.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_wakes_a_waiting_listener_within_100_ms() {
    let db = TestDatabase::create().unwrap();
    let listener = listening(&db).await;
    let mut lags = Vec::new();
    for _ in 0..5 {
        let waiter = async {
            listener.wait(LONG).await;
            Instant::now()
        };
        let commit = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let db = &db;
            tokio::task::block_in_place(|| db.execute(INSERT).unwrap());
            Instant::now()
        };
        let (woken, committed) = tokio::join!(waiter, commit);
        lags.push(woken.saturating_duration_since(committed));
        // Out of what is due, as a relay's claim would take it.
        db.execute("UPDATE outbox_events SET next_attempt_at = now() + interval '1 hour'")
            .unwrap();
    }
    lags.sort();
    assert!(lags[2] < Duration::from_millis(100), "{lags:?}");
}

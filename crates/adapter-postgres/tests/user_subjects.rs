//! The subject → user mapping on a real PostgreSQL (a fresh database per test): a
//! subject gets one user however many registrations race, and a losing registration
//! leaves no user behind.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use adapter_postgres::PgUserRepository;
use adapter_postgres::test_support::TestDatabase;
use chrono::Utc;
use diesel::{Connection, PgConnection, connection::SimpleConnection};
use domain::ports::UserRepository;
use domain::user::{Registration, Subject};

const ISSUER: &str = "https://id.example";

fn subject(raw: &str) -> Subject {
    Subject::new(ISSUER, raw).unwrap()
}

fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.query_scalar(sql).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_subject_is_created_once_then_found() {
    let db = TestDatabase::create().unwrap();
    let users = PgUserRepository::new(db.pool(4));
    let alice = subject("idp|alice");
    assert_eq!(users.user_for_subject(&alice).await.unwrap(), None);

    let (first, registration) = users.for_subject(&alice, Utc::now()).await.unwrap();
    assert_eq!(registration, Registration::Created);
    let (again, registration) = users.for_subject(&alice, Utc::now()).await.unwrap();
    assert_eq!(registration, Registration::Existing);
    assert_eq!(again, first, "the same user, creation time included");

    assert_eq!(
        users.user_for_subject(&alice).await.unwrap(),
        Some(first.id)
    );
    assert_eq!(users.find(first.id).await.unwrap(), Some(first.clone()));
    let wallet = format!(
        "SELECT balance FROM point_wallets WHERE user_id = {}",
        first.id
    );
    assert_eq!(count(&db, &wallet), 0, "the user has an empty wallet");
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 1);
}

#[tokio::test]
async fn subjects_are_compared_exactly() {
    let db = TestDatabase::create().unwrap();
    let users = PgUserRepository::new(db.pool(4));
    let plain = users.create(Utc::now()).await.unwrap();
    let (lower, _) = users
        .for_subject(&subject("bob"), Utc::now())
        .await
        .unwrap();
    let (upper, registration) = users
        .for_subject(&subject("Bob"), Utc::now())
        .await
        .unwrap();
    assert_eq!(registration, Registration::Created);
    assert_ne!(lower.id, upper.id);
    assert!(plain.id != lower.id && plain.id != upper.id);
    assert_eq!(count(&db, "SELECT count(*) FROM user_subjects"), 2);
}

#[tokio::test]
async fn twenty_registrations_of_one_new_subject_make_one_user() {
    let db = TestDatabase::create().unwrap();
    let users = Arc::new(PgUserRepository::new(db.pool(20)));
    let racer = subject("idp|racer");
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (users, racer, barrier) = (users.clone(), racer.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                users.for_subject(&racer, Utc::now()).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }

    let id = results[0].0.id;
    assert!(results.iter().all(|(user, _)| user.id == id), "{results:?}");
    let created = results
        .iter()
        .filter(|(_, registration)| *registration == Registration::Created)
        .count();
    assert_eq!(created, 1, "{results:?}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM users"),
        1,
        "no orphan user"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM point_wallets"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM user_subjects"), 1);
    assert_eq!(users.user_for_subject(&racer).await.unwrap(), Some(id));
}

/// Opens a transaction on its own connection that registers `subject` as user 1000 and
/// leaves it uncommitted.
fn register_uncommitted(db: &TestDatabase, subject: &str) -> PgConnection {
    let mut conn = PgConnection::establish(db.url()).unwrap();
    conn.batch_execute(&format!(
        "BEGIN; \
         INSERT INTO users (id, created_at) VALUES (1000, now()); \
         INSERT INTO point_wallets (user_id, balance, updated_at) VALUES (1000, 0, now()); \
         INSERT INTO user_subjects (issuer, subject, user_id, created_at) \
         VALUES ('{ISSUER}', '{subject}', 1000, now());"
    ))
    .unwrap();
    conn
}

/// The losing side of the race, made certain: the registration starts while another
/// one is in flight, waits for it, and then answers with the winner's user (read after
/// its own statement's snapshot, which cannot see the winner).
#[tokio::test]
async fn a_registration_that_waited_for_a_concurrent_one_returns_its_user() {
    let db = TestDatabase::create().unwrap();
    let users = Arc::new(PgUserRepository::new(db.pool(2)));
    let mut winner = register_uncommitted(&db, "idp|late");

    let pending = tokio::spawn({
        let users = users.clone();
        async move { users.for_subject(&subject("idp|late"), Utc::now()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "waits for the concurrent registration"
    );
    winner.batch_execute("COMMIT").unwrap();

    let (user, registration) = pending.await.unwrap().unwrap();
    assert_eq!(
        (user.id.get(), registration),
        (1000, Registration::Existing)
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM users"),
        1,
        "no orphan user"
    );
}

#[tokio::test]
async fn a_registration_that_waited_for_one_rolled_back_creates_the_user() {
    let db = TestDatabase::create().unwrap();
    let users = Arc::new(PgUserRepository::new(db.pool(2)));
    let mut winner = register_uncommitted(&db, "idp|retry");

    let pending = tokio::spawn({
        let users = users.clone();
        async move { users.for_subject(&subject("idp|retry"), Utc::now()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    winner.batch_execute("ROLLBACK").unwrap();

    let (user, registration) = pending.await.unwrap().unwrap();
    assert_eq!(registration, Registration::Created);
    assert_ne!(user.id.get(), 1000);
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM user_subjects"), 1);
}

#[tokio::test]
async fn a_registration_or_a_lookup_is_one_round_trip() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(1);
    let users = PgUserRepository::new(pool);
    // Warm the connection: each statement's first use also prepares it.
    users
        .for_subject(&subject("warm"), Utc::now())
        .await
        .unwrap();
    users.user_for_subject(&subject("warm")).await.unwrap();

    let (_, created) = trips
        .count(users.for_subject(&subject("new"), Utc::now()))
        .await;
    let (_, existing) = trips
        .count(users.for_subject(&subject("new"), Utc::now()))
        .await;
    let (_, lookup) = trips.count(users.user_for_subject(&subject("new"))).await;
    assert_eq!((created, existing, lookup), (1, 1, 1));
}

#[tokio::test]
async fn one_sub_of_two_issuers_is_two_users() {
    let db = TestDatabase::create().unwrap();
    let users = PgUserRepository::new(db.pool(4));
    let ours = Subject::new(ISSUER, "u1").unwrap();
    let theirs = Subject::new("https://other.example", "u1").unwrap();
    let secret = Subject::new("", "u1").unwrap();
    let (a, _) = users.for_subject(&ours, Utc::now()).await.unwrap();
    assert_eq!(users.user_for_subject(&theirs).await.unwrap(), None);
    let (b, registration) = users.for_subject(&theirs, Utc::now()).await.unwrap();
    assert_eq!(
        registration,
        Registration::Created,
        "a stranger gets a user of their own"
    );
    let (c, _) = users.for_subject(&secret, Utc::now()).await.unwrap();
    assert!(a.id != b.id && b.id != c.id && a.id != c.id);
    assert_eq!(users.user_for_subject(&ours).await.unwrap(), Some(a.id));
}

#[tokio::test]
async fn mappings_from_before_issuers_are_adopted_by_the_configured_issuer_once() {
    let db = TestDatabase::create().unwrap();
    let users = PgUserRepository::new(db.pool(4));
    // A mapping as the previous version made it: no issuer.
    let old = users.create(Utc::now()).await.unwrap();
    db.execute(&format!(
        "INSERT INTO user_subjects (subject, user_id, created_at) VALUES ('idp|old', {}, now())",
        old.id
    ))
    .unwrap();
    let subject = Subject::new(ISSUER, "idp|old").unwrap();
    assert_eq!(
        users.user_for_subject(&subject).await.unwrap(),
        None,
        "not before adoption"
    );

    assert_eq!(users.adopt_unkeyed_subjects(ISSUER).await.unwrap(), 1);
    assert_eq!(
        users.user_for_subject(&subject).await.unwrap(),
        Some(old.id)
    );
    let (user, registration) = users.for_subject(&subject, Utc::now()).await.unwrap();
    assert_eq!((user.id, registration), (old.id, Registration::Existing));
    // Once adopted, another issuer's start adopts nothing: its sub is a stranger.
    assert_eq!(
        users
            .adopt_unkeyed_subjects("https://other.example")
            .await
            .unwrap(),
        0
    );
    let stranger = Subject::new("https://other.example", "idp|old").unwrap();
    assert_eq!(users.user_for_subject(&stranger).await.unwrap(), None);
}

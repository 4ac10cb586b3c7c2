//! Coupon store round trips, the issue paths that fall back or refuse, stored states,
//! and the batcher's stop, queue bound and failed-group deadline, on a real PostgreSQL.
//!
//! A round trip is one statement (`BEGIN` and `COMMIT` included). Each count is taken
//! after the statements were used once, so the connection's statement cache is warm.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{IssueBatcher, IssueBatcherLimits, PgCouponStore, PgUserRepository};
use chrono::{Duration, Utc};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use domain::coupon::{Coupon, CouponName, CouponQuantity, Discount, NewCoupon};
use domain::ports::{CouponStore, IssueError, UserRepository};
use domain::user::ForUser;
use domain::{CouponId, UserId};

fn new_coupon(quantity: i64) -> NewCoupon {
    let now = Utc::now();
    NewCoupon::new(
        CouponName::new("Hot").unwrap(),
        Discount::Fixed(1_000),
        CouponQuantity::new(quantity).unwrap(),
        Some(now - Duration::minutes(1)),
        now + Duration::days(1),
        now,
    )
    .unwrap()
}

async fn users(repo: &PgUserRepository, n: usize) -> Vec<UserId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(repo.create(Utc::now()).await.unwrap().id);
    }
    ids
}

async fn remaining(store: &PgCouponStore, coupon: &Coupon) -> i64 {
    store
        .find(coupon.id)
        .await
        .unwrap()
        .unwrap()
        .remaining_quantity
}

#[tokio::test]
async fn a_lone_issue_is_three_round_trips_whatever_its_outcome() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(1);
    let store = PgCouponStore::new(pool.clone());
    let repo = PgUserRepository::new(pool);
    let coupon = store.create(new_coupon(2), Utc::now()).await.unwrap();
    let u = users(&repo, 4).await;
    store
        .issue(coupon.issue_to(u[0], Utc::now()), None)
        .await
        .unwrap(); // prepares the statement

    let (issued, n) = trips
        .count(store.issue(coupon.issue_to(u[1], Utc::now()), None))
        .await;
    assert_eq!(issued.unwrap().user_id, u[1]);
    assert_eq!(n, 3, "BEGIN, the issuing statement, COMMIT");

    let (again, n) = trips
        .count(store.issue(coupon.issue_to(u[1], Utc::now()), None))
        .await;
    assert!(matches!(again, Err(IssueError::AlreadyIssued)), "{again:?}");
    assert_eq!(n, 3, "a holder is told apart in the same statement");

    let ghost = UserId::new(999_999).unwrap();
    let (ghost, n) = trips
        .count(store.issue(coupon.issue_to(ghost, Utc::now()), None))
        .await;
    assert!(matches!(ghost, Err(IssueError::UserNotFound)), "{ghost:?}");
    assert_eq!(n, 3, "an unknown user is told apart in the same statement");

    let (sold_out, n) = trips
        .count(store.issue(coupon.issue_to(u[2], Utc::now()), None))
        .await;
    assert!(matches!(sold_out, Err(IssueError::SoldOut)), "{sold_out:?}");
    assert_eq!(n, 3, "a sell-out is told apart in the same statement");

    assert_eq!(remaining(&store, &coupon).await, 0);
    assert_eq!(
        store.holds(u[2], coupon.id).await.unwrap(),
        ForUser::Found(false),
        "a refused issue leaves no copy behind"
    );
}

#[tokio::test]
async fn reads_are_one_round_trip_each_and_cached_terms_none() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(1);
    let store = PgCouponStore::new(pool.clone());
    let repo = PgUserRepository::new(pool);
    let coupon = store.create(new_coupon(5), Utc::now()).await.unwrap();
    let u = users(&repo, 2).await;
    store
        .issue(coupon.issue_to(u[0], Utc::now()), None)
        .await
        .unwrap();
    let ghost = UserId::new(999_999).unwrap();
    // Prepare every statement once.
    store.of_user(u[0]).await.unwrap();
    store.find(coupon.id).await.unwrap();
    store.holds(u[0], coupon.id).await.unwrap();

    let (mine, n) = trips.count(store.of_user(u[0])).await;
    let ForUser::Found(mine) = mine.unwrap() else {
        panic!("a known user");
    };
    assert_eq!((mine.len(), mine[0].coupon_id, n), (1, coupon.id, 1));

    let (none, n) = trips.count(store.of_user(u[1])).await;
    assert_eq!((none.unwrap(), n), (ForUser::Found(vec![]), 1));

    let (unknown, n) = trips.count(store.of_user(ghost)).await;
    assert_eq!((unknown.unwrap(), n), (ForUser::UnknownUser, 1));

    let (found, n) = trips.count(store.find(coupon.id)).await;
    assert_eq!((found.unwrap().unwrap().remaining_quantity, n), (4, 1));

    let (holds, n) = trips.count(store.holds(u[0], coupon.id)).await;
    assert_eq!((holds.unwrap(), n), (ForUser::Found(true), 1));
    let (holds, n) = trips.count(store.holds(ghost, coupon.id)).await;
    assert_eq!((holds.unwrap(), n), (ForUser::UnknownUser, 1));

    let (terms, n) = trips.count(store.terms(coupon.id)).await;
    assert_eq!((terms.unwrap().unwrap().id, n), (coupon.id, 0));
}

#[tokio::test]
async fn a_copy_lists_its_campaigns_terms_oldest_first() {
    let db = TestDatabase::create().unwrap();
    let pool = db.pool(2);
    let store = PgCouponStore::new(pool.clone());
    let u = users(&PgUserRepository::new(pool), 1).await[0];
    let first = store.create(new_coupon(3), Utc::now()).await.unwrap();
    let second = store.create(new_coupon(3), Utc::now()).await.unwrap();
    for coupon in [&second, &first] {
        store
            .issue(coupon.issue_to(u, Utc::now()), None)
            .await
            .unwrap();
    }
    let ForUser::Found(mine) = store.of_user(u).await.unwrap() else {
        panic!("a known user");
    };
    let listed: Vec<CouponId> = mine.iter().map(|c| c.coupon_id).collect();
    assert_eq!(listed, vec![second.id, first.id], "in issue order");
    assert_eq!(
        (mine[0].discount, mine[0].expires_at),
        (Discount::Fixed(1_000), second.ends_at)
    );
}

#[tokio::test]
async fn an_unknown_stored_status_is_an_error_not_an_available_copy() {
    let db = TestDatabase::create().unwrap();
    let pool = db.pool(2);
    let store = PgCouponStore::new(pool.clone());
    let u = users(&PgUserRepository::new(pool), 1).await[0];
    let coupon = store.create(new_coupon(3), Utc::now()).await.unwrap();
    store
        .issue(coupon.issue_to(u, Utc::now()), None)
        .await
        .unwrap();
    db.execute(
        "ALTER TABLE user_coupons DROP CONSTRAINT user_coupons_status_check; \
         UPDATE user_coupons SET status = 'GIFTED'",
    )
    .unwrap();
    let err = store.of_user(u).await.unwrap_err();
    assert!(format!("{err:#}").contains("GIFTED"), "{err:#}");
}

/// Holds every stripe of `coupon` in an open transaction on a connection of its own,
/// as a claim in flight does.
fn hold_stripes(db: &TestDatabase, coupon: &Coupon) -> PgConnection {
    let mut conn = PgConnection::establish(db.url()).unwrap();
    conn.batch_execute(&format!(
        "BEGIN; SELECT * FROM coupon_stock_stripes WHERE coupon_id = {} FOR UPDATE",
        coupon.id
    ))
    .unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_issue_whose_units_are_all_held_waits_for_them() {
    let db = TestDatabase::create().unwrap();
    let pool = db.pool(4);
    let store = Arc::new(PgCouponStore::new(pool.clone()));
    let u = users(&PgUserRepository::new(pool), 2).await;
    let coupon = store.create(new_coupon(1), Utc::now()).await.unwrap();

    // The holder rolls back: the unit is still there, and the waiting issue gets it.
    let mut holder = hold_stripes(&db, &coupon);
    let issue = tokio::spawn({
        let (store, issue) = (store.clone(), coupon.issue_to(u[0], Utc::now()));
        async move { store.issue(issue, None).await }
    });
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(!issue.is_finished(), "the issue waits for the held stripe");
    holder.batch_execute("ROLLBACK").unwrap();
    assert_eq!(issue.await.unwrap().unwrap().user_id, u[0]);
    assert_eq!(remaining(&store, &coupon).await, 0);

    // The holder takes the last unit: the waiting issue is sold out and leaves no copy.
    let other = store.create(new_coupon(1), Utc::now()).await.unwrap();
    let mut holder = hold_stripes(&db, &other);
    let issue = tokio::spawn({
        let (store, issue) = (store.clone(), other.issue_to(u[1], Utc::now()));
        async move { store.issue(issue, None).await }
    });
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    holder
        .batch_execute(&format!(
            "UPDATE coupon_stock_stripes SET remaining = 0 WHERE coupon_id = {}; COMMIT",
            other.id
        ))
        .unwrap();
    let refused = issue.await.unwrap();
    assert!(matches!(refused, Err(IssueError::SoldOut)), "{refused:?}");
    assert_eq!(
        store.holds(u[1], other.id).await.unwrap(),
        ForUser::Found(false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_batcher_answers_every_queued_issue_and_later_ones_are_written_alone() {
    let db = TestDatabase::create().unwrap();
    let pool = db.pool(8);
    let batcher = IssueBatcher::start(pool.clone());
    let store = Arc::new(PgCouponStore::grouped(pool.clone(), batcher.clone()));
    let u = users(&PgUserRepository::new(pool), 41).await;
    let coupon = store.create(new_coupon(30), Utc::now()).await.unwrap();

    let tasks: Vec<_> = u[..40]
        .iter()
        .map(|user| {
            let (store, issue) = (store.clone(), coupon.issue_to(*user, Utc::now()));
            tokio::spawn(async move { store.issue(issue, None).await })
        })
        .collect();
    tokio::task::yield_now().await;
    batcher.stop().await;
    let (mut issued, mut sold_out) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => issued += 1,
            Err(IssueError::SoldOut) => sold_out += 1,
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    assert_eq!((issued, sold_out), (30, 10));
    assert_eq!(remaining(&store, &coupon).await, 0);

    batcher.stop().await; // twice is harmless
    let other = store.create(new_coupon(1), Utc::now()).await.unwrap();
    let late = store.issue(other.issue_to(u[40], Utc::now()), None).await;
    assert_eq!(late.unwrap().user_id, u[40], "written alone once stopped");
}

/// The batcher's state a test wants to see: a store grouping through a batcher with
/// `limits`, `n` users and a campaign of `quantity`.
async fn grouped(
    db: &TestDatabase,
    limits: IssueBatcherLimits,
    n: usize,
    quantity: i64,
) -> (Arc<PgCouponStore>, Vec<UserId>, Coupon) {
    let pool = db.pool(4);
    let batcher = IssueBatcher::start_with(pool.clone(), limits);
    let store = Arc::new(PgCouponStore::grouped(pool.clone(), batcher));
    let u = users(&PgUserRepository::new(pool), n).await;
    let coupon = store
        .create(new_coupon(quantity), Utc::now())
        .await
        .unwrap();
    (store, u, coupon)
}

// One thread: the spawned issues all run (and reach the batcher) before the batcher
// task does, so its queue holds exactly what was accepted.
#[tokio::test]
async fn a_full_queue_refuses_an_issue_at_once_and_writes_nothing() {
    let db = TestDatabase::create().unwrap();
    let limits = IssueBatcherLimits {
        queue: 2,
        ..IssueBatcherLimits::default()
    };
    let (store, u, coupon) = grouped(&db, limits, 10, 5).await;

    let tasks: Vec<_> = u
        .iter()
        .map(|user| {
            let (store, issue) = (store.clone(), coupon.issue_to(*user, Utc::now()));
            tokio::spawn(async move { store.issue(issue, None).await })
        })
        .collect();
    let (mut issued, mut refused) = (Vec::new(), Vec::new());
    for (task, user) in tasks.into_iter().zip(&u) {
        match task.await.unwrap() {
            Ok(copy) => issued.push(copy.user_id),
            Err(IssueError::Overloaded) => refused.push(*user),
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    assert_eq!(issued, u[..2], "the two queued issues are written");
    assert_eq!(
        refused,
        u[2..],
        "every issue past the queue's bound is refused"
    );
    assert_eq!(remaining(&store, &coupon).await, 3, "only two units went");
    for user in &refused {
        assert_eq!(
            store.holds(*user, coupon.id).await.unwrap(),
            ForUser::Found(false),
            "a refused issue leaves no copy"
        );
    }

    // Once the queue has room, the same issue goes through.
    let again = store
        .issue(coupon.issue_to(refused[0], Utc::now()), None)
        .await;
    assert_eq!(again.unwrap().user_id, refused[0]);
    assert_eq!(remaining(&store, &coupon).await, 2);
}

// One thread: every issue is queued before the batcher runs, so they form one group.
#[tokio::test]
async fn a_failed_group_is_retried_one_by_one_only_until_its_deadline() {
    let db = TestDatabase::create().unwrap();
    let limits = IssueBatcherLimits {
        retry_deadline: StdDuration::from_millis(500),
        ..IssueBatcherLimits::default()
    };
    let (store, u, coupon) = grouped(&db, limits, 30, 100).await;
    // Every copy takes 200 ms to write; the first user's copy then fails. The group
    // inserts in user order, so it fails on its first row; alone, only that user fails.
    db.execute(&format!(
        "CREATE FUNCTION slow_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             PERFORM pg_sleep(0.2); \
             IF NEW.user_id = {bad} THEN RAISE EXCEPTION 'copy refused by the test'; END IF; \
             RETURN NEW; END $$; \
         CREATE TRIGGER slow_copy BEFORE INSERT ON user_coupons \
             FOR EACH ROW EXECUTE FUNCTION slow_copy();",
        bad = u[0]
    ))
    .unwrap();

    let started = Instant::now();
    let tasks: Vec<_> = u
        .iter()
        .map(|user| {
            let (store, issue) = (store.clone(), coupon.issue_to(*user, Utc::now()));
            tokio::spawn(async move { store.issue(issue, None).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    // One by one without a deadline: 200 ms for the group, then 200 ms per member (6.2 s).
    assert!(
        elapsed < StdDuration::from_secs(3),
        "every member answered within the deadline's bound, not one by one: {elapsed:?}"
    );

    assert!(
        matches!(&outcomes[0], Err(IssueError::Unknown(e)) if format!("{e:#}").contains("refused by the test")),
        "the failing member gets its own error: {:?}",
        outcomes[0]
    );
    let issued: Vec<UserId> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|c| c.user_id))
        .collect();
    let late = outcomes
        .iter()
        .filter(|o| matches!(o, Err(IssueError::Overloaded)))
        .count();
    assert!(
        !issued.is_empty(),
        "members tried alone before the deadline are issued"
    );
    assert!(
        late > 0,
        "members not tried by the deadline are answered overloaded"
    );
    assert_eq!(1 + issued.len() + late, u.len(), "{outcomes:?}");
    // Members are tried in arrival order: the issued ones come right after the first.
    assert_eq!(issued, u[1..=issued.len()]);

    db.execute("DROP TRIGGER slow_copy ON user_coupons")
        .unwrap();
    assert_eq!(
        remaining(&store, &coupon).await,
        100 - i64::try_from(issued.len()).unwrap(),
        "only the issued members took a unit"
    );
    for (user, outcome) in u.iter().zip(&outcomes) {
        assert_eq!(
            store.holds(*user, coupon.id).await.unwrap(),
            ForUser::Found(outcome.is_ok()),
            "user {user}: {outcome:?}"
        );
    }
}

//! The point store's guarantees, on a real PostgreSQL (a fresh database per test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{PgIdempotencyStore, PgPointStore, PgUserRepository};
use chrono::Utc;
use diesel::{Connection, PgConnection, connection::SimpleConnection};
use domain::idempotency::{
    Completion, Fingerprint, IdempotencyKey, IdempotencyScope, LeaseLost, StoredResponse,
};
use domain::points::{ChargeAmount, Charged, Credit, PointKind};
use domain::ports::{Claim, CreditError, IdempotencyStore, PointStore, UserRepository};
use domain::user::ForUser;
use domain::{PageRequest, UserId};

struct Fixture {
    _db: TestDatabase,
    users: PgUserRepository,
    points: PgPointStore,
    keys: PgIdempotencyStore,
}

fn fixture() -> Fixture {
    let db = TestDatabase::create().unwrap();
    let pool = db.pool(16);
    Fixture {
        users: PgUserRepository::new(pool.clone()),
        points: PgPointStore::new(pool.clone()),
        keys: PgIdempotencyStore::new(pool),
        _db: db,
    }
}

fn credit(user: UserId, amount: i64) -> Credit {
    Credit::new(user, ChargeAmount::new(amount).unwrap())
}

#[tokio::test]
async fn a_new_user_has_an_empty_wallet_and_history() {
    let f = fixture();
    let user = f.users.create(Utc::now()).await.unwrap();
    assert_eq!(f.users.find(user.id).await.unwrap().unwrap().id, user.id);
    assert_eq!(f.points.balance(user.id).await.unwrap().unwrap().get(), 0);
    let page = f
        .points
        .history(user.id, PageRequest::default())
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!((page.items.len(), page.total_count), (0, 0));
}

#[tokio::test]
async fn unknown_users_have_no_wallet() {
    let f = fixture();
    let ghost = UserId::new(424_242).unwrap();
    assert!(f.users.find(ghost).await.unwrap().is_none());
    assert!(f.points.balance(ghost).await.unwrap().is_none());
    let err = f
        .points
        .credit(credit(ghost, 10), Utc::now(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, CreditError::UserNotFound));
    assert_eq!(
        f.points
            .history(ghost, PageRequest::default())
            .await
            .unwrap(),
        ForUser::UnknownUser
    );
}

#[tokio::test]
async fn credits_add_up_and_are_recorded_newest_first() {
    let f = fixture();
    let user = f.users.create(Utc::now()).await.unwrap().id;
    for amount in [100, 250, 1_000] {
        f.points
            .credit(credit(user, amount), Utc::now(), None)
            .await
            .unwrap();
    }
    assert_eq!(f.points.balance(user).await.unwrap().unwrap().get(), 1_350);
    let page = f
        .points
        .history(user, PageRequest::new(Some(1), Some(2)).unwrap())
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(page.total_count, 3);
    let seen: Vec<_> = page
        .items
        .iter()
        .map(|e| (e.kind, e.amount, e.balance_after.get(), e.order_id))
        .collect();
    assert_eq!(
        seen,
        vec![
            (PointKind::Charge, 1_000, 1_350, None),
            (PointKind::Charge, 250, 350, None)
        ]
    );
    let last = f
        .points
        .history(user, PageRequest::new(Some(2), Some(2)).unwrap())
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(
        last.items.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![100]
    );
}

#[tokio::test]
async fn a_credit_over_the_cap_is_refused_and_writes_nothing() {
    let f = fixture();
    let user = f.users.create(Utc::now()).await.unwrap().id;
    for _ in 0..100 {
        f.points
            .credit(credit(user, 1_000_000), Utc::now(), None)
            .await
            .unwrap();
    }
    let err = f
        .points
        .credit(credit(user, 1), Utc::now(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, CreditError::LimitExceeded(_)));
    assert_eq!(
        f.points.balance(user).await.unwrap().unwrap().get(),
        100_000_000
    );
    let page = f
        .points
        .history(user, PageRequest::default())
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(page.total_count, 100);
}

#[tokio::test]
async fn concurrent_credits_of_one_wallet_all_count() {
    let f = Arc::new(fixture());
    let user = f.users.create(Utc::now()).await.unwrap().id;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.points.credit(credit(user, 10), Utc::now(), None).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(f.points.balance(user).await.unwrap().unwrap().get(), 500);
    let page = f
        .points
        .history(user, PageRequest::new(None, Some(100)).unwrap())
        .await
        .unwrap()
        .found()
        .unwrap();
    let mut after: Vec<i64> = page.items.iter().map(|e| e.balance_after.get()).collect();
    after.sort_unstable();
    assert_eq!(after, (1..=50).map(|i| i * 10).collect::<Vec<_>>());
}

/// A wallet another transaction holds delays only its own charges: the overlapping charges
/// of other users are answered meanwhile (their group takes the wallets nobody holds), and
/// the held wallet's charges land once it is released, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_wallet_delays_only_its_own_charges() {
    let f = Arc::new(fixture());
    let mut users = Vec::new();
    for _ in 0..20 {
        users.push(f.users.create(Utc::now()).await.unwrap().id);
    }
    let held = users[0];
    let mut holder = PgConnection::establish(f._db.url()).unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM point_wallets WHERE user_id = {} FOR UPDATE",
            held.get()
        ))
        .unwrap();
    let charge = |user: UserId, amount: i64| {
        let f = f.clone();
        tokio::spawn(async move {
            f.points
                .credit(credit(user, amount), Utc::now(), None)
                .await
        })
    };
    let waiting = [charge(held, 1), charge(held, 2)];
    let others: Vec<_> = users[1..].iter().map(|u| charge(*u, 10)).collect();
    tokio::time::timeout(Duration::from_secs(4), async {
        for other in others {
            assert_eq!(other.await.unwrap().unwrap().balance.get(), 10);
        }
    })
    .await
    .expect("charges of other users waited for the held wallet");
    assert!(waiting.iter().all(|t| !t.is_finished()));

    holder.batch_execute("COMMIT").unwrap();
    let mut after = Vec::new();
    for task in waiting {
        after.push(task.await.unwrap().unwrap().balance.get());
    }
    after.sort_unstable();
    assert!(after == [1, 3] || after == [2, 3], "{after:?}");
    assert_eq!(f.points.balance(held).await.unwrap().unwrap().get(), 3);
}

fn scope(user: UserId, key: &str) -> IdempotencyScope {
    IdempotencyScope {
        user_id: user,
        method: "POST".into(),
        path: "/api/v1/points/charge".into(),
        key: IdempotencyKey::new(key).unwrap(),
    }
}

fn render() -> Box<dyn Fn(&Charged) -> StoredResponse + Send + Sync> {
    Box::new(|c: &Charged| StoredResponse {
        status: 200,
        body: c.balance.get().to_string().into_bytes(),
    })
}

#[tokio::test]
async fn a_completed_credit_stores_its_response_in_the_same_transaction() {
    let f = fixture();
    let user = f.users.create(Utc::now()).await.unwrap().id;
    let now = Utc::now();
    let fp = Fingerprint(vec![1, 2]);
    let Claim::Acquired(token) = f
        .keys
        .claim(&scope(user, "k1"), &fp, now, now)
        .await
        .unwrap()
    else {
        panic!("a fresh key is acquired");
    };
    let completion = Completion::new(scope(user, "k1"), token, render());
    let receipt = completion.receipt();
    f.points
        .credit(credit(user, 70), now, Some(completion))
        .await
        .unwrap();
    let Claim::Existing(record) = f
        .keys
        .claim(&scope(user, "k1"), &fp, now, now)
        .await
        .unwrap()
    else {
        panic!("the key is recorded");
    };
    assert_eq!(
        record.response,
        Some(StoredResponse {
            status: 200,
            body: b"70".to_vec()
        })
    );
    // The caller answers with the bytes the statement stored, read back from it.
    assert_eq!(receipt.take(), record.response);
}

#[tokio::test]
async fn a_credit_whose_key_was_taken_over_is_rolled_back() {
    let f = fixture();
    let user = f.users.create(Utc::now()).await.unwrap().id;
    let now = Utc::now();
    let fp = Fingerprint(vec![3]);
    let Claim::Acquired(stale) = f
        .keys
        .claim(&scope(user, "k2"), &fp, now, now)
        .await
        .unwrap()
    else {
        panic!("a fresh key is acquired");
    };
    let fresh = f
        .keys
        .take_over(&scope(user, "k2"), stale, now)
        .await
        .unwrap();
    assert!(fresh.is_some_and(|t| t != stale));
    let completion = Completion::new(scope(user, "k2"), stale, render());
    let receipt = completion.receipt();
    let err = f
        .points
        .credit(credit(user, 70), now, Some(completion))
        .await
        .unwrap_err();
    let CreditError::Unknown(cause) = err else {
        panic!("lease loss is not a business error")
    };
    assert!(domain::error::has_cause::<LeaseLost>(&cause));
    assert_eq!(f.points.balance(user).await.unwrap().unwrap().get(), 0);
    assert_eq!(
        receipt.take(),
        None,
        "nothing was stored, so nothing is kept"
    );
}

#[tokio::test]
async fn keys_are_taken_over_once_released_once_and_purged_by_age() {
    let f = fixture();
    let user = f.users.create(Utc::now()).await.unwrap().id;
    let now = Utc::now();
    let fp = Fingerprint(vec![4]);
    let s = scope(user, "k3");
    let Claim::Acquired(first) = f.keys.claim(&s, &fp, now, now).await.unwrap() else {
        panic!("a fresh key is acquired");
    };
    let second = f.keys.take_over(&s, first, now).await.unwrap().unwrap();
    assert!(
        f.keys.take_over(&s, first, now).await.unwrap().is_none(),
        "only one take-over wins"
    );
    assert!(
        !f.keys
            .complete(
                &s,
                first,
                &StoredResponse {
                    status: 409,
                    body: vec![]
                }
            )
            .await
            .unwrap()
    );
    f.keys.release(&s, second).await.unwrap();
    assert!(matches!(
        f.keys.claim(&s, &fp, now, now).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert_eq!(
        f.keys
            .purge_older_than(now - chrono::Duration::seconds(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.keys
            .purge_older_than(now + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
}

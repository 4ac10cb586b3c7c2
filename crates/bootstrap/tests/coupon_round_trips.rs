//! Round trips of the coupon use cases as the server wires them (the application's
//! `IssueCoupon`, `GetCoupon`, … on the PostgreSQL store and its batcher), counted on the pool: what one
//! request costs the database, use case and store together. A round trip is one
//! statement, `BEGIN` and `COMMIT` included; statements are used once before counting.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use adapter_postgres::test_support::{RoundTrips, TestDatabase};
use adapter_postgres::{IssueBatcher, PgCouponStore, PgPool, PgUserRepository};
use application::coupons::{
    CreateCoupon, CreateCouponCommand, GetCoupon, IssueCoupon, IssueCouponCommand,
    IssueCouponError, ListUserCoupons, ListUserCouponsError,
};
use chrono::{Duration, Utc};
use domain::coupon::{Coupon, CouponName, CouponQuantity, Discount};
use domain::ports::{SystemClock, UserRepository};
use domain::{CouponId, UserId};

struct Fixture {
    _db: TestDatabase,
    pool: PgPool,
    trips: RoundTrips,
    coupons: Wired,
    users: Vec<UserId>,
}

/// The coupon use cases on one store.
struct Wired {
    create: CreateCoupon,
    get: GetCoupon,
    issue: IssueCoupon,
    list: ListUserCoupons,
}

/// One pooled connection, so every statement is prepared once and then reused.
async fn fixture(users: usize) -> Fixture {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(1);
    let repo = PgUserRepository::new(pool.clone());
    let mut ids = Vec::new();
    for _ in 0..users {
        ids.push(repo.create(Utc::now()).await.unwrap().id);
    }
    Fixture {
        coupons: wire(&pool),
        _db: db,
        pool,
        trips,
        users: ids,
    }
}

/// The use cases as `bootstrap` wires them, with a terms cache of their own (as a
/// fresh instance has).
fn wire(pool: &PgPool) -> Wired {
    let store = Arc::new(PgCouponStore::grouped(
        pool.clone(),
        IssueBatcher::start(pool.clone()),
    ));
    Wired {
        create: CreateCoupon::new(store.clone(), Arc::new(SystemClock)),
        get: GetCoupon::new(store.clone()),
        issue: IssueCoupon::new(store.clone(), Arc::new(SystemClock)),
        list: ListUserCoupons::new(store, Arc::new(SystemClock)),
    }
}

async fn campaign(coupons: &Wired, quantity: i64) -> Coupon {
    let now = Utc::now();
    let new = CreateCouponCommand {
        name: CouponName::new("Hot").unwrap(),
        discount: Discount::Rate(10),
        total_quantity: CouponQuantity::new(quantity).unwrap(),
        starts_at: Some(now - Duration::minutes(1)),
        ends_at: now + Duration::days(1),
    };
    coupons.create.execute(new).await.unwrap()
}

fn cmd(user: UserId, coupon: &Coupon) -> IssueCouponCommand {
    IssueCouponCommand {
        user_id: user,
        coupon_id: coupon.id,
    }
}

#[tokio::test]
async fn issuing_a_coupon_costs_three_round_trips() {
    let f = fixture(3).await;
    let coupon = campaign(&f.coupons, 10).await;
    f.coupons
        .issue
        .execute(cmd(f.users[0], &coupon), None)
        .await
        .unwrap();

    let (issued, n) = f
        .trips
        .count(f.coupons.issue.execute(cmd(f.users[1], &coupon), None))
        .await;
    assert_eq!(issued.unwrap().user_id, f.users[1]);
    assert_eq!(
        n, 3,
        "BEGIN, the issuing statement, COMMIT; no read of the user"
    );

    // An instance that has not seen the campaign reads its terms once first (with the
    // statement already prepared on this connection, as a warm instance has it).
    f.coupons.get.execute(coupon.id).await.unwrap();
    let fresh = wire(&f.pool);
    let (issued, n) = f
        .trips
        .count(fresh.issue.execute(cmd(f.users[2], &coupon), None))
        .await;
    assert_eq!(issued.unwrap().user_id, f.users[2]);
    assert_eq!(n, 4, "the terms, then the three of an issue");
}

#[tokio::test]
async fn refusals_cost_no_more_than_an_issue() {
    let f = fixture(2).await;
    let coupon = campaign(&f.coupons, 1).await;
    let ghost = UserId::new(999_999).unwrap();
    f.coupons
        .issue
        .execute(cmd(f.users[0], &coupon), None)
        .await
        .unwrap();

    // Decided by the issuing statement itself.
    let (err, n) = f
        .trips
        .count(f.coupons.issue.execute(cmd(ghost, &coupon), None))
        .await;
    assert!(
        matches!(err, Err(IssueCouponError::UserNotFound)),
        "{err:?}"
    );
    assert_eq!(n, 3);
    let (err, n) = f
        .trips
        .count(f.coupons.issue.execute(cmd(f.users[1], &coupon), None))
        .await;
    assert!(matches!(err, Err(IssueCouponError::SoldOut)), "{err:?}");
    assert_eq!(n, 3);

    // Now known sold out: refused from the terms with one read of the user's holding
    // (once to prepare that read on this connection, then counted).
    f.coupons
        .issue
        .execute(cmd(f.users[1], &coupon), None)
        .await
        .unwrap_err();
    let (err, n) = f
        .trips
        .count(f.coupons.issue.execute(cmd(f.users[1], &coupon), None))
        .await;
    assert!(matches!(err, Err(IssueCouponError::SoldOut)), "{err:?}");
    assert_eq!(n, 1);
    let (err, n) = f
        .trips
        .count(f.coupons.issue.execute(cmd(f.users[0], &coupon), None))
        .await;
    assert!(
        matches!(err, Err(IssueCouponError::AlreadyIssued)),
        "{err:?}"
    );
    assert_eq!(n, 1);
    let (err, n) = f
        .trips
        .count(f.coupons.issue.execute(cmd(ghost, &coupon), None))
        .await;
    assert!(
        matches!(err, Err(IssueCouponError::UserNotFound)),
        "{err:?}"
    );
    assert_eq!(n, 1);

    // An unknown coupon: its lookup, then the user's.
    let nothing = CouponId::new(999_999).unwrap();
    let unknown = IssueCouponCommand {
        user_id: f.users[1],
        coupon_id: nothing,
    };
    f.coupons.issue.execute(unknown, None).await.unwrap_err();
    let (err, n) = f.trips.count(f.coupons.issue.execute(unknown, None)).await;
    assert!(
        matches!(err, Err(IssueCouponError::CouponNotFound)),
        "{err:?}"
    );
    assert_eq!(n, 2);
}

#[tokio::test]
async fn listing_a_users_coupons_and_reading_a_coupon_cost_one_round_trip_each() {
    let f = fixture(2).await;
    let coupon = campaign(&f.coupons, 5).await;
    let ghost = UserId::new(999_999).unwrap();
    f.coupons
        .issue
        .execute(cmd(f.users[0], &coupon), None)
        .await
        .unwrap();
    f.coupons.list.execute(f.users[0]).await.unwrap();
    f.coupons.get.execute(coupon.id).await.unwrap();

    let (mine, n) = f.trips.count(f.coupons.list.execute(f.users[0])).await;
    assert_eq!((mine.unwrap().len(), n), (1, 1));
    let (none, n) = f.trips.count(f.coupons.list.execute(f.users[1])).await;
    assert_eq!((none.unwrap().len(), n), (0, 1));
    let (err, n) = f.trips.count(f.coupons.list.execute(ghost)).await;
    assert!(
        matches!(err, Err(ListUserCouponsError::UserNotFound)),
        "{err:?}"
    );
    assert_eq!(n, 1);

    let (found, n) = f.trips.count(f.coupons.get.execute(coupon.id)).await;
    assert_eq!((found.unwrap().remaining_quantity, n), (4, 1));
}

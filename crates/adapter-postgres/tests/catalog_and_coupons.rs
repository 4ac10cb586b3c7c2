//! Product and coupon store guarantees on a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{IssueBatcher, PgCouponStore, PgProductRepository, PgUserRepository};
use chrono::{Duration, Utc};
use domain::coupon::{CouponName, CouponQuantity, Discount, NewCoupon, StoredCouponState};
use domain::ports::{CouponStore, IssueError, ProductRepository, RestockError, UserRepository};
use domain::product::{
    Description, NewProduct, Price, ProductName, ProductPatch, Restock, RestockQuantity, Stock,
};
use domain::user::ForUser;
use domain::{CouponId, PageRequest, ProductId, UserId};

struct Fixture {
    db: TestDatabase,
    users: PgUserRepository,
    products: PgProductRepository,
    coupons: PgCouponStore,
}

fn fixture() -> Fixture {
    let db = TestDatabase::create().unwrap();
    let pool = db.pool(40);
    Fixture {
        users: PgUserRepository::new(pool.clone()),
        products: PgProductRepository::new(pool.clone()),
        coupons: PgCouponStore::grouped(pool.clone(), IssueBatcher::start(pool)),
        db,
    }
}

fn new_product(name: &str, stock: i64) -> NewProduct {
    NewProduct {
        name: ProductName::new(name).unwrap(),
        description: Description::new("d").unwrap(),
        price: Price::new(1_000).unwrap(),
        stock: Stock::new(stock).unwrap(),
    }
}

fn new_coupon(quantity: i64) -> NewCoupon {
    let now = Utc::now();
    NewCoupon::new(
        CouponName::new("Hot").unwrap(),
        Discount::Rate(10),
        CouponQuantity::new(quantity).unwrap(),
        Some(now - Duration::minutes(1)),
        now + Duration::days(1),
        now,
    )
    .unwrap()
}

#[tokio::test]
async fn products_are_listed_by_id_in_pages() {
    let f = fixture();
    for i in 0..5 {
        f.products
            .create(new_product(&format!("p{i}"), i), Utc::now())
            .await
            .unwrap();
    }
    let page = f
        .products
        .list(PageRequest::new(Some(2), Some(2)).unwrap())
        .await
        .unwrap();
    assert_eq!(page.total_count, 5);
    let names: Vec<_> = page
        .items
        .iter()
        .map(|p| p.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["p2", "p3"]);
}

#[tokio::test]
async fn a_patch_changes_only_what_it_names() {
    let f = fixture();
    let p = f
        .products
        .create(new_product("Mug", 3), Utc::now())
        .await
        .unwrap();
    let patch = ProductPatch {
        price: Some(Price::new(1_500).unwrap()),
        ..ProductPatch::default()
    };
    let got = f
        .products
        .update(p.id, patch, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.name.as_str(), got.price.get(), got.stock.get()),
        ("Mug", 1_500, 3)
    );
    let ghost = ProductId::new(999).unwrap();
    assert!(
        f.products
            .update(ghost, ProductPatch::default(), Utc::now())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn restocks_refuse_unknown_products_and_overflow() {
    let f = fixture();
    let ghost = Restock::new(
        ProductId::new(999).unwrap(),
        RestockQuantity::new(1).unwrap(),
    );
    assert!(matches!(
        f.products.restock(ghost, Utc::now()).await,
        Err(RestockError::ProductNotFound)
    ));
    let p = f
        .products
        .create(new_product("Full", Stock::MAX - 1), Utc::now())
        .await
        .unwrap();
    let two = Restock::new(p.id, RestockQuantity::new(2).unwrap());
    assert!(matches!(
        f.products.restock(two, Utc::now()).await,
        Err(RestockError::StockLimitExceeded)
    ));
    let one = Restock::new(p.id, RestockQuantity::new(1).unwrap());
    assert_eq!(
        f.products
            .restock(one, Utc::now())
            .await
            .unwrap()
            .stock
            .get(),
        Stock::MAX
    );
}

#[tokio::test]
async fn fifty_concurrent_restocks_lose_nothing() {
    let f = Arc::new(fixture());
    let p = f
        .products
        .create(new_product("Mug", 0), Utc::now())
        .await
        .unwrap();
    let tasks: Vec<_> = (1..=50)
        .map(|q| {
            let f = f.clone();
            let r = Restock::new(p.id, RestockQuantity::new(q).unwrap());
            tokio::spawn(async move { f.products.restock(r, Utc::now()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        f.products.find(p.id).await.unwrap().unwrap().stock.get(),
        (1..=50).sum::<i64>()
    );
}

#[tokio::test]
async fn a_coupon_starts_with_its_whole_quantity_spread_over_stripes() {
    let f = fixture();
    let c = f
        .coupons
        .create(new_coupon(1_000), Utc::now())
        .await
        .unwrap();
    let found = f.coupons.find(c.id).await.unwrap().unwrap();
    assert_eq!(
        (found.total_quantity, found.remaining_quantity),
        (1_000, 1_000)
    );
    let stripes =
        f.db.query_scalar(&format!(
            "SELECT count(*) FROM coupon_stock_stripes WHERE coupon_id = {}",
            c.id
        ))
        .unwrap();
    assert_eq!(stripes, "32");
    assert!(
        f.coupons
            .find(CouponId::new(999).unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn issuing_claims_one_unit_once_per_user_and_stops_at_zero() {
    let f = fixture();
    let c = f.coupons.create(new_coupon(2), Utc::now()).await.unwrap();
    let (a, b, d) = (
        f.users.create(Utc::now()).await.unwrap().id,
        f.users.create(Utc::now()).await.unwrap().id,
        f.users.create(Utc::now()).await.unwrap().id,
    );
    let issued = f
        .coupons
        .issue(c.issue_to(a, Utc::now()), None)
        .await
        .unwrap();
    assert_eq!(
        (issued.user_id, issued.state, issued.expires_at),
        (a, StoredCouponState::Available, c.ends_at)
    );
    assert!(matches!(
        f.coupons.issue(c.issue_to(a, Utc::now()), None).await,
        Err(IssueError::AlreadyIssued)
    ));
    assert_eq!(
        f.coupons
            .find(c.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity,
        1,
        "a refusal claims nothing"
    );
    f.coupons
        .issue(c.issue_to(b, Utc::now()), None)
        .await
        .unwrap();
    assert!(matches!(
        f.coupons.issue(c.issue_to(d, Utc::now()), None).await,
        Err(IssueError::SoldOut)
    ));
    assert!(
        f.coupons.holds(d, c.id).await.unwrap() == ForUser::Found(false),
        "a sold-out issue leaves no copy behind"
    );
    assert_eq!(
        f.coupons.holds(a, c.id).await.unwrap(),
        ForUser::Found(true)
    );
    assert_eq!(
        f.coupons
            .find(c.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity,
        0
    );
    let ForUser::Found(mine) = f.coupons.of_user(a).await.unwrap() else {
        panic!("a known user");
    };
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].name.as_str(), mine[0].discount),
        ("Hot", Discount::Rate(10))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_contention_exactly_the_quantity_is_issued() {
    let f = Arc::new(fixture());
    let c = f.coupons.create(new_coupon(50), Utc::now()).await.unwrap();
    let mut users = Vec::new();
    for _ in 0..200 {
        users.push(f.users.create(Utc::now()).await.unwrap().id);
    }
    let tasks: Vec<_> = users
        .into_iter()
        .map(|u| {
            let (f, issue) = (f.clone(), c.issue_to(u, Utc::now()));
            tokio::spawn(async move { f.coupons.issue(issue, None).await })
        })
        .collect();
    let (mut ok, mut sold_out) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(IssueError::SoldOut) => sold_out += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, sold_out), (50, 150));
    assert_eq!(
        f.coupons
            .find(c.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity,
        0
    );
    let copies =
        f.db.query_scalar(&format!(
            "SELECT count(*) FROM user_coupons WHERE coupon_id = {}",
            c.id
        ))
        .unwrap();
    assert_eq!(copies, "50");
}

#[tokio::test]
async fn an_issue_to_an_unknown_user_is_refused_without_claiming() {
    let f = fixture();
    let c = f.coupons.create(new_coupon(3), Utc::now()).await.unwrap();
    let err = f
        .coupons
        .issue(c.issue_to(UserId::new(999).unwrap(), Utc::now()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, IssueError::UserNotFound), "{err:?}");
    assert_eq!(
        f.coupons
            .find(c.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_issues_give_each_request_its_own_outcome() {
    let f = Arc::new(fixture());
    let c = f.coupons.create(new_coupon(3), Utc::now()).await.unwrap();
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(f.users.create(Utc::now()).await.unwrap().id);
    }
    let ghost = UserId::new(999_999).unwrap();
    // Every user twice, plus an unknown user, all at once: many land in one group.
    let requests: Vec<UserId> = users
        .iter()
        .chain(users.iter())
        .copied()
        .chain([ghost])
        .collect();
    let tasks: Vec<_> = requests
        .iter()
        .map(|u| {
            let (f, issue) = (f.clone(), c.issue_to(*u, Utc::now()));
            tokio::spawn(async move { f.coupons.issue(issue, None).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let issued = outcomes.iter().filter(|o| o.is_ok()).count();
    let not_found = outcomes
        .iter()
        .filter(|o| matches!(o, Err(IssueError::UserNotFound)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(IssueError::SoldOut | IssueError::AlreadyIssued)))
        .count();
    assert_eq!((issued, not_found, refused), (3, 1, 5), "{outcomes:?}");
    assert_eq!(
        f.coupons
            .find(c.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity,
        0
    );
    for u in &users {
        let ForUser::Found(copies) = f.coupons.of_user(*u).await.unwrap() else {
            panic!("a known user");
        };
        let copies = copies.len();
        assert!(copies <= 1);
    }
}

#[tokio::test]
async fn terms_come_from_memory_and_learn_that_a_coupon_sold_out() {
    let f = fixture();
    let c = f.coupons.create(new_coupon(1), Utc::now()).await.unwrap();
    let terms = f.coupons.terms(c.id).await.unwrap().unwrap();
    assert_eq!(
        (terms.name.as_str(), terms.remaining_quantity, terms.ends_at),
        ("Hot", 1, c.ends_at)
    );
    let (a, b) = (
        f.users.create(Utc::now()).await.unwrap().id,
        f.users.create(Utc::now()).await.unwrap().id,
    );
    f.coupons
        .issue(c.issue_to(a, Utc::now()), None)
        .await
        .unwrap();
    // The cached terms may lag behind the claim...
    assert_eq!(
        f.coupons
            .terms(c.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity,
        1
    );
    // ...but the claim is exact, and a sell-out is remembered.
    assert!(matches!(
        f.coupons.issue(c.issue_to(b, Utc::now()), None).await,
        Err(IssueError::SoldOut)
    ));
    assert_eq!(
        f.coupons
            .terms(c.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity,
        0
    );
    assert!(
        f.coupons
            .terms(CouponId::new(999).unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn each_issue_claims_exactly_one_unit_whatever_plan_the_planner_picks() {
    let f = fixture();
    // Statistics and cached generic plans (after five executions) change plans: with a
    // realistic table, a locking `LIMIT 1` subquery in FROM was once rescanned per row and
    // took a unit from every stripe it passed.
    for quantity in (1..=60).map(|i| i * 7) {
        f.coupons
            .create(new_coupon(quantity), Utc::now())
            .await
            .unwrap();
    }
    f.db.execute("ANALYZE coupon_stock_stripes").unwrap();
    // Newer than the statistics: the planner expects one stripe row for them.
    let hot = f.coupons.create(new_coupon(3), Utc::now()).await.unwrap();
    let big = f.coupons.create(new_coupon(100), Utc::now()).await.unwrap();
    let mut users = Vec::new();
    for _ in 0..12 {
        users.push(f.users.create(Utc::now()).await.unwrap().id);
    }
    for (n, user) in users.iter().enumerate() {
        f.coupons
            .issue(big.issue_to(*user, Utc::now()), None)
            .await
            .unwrap();
        let left = f
            .coupons
            .find(big.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity;
        assert_eq!(left, 100 - (n as i64 + 1), "after {} issues", n + 1);
    }
    for (n, user) in users.iter().take(3).enumerate() {
        f.coupons
            .issue(hot.issue_to(*user, Utc::now()), None)
            .await
            .unwrap();
        let left = f
            .coupons
            .find(hot.id)
            .await
            .unwrap()
            .unwrap()
            .remaining_quantity;
        assert_eq!(left, 3 - (n as i64 + 1));
    }
}

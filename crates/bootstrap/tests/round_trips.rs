//! Database round trips of the user, point and order use cases as the server wires them
//! (application use cases on the PostgreSQL stores), counted on the pool: what one
//! request costs the database, use case and store together. A round trip is one
//! statement, `BEGIN` and `COMMIT` included; the pool's checkout sends nothing. Every
//! statement is used once before counting, so the counts are those of a warm
//! connection (a statement's first use on a connection also prepares it).
//!
//! The coupon use cases have their own suite (`coupon_round_trips.rs`), the catalogue its
//! store tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::sync::Arc;

use adapter_postgres::test_support::{RoundTrips, TestDatabase};
use adapter_postgres::{
    PgIdempotencyStore, PgOrderStore, PgPointStore, PgPool, PgProductRepository, PgUserRepository,
};
use application::idempotency::{Begin, Idempotency};
use application::orders::{
    CancelOrder, ExpireDueOrders, GetOrder, ListOrders, PayOrder, PayOrderCommand, PayOrderError,
    PlaceOrder, PlaceOrderCommand, PlaceOrderError,
};
use application::points::{ChargeCommand, ChargeError, ChargePoints, GetBalance, GetPointHistory};
use application::users::{CreateUser, RegisterSubject, ResolveSubject, SubjectCache};
use chrono::{DateTime, Duration, Utc};
use domain::idempotency::{
    Completion, Fingerprint, IdempotencyKey, IdempotencyScope, StoredResponse,
};
use domain::order::{OrderItems, OrderQuantity, OrderStatus};
use domain::points::{ChargeAmount, Charged};
use domain::ports::{Clock, ProductRepository, SystemClock};
use domain::product::{Description, NewProduct, Price, ProductName, Stock};
use domain::user::{Registration, Subject};
use domain::{OrderId, PageRequest, ProductId, UserId};

/// A clock stopped at one instant: whatever the instance believes the time is, the
/// database's clock decides deadlines.
struct StoppedClock(DateTime<Utc>);

impl Clock for StoppedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// The order use cases on one store.
struct OrderUseCases {
    place: PlaceOrder,
    pay: PayOrder,
    cancel: CancelOrder,
    get: GetOrder,
    list: ListOrders,
    expire: ExpireDueOrders,
}

fn pay(user: UserId, order_id: OrderId) -> PayOrderCommand {
    PayOrderCommand {
        user_id: user,
        order_id,
    }
}

struct Fixture {
    db: TestDatabase,
    pool: PgPool,
    trips: RoundTrips,
    clock: Arc<dyn Clock>,
    /// The pool's size.
    connections: u32,
}

impl Fixture {
    /// One pooled connection, so every statement is prepared once and then reused.
    fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self::with_pool(1, clock)
    }

    /// The statements `calls` cost when all run at once (each checks its own answer).
    ///
    /// They overlap whatever the scheduler does: every pooled connection is held until each
    /// call has started, so none can finish before the last one arrives (otherwise a busy
    /// machine may run them one after another, each alone).
    async fn statements_of_overlapping<R>(&self, calls: impl IntoIterator<Item = R>) -> usize
    where
        R: std::future::Future<Output = ()>,
    {
        let held: Vec<_> = (0..self.connections)
            .map(|_| self.pool.get().unwrap())
            .collect();
        self.trips.reset();
        let mut all = std::pin::pin!(futures_util::future::join_all(calls));
        let started =
            std::future::poll_fn(|cx| std::task::Poll::Ready(all.as_mut().poll(cx).is_pending()))
                .await;
        assert!(
            started,
            "the calls finished while every connection was held"
        );
        drop(held);
        all.await;
        self.trips.get()
    }

    /// `connections` pooled connections: more than one lets reads overlap.
    fn with_pool(connections: u32, clock: Arc<dyn Clock>) -> Self {
        let db = TestDatabase::create().unwrap();
        let (pool, trips) = db.counting_pool(connections);
        Self {
            db,
            pool,
            trips,
            clock,
            connections,
        }
    }

    fn create_user(&self) -> CreateUser {
        CreateUser::new(
            Arc::new(PgUserRepository::new(self.pool.clone())),
            self.clock.clone(),
        )
    }

    fn charge(&self) -> ChargePoints {
        ChargePoints::new(
            Arc::new(PgPointStore::new(self.pool.clone())),
            self.clock.clone(),
        )
    }

    fn orders(&self, payment_timeout: Duration) -> OrderUseCases {
        let store = Arc::new(PgOrderStore::new(self.pool.clone()));
        OrderUseCases {
            place: PlaceOrder::new(store.clone(), payment_timeout),
            pay: PayOrder::new(store.clone()),
            cancel: CancelOrder::new(store.clone()),
            get: GetOrder::new(store.clone()),
            list: ListOrders::new(store.clone()),
            expire: ExpireDueOrders::new(store),
        }
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::new(
            Arc::new(PgIdempotencyStore::new(self.pool.clone())),
            self.clock.clone(),
        )
    }

    async fn user(&self) -> UserId {
        self.create_user().execute().await.unwrap().id
    }

    async fn funded_user(&self, amount: i64) -> UserId {
        let user = self.user().await;
        self.charge()
            .execute(charge(user, amount), None)
            .await
            .unwrap();
        user
    }

    async fn product(&self, price: i64, stock: i64) -> ProductId {
        PgProductRepository::new(self.pool.clone())
            .create(
                NewProduct {
                    name: ProductName::new("Keyboard").unwrap(),
                    description: Description::default(),
                    price: Price::new(price).unwrap(),
                    stock: Stock::new(stock).unwrap(),
                },
                Utc::now(),
            )
            .await
            .unwrap()
            .id
    }
}

fn charge(user: UserId, amount: i64) -> ChargeCommand {
    ChargeCommand {
        user_id: user,
        amount: ChargeAmount::new(amount).unwrap(),
    }
}

fn order_of(user: UserId, products: &[ProductId]) -> PlaceOrderCommand {
    PlaceOrderCommand {
        user_id: user,
        items: OrderItems::new(
            products
                .iter()
                .map(|p| (*p, OrderQuantity::new(2).unwrap()))
                .collect(),
        )
        .unwrap(),
        user_coupon_id: None,
    }
}

/// The charge response as the HTTP adapter renders it.
fn render_charged(charged: &Charged) -> StoredResponse {
    StoredResponse {
        status: 200,
        body: serde_json::to_vec(&serde_json::json!({
            "userId": charged.user_id.get(),
            "balance": charged.balance.get(),
        }))
        .unwrap(),
    }
}

fn scope(user: UserId, key: &str) -> IdempotencyScope {
    IdempotencyScope {
        user_id: user,
        method: "POST".into(),
        path: "/api/v1/points/charge".into(),
        key: IdempotencyKey::new(key).unwrap(),
    }
}

#[tokio::test]
async fn creating_a_user_with_their_wallet_is_one_round_trip() {
    let f = Fixture::new();
    f.user().await;
    let (user, n) = f.trips.count(f.create_user().execute()).await;
    user.unwrap();
    assert_eq!(n, 1);
}

/// Registering a subject is one round trip, first time or not; resolving it costs none
/// on the instance that registered it, and one on another instance, once.
#[tokio::test]
async fn registering_a_subject_is_one_round_trip_and_resolving_a_known_one_none() {
    let f = Fixture::new();
    let users = Arc::new(PgUserRepository::new(f.pool.clone()));
    let cache = SubjectCache::new(64);
    let register = RegisterSubject::new(users.clone(), f.clock.clone(), cache.clone());
    let resolve = ResolveSubject::new(users.clone(), cache);
    let subject = |raw: &str| Subject::new("https://id.example", raw).unwrap();
    // Warm the connection's statements.
    register.execute(&subject("warm")).await.unwrap();
    ResolveSubject::new(users.clone(), SubjectCache::new(64))
        .execute(&subject("warm"))
        .await
        .unwrap();

    let (created, n) = f.trips.count(register.execute(&subject("new"))).await;
    assert_eq!((created.unwrap().1, n), (Registration::Created, 1));
    let (again, n) = f.trips.count(register.execute(&subject("new"))).await;
    assert_eq!((again.unwrap().1, n), (Registration::Existing, 1));
    let (resolved, n) = f.trips.count(resolve.execute(&subject("new"))).await;
    resolved.unwrap();
    assert_eq!(n, 0, "the registering instance remembers the subject");

    let other_instance = ResolveSubject::new(users, SubjectCache::new(64));
    let (first, n_first) = f.trips.count(other_instance.execute(&subject("new"))).await;
    let (then, n_then) = f.trips.count(other_instance.execute(&subject("new"))).await;
    assert_eq!(first.unwrap(), then.unwrap());
    assert_eq!((n_first, n_then), (1, 0));
}

/// Balance reads that overlap are answered together: fifty at once cost a handful of
/// statements, not fifty, and each gets its own balance, or its own refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_balance_reads_share_statements_and_each_gets_its_own_answer() {
    let f = Fixture::with_pool(4, Arc::new(SystemClock));
    let mut users = Vec::new();
    for n in 1..=49 {
        users.push((f.funded_user(n * 100).await, Some(n * 100)));
    }
    users.push((UserId::new(987_654).unwrap(), None));
    let balance = GetBalance::new(Arc::new(PgPointStore::new(f.pool.clone())));
    balance.execute(users[0].0).await.unwrap();

    let n = f
        .statements_of_overlapping(users.iter().map(|(user, want)| {
            let balance = &balance;
            async move {
                assert_eq!(balance.execute(*user).await.ok().map(|b| b.get()), *want);
            }
        }))
        .await;
    assert!(
        n < users.len() / 2,
        "50 overlapping reads took {n} statements"
    );
}

/// Product details likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_product_reads_share_statements_and_each_gets_its_own_answer() {
    let f = Fixture::with_pool(4, Arc::new(SystemClock));
    let mut products = Vec::new();
    for n in 1..=49 {
        products.push((f.product(n * 10, 5).await, Some(n * 10)));
    }
    products.push((ProductId::new(987_654).unwrap(), None));
    let repository = PgProductRepository::new(f.pool.clone());
    repository.find(products[0].0).await.unwrap();

    let n = f
        .statements_of_overlapping(products.iter().map(|(id, want)| {
            let repository = &repository;
            async move {
                let found = repository.find(*id).await.unwrap();
                assert_eq!(found.as_ref().map(|p| p.id), want.map(|_| *id));
                assert_eq!(found.map(|p| p.price.get()), *want);
            }
        }))
        .await;
    assert!(
        n < products.len() / 2,
        "50 overlapping reads took {n} statements"
    );
}

/// Catalogue pages likewise: overlapping pages of any numbers and sizes (some covering
/// the same products, some past the end) share statements, and each gets exactly its own
/// products and the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_page_reads_share_statements_and_each_gets_its_own_page() {
    let f = Fixture::with_pool(4, Arc::new(SystemClock));
    let mut ids = Vec::new();
    for n in 1..=12 {
        ids.push(f.product(n * 10, 5).await);
    }
    let repository = PgProductRepository::new(f.pool.clone());
    let page =
        |n: u32, size: u32| PageRequest::new(Some(i64::from(n)), Some(i64::from(size))).unwrap();
    repository.list(page(1, 5)).await.unwrap();
    // (page, size): 5s from the start to past the end, 3s and a 4 and a 7 across them.
    let pages = [
        (1, 5),
        (2, 5),
        (3, 5),
        (4, 5),
        (1, 3),
        (2, 3),
        (3, 4),
        (2, 7),
    ];

    let ids = &ids;
    let n = f
        .statements_of_overlapping((0..48_usize).map(|i| {
            let repository = &repository;
            async move {
                let (n, size) = pages[i % pages.len()];
                let got = repository.list(page(n, size)).await.unwrap();
                let want: Vec<ProductId> = ids
                    .iter()
                    .copied()
                    .skip(size as usize * (n as usize - 1))
                    .take(size as usize)
                    .collect();
                assert_eq!(
                    got.items.iter().map(|p| p.id).collect::<Vec<_>>(),
                    want,
                    "page {n} of size {size}"
                );
                assert_eq!(got.total_count, 12);
            }
        }))
        .await;
    assert!(n < 24, "48 overlapping page reads took {n} statements");
}

#[tokio::test]
async fn reading_a_balance_is_one_round_trip_and_a_history_page_one() {
    let f = Fixture::new();
    let user = f.funded_user(500).await;
    let balance = GetBalance::new(Arc::new(PgPointStore::new(f.pool.clone())));
    let history = GetPointHistory::new(Arc::new(PgPointStore::new(f.pool.clone())));
    balance.execute(user).await.unwrap();
    history.execute(user, PageRequest::default()).await.unwrap();

    let (got, n) = f.trips.count(balance.execute(user)).await;
    assert_eq!((got.unwrap().get(), n), (500, 1));
    let (page, n) = f
        .trips
        .count(history.execute(user, PageRequest::default()))
        .await;
    assert_eq!((page.unwrap().total_count, n), (1, 1));
    // An unknown user is told apart in the same statement.
    let ghost = UserId::new(987_654).unwrap();
    let (page, n) = f
        .trips
        .count(history.execute(ghost, PageRequest::default()))
        .await;
    assert!(page.is_err());
    assert_eq!(n, 1);
}

/// Charges without a key that overlap share statements too: fifty-two at once — thirty
/// users, ten of them charged three times, a full wallet and an unknown user — cost fewer
/// than half as many statements (a user charged twice in one group makes that group one
/// transaction of one statement per round), and each gets its own answer: every charge
/// lands once with its own history row, a user's charges one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_share_statements_and_each_lands_once() {
    let f = Fixture::with_pool(4, Arc::new(SystemClock));
    let mut users = Vec::new();
    for _ in 0..30 {
        users.push(f.funded_user(1_000).await);
    }
    let full = f.funded_user(1_000_000).await;
    f.db.execute(&format!(
        "UPDATE point_wallets SET balance = 100000000 WHERE user_id = {}",
        full.get()
    ))
    .unwrap();
    let unknown = UserId::new(987_654).unwrap();
    let charges = ChargePoints::new(Arc::new(PgPointStore::new(f.pool.clone())), f.clock.clone());
    charges.execute(charge(users[0], 1), None).await.unwrap();

    let mut wanted: Vec<(UserId, i64)> = users.iter().map(|u| (*u, 10)).collect();
    for (n, user) in users.iter().take(10).enumerate() {
        wanted.push((*user, 100 + i64::try_from(n).unwrap()));
        wanted.push((*user, 1_000 + i64::try_from(n).unwrap()));
    }
    wanted.push((full, 500));
    wanted.push((unknown, 500));
    let answers = std::sync::Mutex::new(Vec::new());
    let n = f
        .statements_of_overlapping(wanted.iter().map(|(user, amount)| {
            let (charges, answers) = (&charges, &answers);
            async move {
                let answer = charges.execute(charge(*user, *amount), None).await;
                answers.lock().unwrap().push((*user, *amount, answer));
            }
        }))
        .await;
    assert!(
        n < wanted.len() / 2,
        "52 overlapping charges took {n} statements"
    );

    let mut answered: std::collections::HashMap<UserId, Vec<i64>> = Default::default();
    for (user, _, answer) in answers.into_inner().unwrap() {
        match answer {
            Ok(charged) => answered
                .entry(user)
                .or_default()
                .push(charged.balance.get()),
            Err(ChargeError::BalanceLimitExceeded) => assert_eq!(user, full),
            Err(ChargeError::UserNotFound) => assert_eq!(user, unknown),
            Err(err) => panic!("charge of {user}: {err}"),
        }
    }
    for (i, user) in users.iter().enumerate() {
        let i = i64::try_from(i).unwrap();
        let (first, extra) = (i64::from(i == 0), if i < 10 { 1_100 + 2 * i } else { 0 });
        let want = 1_000 + first + 10 + extra;
        let history =
            f.db.query_scalar(&format!(
                "SELECT w.balance || ' ' || string_agg(h.amount::text, ',') || ' ' || \
                        string_agg(h.balance_after::text, ',') \
                 FROM point_wallets w JOIN point_history h ON h.user_id = w.user_id \
                 WHERE w.user_id = {} GROUP BY w.balance",
                user.get()
            ))
            .unwrap();
        let [balance, amounts, afters] = history.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{history}");
        };
        let numbers =
            |list: &str| -> Vec<i64> { list.split(',').map(|v| v.parse().unwrap()).collect() };
        let (amounts, afters) = (numbers(amounts), numbers(afters));
        // Every charge once, with its own row; the balance is their sum.
        assert_eq!(balance.parse::<i64>().unwrap(), want, "user {user}");
        assert_eq!(amounts.iter().sum::<i64>(), want, "user {user}");
        assert_eq!(
            amounts.len(),
            1 + usize::from(i == 0) + 1 + if i < 10 { 2 } else { 0 }
        );
        // Each answer is the balance one of its rows recorded, none shared.
        let mut mine = answered.remove(user).unwrap_or_default();
        mine.sort_unstable();
        mine.dedup();
        assert_eq!(mine.len(), if i < 10 { 3 } else { 1 }, "user {user}");
        assert!(
            mine.iter().all(|b| afters.contains(b)),
            "user {user}: {mine:?} vs {afters:?}"
        );
        assert_eq!(mine.last(), Some(&want));
    }
    assert_eq!(
        f.db.query_scalar(&format!(
            "SELECT balance FROM point_wallets WHERE user_id = {}",
            full.get()
        ))
        .unwrap(),
        "100000000"
    );
}

#[tokio::test]
async fn a_charge_is_one_round_trip_a_refused_one_two_and_a_keyed_charge_two() {
    let f = Fixture::new();
    let user = f.funded_user(100).await;
    let (charged, n) = f
        .trips
        .count(f.charge().execute(charge(user, 100), None))
        .await;
    assert_eq!((charged.unwrap().balance.get(), n), (200, 1));

    // A refusal: one read more says which (prepared by a first refusal).
    let unknown = UserId::new(987_654).unwrap();
    f.charge()
        .execute(charge(unknown, 100), None)
        .await
        .unwrap_err();
    let (refused, n) = f
        .trips
        .count(f.charge().execute(charge(unknown, 100), None))
        .await;
    assert!(matches!(refused, Err(ChargeError::UserNotFound)));
    assert_eq!(n, 2);
    let full = f.funded_user(1_000_000).await;
    f.db.execute(&format!(
        "UPDATE point_wallets SET balance = 100000000 WHERE user_id = {}",
        full.get()
    ))
    .unwrap();
    let (refused, n) = f
        .trips
        .count(f.charge().execute(charge(full, 100), None))
        .await;
    assert!(matches!(refused, Err(ChargeError::BalanceLimitExceeded)));
    assert_eq!(n, 2);

    // With an Idempotency-Key: claim the key, then charge and store the response.
    let idempotency = f.idempotency();
    let keyed = |key: &'static str| {
        let idempotency = idempotency.clone();
        let charge = f.charge();
        async move {
            let scope = scope(user, key);
            let Begin::Proceed(token) = idempotency
                .begin(&scope, &Fingerprint(vec![1]))
                .await
                .unwrap()
            else {
                panic!("a fresh key proceeds");
            };
            let completion = Completion::new(scope, token, render_charged);
            charge
                .execute(self::charge(user, 100), Some(completion))
                .await
                .unwrap()
        }
    };
    keyed("warm-up").await;
    idempotency
        .begin(&scope(user, "warm-up"), &Fingerprint(vec![1]))
        .await
        .unwrap();
    let (charged, n) = f.trips.count(keyed("the-key")).await;
    assert_eq!(n, 2);
    assert_eq!(charged.balance.get(), 400);

    // The response stored with the credit is, byte for byte, the one the request sent.
    let (replay, n) = f
        .trips
        .count(idempotency.begin(&scope(user, "the-key"), &Fingerprint(vec![1])))
        .await;
    assert_eq!(n, 1, "a replay's claim returns the record it found");
    assert_eq!(replay.unwrap(), Begin::Replay(render_charged(&charged)));
}

#[tokio::test]
async fn placing_an_order_is_four_round_trips_and_paying_it_four() {
    let f = Fixture::new();
    let orders = f.orders(Duration::minutes(5));
    let user = f.funded_user(1_000_000).await;
    let (one, two) = (f.product(1_000, 100).await, f.product(2_500, 100).await);
    // Warm every statement.
    let warm = orders
        .place
        .execute(order_of(user, &[one, two]), None)
        .await
        .unwrap();
    orders.pay.execute(pay(user, warm.id), None).await.unwrap();

    let (placed, n) = f
        .trips
        .count(orders.place.execute(order_of(user, &[two, one]), None))
        .await;
    let placed = placed.unwrap();
    assert_eq!(n, 4, "BEGIN, take the stock, store the order, COMMIT");
    assert_eq!(placed.lines.len(), 2);
    assert_eq!(placed.total_amount.get(), 2 * 1_000 + 2 * 2_500);

    let (paid, n) = f
        .trips
        .count(orders.pay.execute(pay(user, placed.id), None))
        .await;
    assert_eq!(
        n, 4,
        "BEGIN, mark paid, debit with history and event, COMMIT"
    );
    assert_eq!(paid.unwrap().paid_amount, placed.pay_amount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_placements_share_transactions_and_each_is_stored_once() {
    let f = Fixture::with_pool(4, Arc::new(SystemClock));
    let orders = f.orders(Duration::minutes(5));
    let (one, two) = (f.product(1_000, 1_000).await, f.product(500, 1_000).await);
    let mut users = Vec::new();
    for _ in 0..30 {
        users.push(f.user().await);
    }
    let answers = std::sync::Mutex::new(Vec::new());
    let n = f
        .statements_of_overlapping(users.iter().map(|user| {
            let (orders, answers) = (&orders, &answers);
            async move {
                let placed = orders
                    .place
                    .execute(order_of(*user, &[one, two]), None)
                    .await;
                answers.lock().unwrap().push((*user, placed));
            }
        }))
        .await;
    // Alone, each placement is 4 (BEGIN, take the stock, store the order, COMMIT): 120.
    assert!(
        n < users.len(),
        "30 overlapping placements took {n} statements"
    );
    let mut ids = Vec::new();
    for (user, placed) in answers.into_inner().unwrap() {
        let placed = placed.unwrap();
        assert_eq!(placed.user_id, user);
        assert_eq!(placed.total_amount.get(), 2 * 1_000 + 2 * 500);
        ids.push(placed.id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    assert_eq!(
        f.db.query_scalar(
            "SELECT count(DISTINCT o.id) || ' ' || count(l.*) || ' ' || \
                    (SELECT string_agg(stock::text, ',' ORDER BY id) FROM products) \
             FROM orders o JOIN order_lines l ON l.order_id = o.id"
        )
        .unwrap(),
        "30 60 940,940"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_share_transactions_and_each_pays_once() {
    let f = Fixture::with_pool(4, Arc::new(SystemClock));
    let orders = f.orders(Duration::minutes(5));
    let product = f.product(1_000, 1_000).await;
    let mut placed = Vec::new();
    for _ in 0..30 {
        let user = f.funded_user(10_000).await;
        let order = orders
            .place
            .execute(order_of(user, &[product]), None)
            .await
            .unwrap();
        placed.push((user, order.id));
    }
    let answers = std::sync::Mutex::new(Vec::new());
    let n = f
        .statements_of_overlapping(placed.iter().map(|(user, order)| {
            let (orders, answers) = (&orders, &answers);
            async move {
                let paid = orders.pay.execute(pay(*user, *order), None).await;
                answers.lock().unwrap().push((*user, *order, paid));
            }
        }))
        .await;
    // Alone, each payment is 4 (BEGIN, mark paid, debit, COMMIT): 120.
    assert!(
        n < placed.len(),
        "30 overlapping payments took {n} statements"
    );
    for (user, order, paid) in answers.into_inner().unwrap() {
        let paid = paid.unwrap();
        assert_eq!((paid.user_id, paid.order_id), (user, order));
        assert_eq!(paid.balance.get(), 10_000 - 2_000, "user {user}");
    }
    assert_eq!(
        f.db.query_scalar(
            "SELECT count(DISTINCT o.id) || ' ' || count(h.*) || ' ' || count(e.*) \
             FROM orders o JOIN point_history h ON h.order_id = o.id AND h.kind = 'USE' \
             JOIN outbox_events e ON e.aggregate_id = o.id WHERE o.status = 'PAID'"
        )
        .unwrap(),
        "30 30 30"
    );
}

#[tokio::test]
async fn cancelling_reading_listing_and_an_expiry_scan_are_one_round_trip_each() {
    let f = Fixture::new();
    let orders = f.orders(Duration::minutes(5));
    let user = f.funded_user(1_000).await;
    let product = f.product(100, 10).await;
    let warm = orders
        .place
        .execute(order_of(user, &[product]), None)
        .await
        .unwrap();
    orders.cancel.execute(user, warm.id).await.unwrap();
    orders.get.execute(user, warm.id).await.unwrap();
    orders
        .list
        .execute(user, PageRequest::default())
        .await
        .unwrap();
    orders.expire.execute().await.unwrap();
    let placed = orders
        .place
        .execute(order_of(user, &[product]), None)
        .await
        .unwrap();

    let (got, n) = f.trips.count(orders.get.execute(user, placed.id)).await;
    assert_eq!((got.unwrap().lines.len(), n), (1, 1));
    let (page, n) = f
        .trips
        .count(orders.list.execute(user, PageRequest::default()))
        .await;
    assert_eq!((page.unwrap().total_count, n), (2, 1));
    let (cancelled, n) = f.trips.count(orders.cancel.execute(user, placed.id)).await;
    assert_eq!((cancelled.unwrap().status, n), (OrderStatus::Cancelled, 1));
    let (expired, n) = f.trips.count(orders.expire.execute()).await;
    assert_eq!((expired.unwrap(), n), (0, 1));
    assert_eq!(
        f.db.query_scalar(&format!(
            "SELECT stock FROM products WHERE id = {}",
            product.get()
        ))
        .unwrap(),
        "10"
    );
}

#[tokio::test]
async fn a_refusal_costs_one_diagnosing_read_more() {
    let f = Fixture::new();
    let orders = f.orders(Duration::minutes(5));
    let user = f.user().await;
    let product = f.product(100, 10).await;
    let placed = orders
        .place
        .execute(order_of(user, &[product]), None)
        .await
        .unwrap();
    orders
        .pay
        .execute(pay(user, placed.id), None)
        .await
        .unwrap_err();

    // Short of points: BEGIN, mark paid, debit (nothing), ROLLBACK.
    let (err, n) = f
        .trips
        .count(orders.pay.execute(pay(user, placed.id), None))
        .await;
    assert!(matches!(
        err.unwrap_err(),
        PayOrderError::InsufficientBalance
    ));
    assert_eq!(n, 4);
    // Another user's order: BEGIN, mark paid (nothing), ROLLBACK, then the read.
    let stranger = f.user().await;
    orders
        .pay
        .execute(pay(stranger, placed.id), None)
        .await
        .unwrap_err();
    let (err, n) = f
        .trips
        .count(orders.pay.execute(pay(stranger, placed.id), None))
        .await;
    assert!(matches!(err.unwrap_err(), PayOrderError::OrderNotFound));
    assert_eq!(n, 4);
    // Out of stock: BEGIN, take the stock (short), ROLLBACK, then the read.
    let mut greedy = order_of(user, &[product]);
    greedy.items = OrderItems::new(vec![(product, OrderQuantity::new(11).unwrap())]).unwrap();
    orders
        .place
        .execute(greedy.clone(), None)
        .await
        .unwrap_err();
    let (err, n) = f.trips.count(orders.place.execute(greedy, None)).await;
    assert!(matches!(err.unwrap_err(), PlaceOrderError::OutOfStock(p) if p == product));
    assert_eq!(n, 4);
}

#[tokio::test]
async fn an_instance_whose_clock_stopped_still_cannot_pay_past_the_deadline() {
    // The instance believes it is still the moment the order was placed; the database
    // knows the order's time is up.
    let f = Fixture::with_clock(Arc::new(StoppedClock(Utc::now())));
    let orders = f.orders(Duration::milliseconds(300));
    let user = f.funded_user(10_000).await;
    let product = f.product(100, 10).await;
    let placed = orders
        .place
        .execute(order_of(user, &[product]), None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let err = orders
        .pay
        .execute(pay(user, placed.id), None)
        .await
        .unwrap_err();
    assert!(matches!(err, PayOrderError::OrderExpired), "{err:?}");
    assert_eq!(
        f.db.query_scalar(&format!(
            "SELECT status FROM orders WHERE id = {}",
            placed.id.get()
        ))
        .unwrap(),
        "NOT_PAID",
        "nothing changed"
    );
    assert_eq!(
        f.db.query_scalar(&format!(
            "SELECT balance FROM point_wallets WHERE user_id = {}",
            user.get()
        ))
        .unwrap(),
        "10000"
    );
    // And the expiry, by the same clock, takes it.
    assert_eq!(orders.expire.execute().await.unwrap(), 1);
}

#[tokio::test]
async fn an_order_keeps_the_price_taken_with_its_stock() {
    let f = Fixture::new();
    let orders = f.orders(Duration::minutes(5));
    let user = f.user().await;
    let product = f.product(1_000, 10).await;
    f.db.execute(&format!(
        "UPDATE products SET price = 1500 WHERE id = {}",
        product.get()
    ))
    .unwrap();
    let placed = orders
        .place
        .execute(order_of(user, &[product]), None)
        .await
        .unwrap();
    assert_eq!(placed.lines[0].unit_price.get(), 1_500);
    assert_eq!(placed.total_amount.get(), 3_000);
}

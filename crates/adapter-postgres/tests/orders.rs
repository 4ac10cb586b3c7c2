//! The order store on a real PostgreSQL: its guards (a payment, a cancel and an expiry
//! each move an order out of NOT_PAID at most once, and only the first of them counts),
//! restoration exactly once, stock that never goes below zero, and a lock order under
//! which concurrent orders cannot deadlock. Races are run many rounds, each asserting
//! the one outcome every interleaving must end in.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use adapter_postgres::PgOrderStore;
use adapter_postgres::test_support::TestDatabase;
use chrono::Duration;
use diesel::{Connection, PgConnection, connection::SimpleConnection};
use domain::order::{
    CancelRefusal, OrderItems, OrderPayment, OrderPlacement, OrderQuantity, OrderStatus,
    PayRefusal, PlaceRefusal,
};
use domain::ports::{CancelError, OrderStore, PayError, PlaceError};
use domain::{OrderId, ProductId, UserCouponId, UserId};

struct Shop {
    db: TestDatabase,
    store: PgOrderStore,
}

impl Shop {
    /// A fresh database and a store with `connections` pooled connections.
    fn new(connections: u32) -> Self {
        let db = TestDatabase::create().unwrap();
        let store = PgOrderStore::new(db.pool(connections));
        Self { db, store }
    }

    fn scalar(&self, sql: &str) -> String {
        self.db.query_scalar(sql).unwrap()
    }

    fn number(&self, sql: &str) -> i64 {
        self.scalar(sql).parse().unwrap()
    }

    /// User `id` with `balance` points.
    fn user(&self, id: i64, balance: i64) -> UserId {
        self.db
            .execute(&format!(
                "INSERT INTO users (id, created_at) VALUES ({id}, now()); \
                 INSERT INTO point_wallets (user_id, balance, updated_at) \
                 VALUES ({id}, {balance}, now())"
            ))
            .unwrap();
        UserId::new(id).unwrap()
    }

    /// Product `id` at `price` with `stock` units.
    fn product(&self, id: i64, price: i64, stock: i64) -> ProductId {
        self.db
            .execute(&format!(
                "INSERT INTO products (id, name, price, stock, created_at, updated_at) \
                 VALUES ({id}, 'p{id}', {price}, {stock}, now(), now())"
            ))
            .unwrap();
        ProductId::new(id).unwrap()
    }

    /// User coupon `id` of `user`, AVAILABLE for a day, worth 500 KRW off.
    fn user_coupon(&self, id: i64, user: UserId) -> UserCouponId {
        self.db
            .execute(&format!(
                "INSERT INTO coupons (id, name, discount_type, discount_value, total_quantity, \
                                      starts_at, ends_at, created_at) \
                 VALUES ({id}, 'c', 'FIXED', 500, 1, now() - interval '1 hour', \
                         now() + interval '1 day', now()); \
                 INSERT INTO user_coupons (id, user_id, coupon_id, status, issued_at, expires_at) \
                 VALUES ({id}, {user}, {id}, 'AVAILABLE', now(), now() + interval '1 day')"
            ))
            .unwrap();
        UserCouponId::new(id).unwrap()
    }

    fn stock(&self, product: ProductId) -> i64 {
        self.number(&format!("SELECT stock FROM products WHERE id = {product}"))
    }

    fn coupon_state(&self, coupon: UserCouponId) -> String {
        self.scalar(&format!(
            "SELECT status || ' ' || (used_at IS NULL) FROM user_coupons WHERE id = {coupon}"
        ))
    }

    fn status(&self, order: OrderId) -> String {
        self.scalar(&format!("SELECT status FROM orders WHERE id = {order}"))
    }

    /// Moves `order`'s deadline into the past, as if its payment time had run out.
    fn make_due(&self, order: OrderId) {
        self.db
            .execute(&format!(
                "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = {order}"
            ))
            .unwrap();
    }

    /// Places an order (the request is built before the returned future runs).
    fn place<'s>(
        &'s self,
        user: UserId,
        lines: &[(ProductId, i64)],
        coupon: Option<UserCouponId>,
    ) -> impl Future<Output = Result<OrderId, PlaceError>> + use<'s> {
        let placement = placement(user, lines, coupon);
        async move {
            self.store
                .place(placement, None)
                .await
                .map(|order| order.id)
        }
    }
}

fn placement(
    user: UserId,
    lines: &[(ProductId, i64)],
    coupon: Option<UserCouponId>,
) -> OrderPlacement {
    OrderPlacement {
        user_id: user,
        items: OrderItems::new(
            lines
                .iter()
                .map(|(p, q)| (*p, OrderQuantity::new(*q).unwrap()))
                .collect(),
        )
        .unwrap(),
        user_coupon_id: coupon,
        payment_timeout: Duration::minutes(5),
    }
}

fn payment(user: UserId, order: OrderId) -> OrderPayment {
    OrderPayment {
        order_id: order,
        user_id: user,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payments_of_one_order_at_once_pay_it_once() {
    let shop = Shop::new(4);
    let user = shop.user(1, 100_000);
    let product = shop.product(1, 1_000, 1_000);
    for round in 0..20 {
        let order = shop.place(user, &[(product, 3)], None).await.unwrap();
        let (a, b) = tokio::join!(
            shop.store.pay(payment(user, order), None),
            shop.store.pay(payment(user, order), None),
        );
        let refused = [&a, &b]
            .into_iter()
            .filter(|r| matches!(r, Err(PayError::Refused(PayRefusal::NotPayable))))
            .count();
        assert!(
            a.is_ok() != b.is_ok() && refused == 1,
            "round {round}: {a:?} / {b:?}"
        );
        assert_eq!(shop.status(order), "PAID");
    }
    // Debited, recorded and announced once per order.
    assert_eq!(
        shop.number("SELECT balance FROM point_wallets WHERE user_id = 1"),
        100_000 - 20 * 3_000
    );
    assert_eq!(
        shop.number("SELECT count(*) FROM point_history WHERE kind = 'USE'"),
        20
    );
    assert_eq!(shop.number("SELECT count(*) FROM outbox_events"), 20);
}

#[tokio::test]
async fn an_order_leaves_not_paid_once_and_every_later_move_is_refused() {
    let shop = Shop::new(2);
    let user = shop.user(1, 100_000);
    let stranger = shop.user(2, 100_000);
    let product = shop.product(1, 1_000, 10);

    let paid = shop.place(user, &[(product, 1)], None).await.unwrap();
    let err = shop.store.pay(payment(stranger, paid), None).await;
    assert!(
        matches!(err, Err(PayError::Refused(PayRefusal::OrderNotFound))),
        "{err:?}"
    );
    shop.store.pay(payment(user, paid), None).await.unwrap();
    let err = shop.store.cancel(user, paid).await;
    assert!(
        matches!(
            err,
            Err(CancelError::Refused(CancelRefusal::NotCancellable))
        ),
        "{err:?}"
    );
    shop.make_due(paid);
    assert_eq!(shop.store.expire_due(200).await.unwrap(), 0);
    assert_eq!(shop.status(paid), "PAID");

    let cancelled = shop.place(user, &[(product, 1)], None).await.unwrap();
    shop.store.cancel(user, cancelled).await.unwrap();
    let err = shop.store.pay(payment(user, cancelled), None).await;
    assert!(
        matches!(err, Err(PayError::Refused(PayRefusal::NotPayable))),
        "{err:?}"
    );
    let err = shop.store.cancel(user, cancelled).await;
    assert!(
        matches!(
            err,
            Err(CancelError::Refused(CancelRefusal::NotCancellable))
        ),
        "{err:?}"
    );

    let expired = shop.place(user, &[(product, 1)], None).await.unwrap();
    shop.make_due(expired);
    // Due but not yet expired: the deadline alone refuses the payment.
    let err = shop.store.pay(payment(user, expired), None).await;
    assert!(
        matches!(err, Err(PayError::Refused(PayRefusal::Expired))),
        "{err:?}"
    );
    assert_eq!(shop.store.expire_due(200).await.unwrap(), 1);
    assert_eq!(shop.store.expire_due(200).await.unwrap(), 0);
    assert_eq!(shop.status(expired), "EXPIRED");
    let err = shop.store.pay(payment(user, expired), None).await;
    assert!(
        matches!(err, Err(PayError::Refused(PayRefusal::Expired))),
        "{err:?}"
    );

    // Only the paid order still holds its unit.
    assert_eq!(shop.stock(product), 9);
    assert_eq!(
        shop.number("SELECT balance FROM point_wallets WHERE user_id = 1"),
        99_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_expiry_restores_stock_and_coupon_exactly_once() {
    let shop = Shop::new(4);
    let user = shop.user(1, 0);
    let (one, two) = (shop.product(1, 1_000, 50), shop.product(2, 700, 50));
    for round in 0..20 {
        let coupon = shop.user_coupon(100 + round, user);
        let order = shop
            .place(user, &[(two, 2), (one, 3)], Some(coupon))
            .await
            .unwrap();
        assert_eq!((shop.stock(one), shop.stock(two)), (47, 48));
        assert_eq!(shop.coupon_state(coupon), "USED false");
        shop.make_due(order);
        let (cancelled, expired) =
            tokio::join!(shop.store.cancel(user, order), shop.store.expire_due(200),);
        let expired = expired.unwrap();
        match (&cancelled, expired) {
            (Ok(order), 0) => assert_eq!(order.status, OrderStatus::Cancelled),
            (Err(CancelError::Refused(CancelRefusal::NotCancellable)), 1) => {
                assert_eq!(shop.status(order), "EXPIRED");
            }
            other => panic!("round {round}: not exactly one of them moved it: {other:?}"),
        }
        assert_eq!(
            (shop.stock(one), shop.stock(two)),
            (50, 50),
            "round {round}"
        );
        assert_eq!(shop.coupon_state(coupon), "AVAILABLE true", "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_is_never_taken_below_zero_nor_in_part() {
    let shop = Shop::new(8);
    let product = shop.product(1, 100, 5);
    let plenty = shop.product(2, 100, 1_000);
    let users: Vec<UserId> = (1..=12).map(|id| shop.user(id, 0)).collect();

    // Twelve orders for one unit each of a product with five.
    let placed =
        futures_util::future::join_all(users.iter().map(|u| shop.place(*u, &[(product, 1)], None)))
            .await;
    let taken = placed.iter().filter(|r| r.is_ok()).count();
    let short = placed
        .iter()
        .filter(
            |r| matches!(r, Err(PlaceError::Refused(PlaceRefusal::OutOfStock(p))) if *p == product),
        )
        .count();
    assert_eq!((taken, short), (5, 7), "{placed:?}");
    assert_eq!(shop.stock(product), 0);

    // An order whose other line is short takes nothing at all.
    let err = shop
        .place(users[0], &[(plenty, 10), (product, 1)], None)
        .await;
    assert!(
        matches!(err, Err(PlaceError::Refused(PlaceRefusal::OutOfStock(p))) if p == product),
        "{err:?}"
    );
    assert_eq!(shop.stock(plenty), 1_000);
    assert_eq!(shop.number("SELECT count(*) FROM orders"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_over_the_same_products_in_opposite_line_order_never_deadlock() {
    let shop = Shop::new(4);
    let (a, b) = (shop.product(1, 100, 100_000), shop.product(2, 100, 100_000));
    let (first, second) = (shop.user(1, 0), shop.user(2, 0));
    let deadlocks_before = adapter_postgres::transaction_retries().deadlock;
    let mut placed = Vec::new();
    for round in 0..30 {
        // Two orders naming the products in opposite orders, and a cancel putting both
        // back, all at once.
        let cancel = placed.pop().map(|order| shop.store.cancel(first, order));
        let (x, y, cancelled) = tokio::join!(
            shop.place(first, &[(a, 1), (b, 2)], None),
            shop.place(second, &[(b, 2), (a, 1)], None),
            async {
                match cancel {
                    Some(cancel) => cancel.await.map(|_| ()),
                    None => Ok(()),
                }
            },
        );
        assert!(
            x.is_ok() && y.is_ok() && cancelled.is_ok(),
            "round {round}: {x:?} / {y:?} / {cancelled:?}"
        );
        placed.push(x.unwrap());
    }
    assert_eq!(
        adapter_postgres::transaction_retries().deadlock,
        deadlocks_before,
        "no order was a deadlock's victim"
    );
    // 30 orders of each user hold their units, but for the 29 cancelled.
    assert_eq!((shop.stock(a), shop.stock(b)), (100_000 - 31, 100_000 - 62));
}

/// Payments that overlap are decided together (their group takes the orders and wallets
/// nobody holds) and end as they would have one after another: each order paid at most
/// once, a wallet debited while it covers, and every other refusal named as when alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_payments_end_as_if_made_one_after_another() {
    let shop = Shop::new(4);
    let product = shop.product(1, 1_000, 1_000);
    let mut payments = Vec::new();
    // 20 users paying one order each, 5 of them a second one too.
    for id in 1..=20 {
        let user = shop.user(id, 10_000);
        payments.push((user, shop.place(user, &[(product, 2)], None).await.unwrap()));
        if id <= 5 {
            payments.push((user, shop.place(user, &[(product, 1)], None).await.unwrap()));
        }
    }
    // 5 users whose wallet covers one of their two orders.
    for id in 21..=25 {
        let user = shop.user(id, 1_500);
        for _ in 0..2 {
            payments.push((user, shop.place(user, &[(product, 1)], None).await.unwrap()));
        }
    }
    let (twice, expired, strangers) = (
        payments[3],
        shop.place(UserId::new(6).unwrap(), &[(product, 1)], None)
            .await
            .unwrap(),
        shop.place(UserId::new(7).unwrap(), &[(product, 1)], None)
            .await
            .unwrap(),
    );
    shop.make_due(expired);
    payments.push(twice);
    payments.push((UserId::new(6).unwrap(), expired));
    payments.push((UserId::new(8).unwrap(), strangers));
    payments.push((UserId::new(9).unwrap(), OrderId::new(987_654).unwrap()));

    let answers = futures_util::future::join_all(
        payments
            .iter()
            .map(|(user, order)| shop.store.pay(payment(*user, *order), None)),
    )
    .await;

    let mut paid = std::collections::HashMap::<UserId, Vec<i64>>::new();
    let (mut short, mut not_payable) = (Vec::new(), 0);
    for ((user, order), answer) in payments.iter().zip(answers) {
        match answer {
            Ok(p) => {
                assert_eq!((p.user_id, p.order_id), (*user, *order));
                paid.entry(*user).or_default().push(p.balance.get());
            }
            Err(PayError::InsufficientBalance) => short.push(user.get()),
            Err(PayError::Refused(PayRefusal::NotPayable)) => {
                assert_eq!((*user, *order), twice);
                not_payable += 1;
            }
            Err(PayError::Refused(PayRefusal::Expired)) => assert_eq!(*order, expired),
            Err(PayError::Refused(PayRefusal::OrderNotFound)) => {
                assert!(user.get() == 8 || user.get() == 9, "{user} {order}");
            }
            Err(err) => panic!("payment of {order} by {user}: {err}"),
        }
    }
    short.sort_unstable();
    assert_eq!(short, vec![21, 22, 23, 24, 25]);
    assert_eq!(not_payable, 1);
    for id in 1..=25 {
        let user = UserId::new(id).unwrap();
        let (start, spent) = match id {
            1..=5 => (10_000, 3_000),
            6..=20 => (10_000, 2_000),
            _ => (1_500, 1_000),
        };
        // The balance, the history and the answers agree: each payment once, its answer
        // the balance its own history row recorded.
        assert_eq!(
            shop.number(&format!(
                "SELECT balance FROM point_wallets WHERE user_id = {id}"
            )),
            start - spent
        );
        let afters = shop.scalar(&format!(
            "SELECT string_agg(balance_after::text, ',' ORDER BY balance_after DESC) \
             FROM point_history WHERE user_id = {id} AND kind = 'USE'"
        ));
        let mut mine = paid.remove(&user).unwrap();
        mine.sort_unstable_by(|a, b| b.cmp(a));
        let mine = mine
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(afters, mine, "user {id}");
    }
    assert_eq!(
        shop.number(
            "SELECT count(*) FROM orders o \
             JOIN point_history h ON h.order_id = o.id AND h.amount = o.pay_amount \
             JOIN outbox_events e ON e.aggregate_id = o.id \
             WHERE o.status = 'PAID' AND o.paid_at = h.created_at"
        ),
        5 * 2 + 15 + 5
    );
    assert_eq!(
        (
            shop.number("SELECT count(*) FROM orders WHERE status = 'PAID'"),
            shop.number("SELECT count(*) FROM point_history WHERE kind = 'USE'"),
            shop.number("SELECT count(*) FROM outbox_events"),
        ),
        (30, 30, 30)
    );
}

/// An order or a wallet another transaction holds delays only its own payment: the
/// overlapping payments of other orders are answered meanwhile, and the held ones are made
/// once the rows are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_order_or_wallet_delays_only_its_own_payment() {
    let shop = std::sync::Arc::new(Shop::new(8));
    let product = shop.product(1, 1_000, 1_000);
    let mut payments = Vec::new();
    for id in 1..=20 {
        let user = shop.user(id, 10_000);
        payments.push((user, shop.place(user, &[(product, 1)], None).await.unwrap()));
    }
    let (held_order, held_wallet) = (payments[0], payments[1]);
    let mut holder = PgConnection::establish(shop.db.url()).unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM orders WHERE id = {} FOR UPDATE; \
             SELECT 1 FROM point_wallets WHERE user_id = {} FOR UPDATE",
            held_order.1, held_wallet.0
        ))
        .unwrap();
    let pay = |(user, order): (UserId, OrderId)| {
        let shop = shop.clone();
        tokio::spawn(async move { shop.store.pay(payment(user, order), None).await })
    };
    let waiting = [pay(held_order), pay(held_wallet)];
    let others: Vec<_> = payments[2..].iter().map(|p| pay(*p)).collect();
    tokio::time::timeout(std::time::Duration::from_secs(4), async {
        for other in others {
            assert_eq!(other.await.unwrap().unwrap().balance.get(), 9_000);
        }
    })
    .await
    .expect("payments of other orders waited for the held rows");
    assert!(waiting.iter().all(|t| !t.is_finished()));

    holder.batch_execute("COMMIT").unwrap();
    for task in waiting {
        assert_eq!(task.await.unwrap().unwrap().balance.get(), 9_000);
    }
    assert_eq!(
        shop.number("SELECT count(*) FROM orders WHERE status = 'PAID'"),
        20
    );
}

/// Placements that overlap are decided together (their group takes the products and
/// coupons nobody holds) and end as they would have one after another: stock taken while
/// it lasts and never below zero, a coupon used once, every refusal named as when alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_placements_end_as_if_made_one_after_another() {
    let shop = Shop::new(4);
    let (plenty, scarce) = (shop.product(1, 1_000, 100), shop.product(2, 500, 5));
    let users: Vec<UserId> = (1..=20).map(|id| shop.user(id, 0)).collect();
    let coupons: Vec<UserCouponId> = (1..=3)
        .map(|i| shop.user_coupon(i, users[usize::try_from(i - 1).unwrap()]))
        .collect();
    let mut placements = Vec::new();
    for user in &users {
        placements.push(placement(*user, &[(plenty, 1), (scarce, 1)], None));
    }
    for (user, coupon) in users.iter().zip(&coupons) {
        placements.push(placement(*user, &[(plenty, 2)], Some(*coupon)));
    }
    placements.push(placement(users[0], &[(plenty, 1)], Some(coupons[0])));
    placements.push(placement(users[3], &[(plenty, 1)], Some(coupons[1])));
    placements.push(placement(UserId::new(99).unwrap(), &[(plenty, 1)], None));
    placements.push(placement(
        users[4],
        &[(plenty, 1), (ProductId::new(77).unwrap(), 1)],
        None,
    ));

    let answers = futures_util::future::join_all(
        placements.iter().map(|p| shop.store.place(p.clone(), None)),
    )
    .await;

    let mut refusals = std::collections::HashMap::<String, usize>::new();
    let mut placed = Vec::new();
    for (wanted, answer) in placements.iter().zip(answers) {
        match answer {
            Ok(order) => {
                assert_eq!(order.user_id, wanted.user_id);
                assert_eq!(order.user_coupon_id, wanted.user_coupon_id);
                let discount = if wanted.user_coupon_id.is_some() {
                    500
                } else {
                    0
                };
                assert_eq!(order.discount_amount.get(), discount);
                assert_eq!(order.pay_amount.get(), order.total_amount.get() - discount);
                placed.push(order);
            }
            Err(PlaceError::Refused(refusal)) => {
                *refusals.entry(format!("{refusal:?}")).or_default() += 1;
            }
            Err(err) => panic!("{wanted:?}: {err}"),
        }
    }
    let expected: std::collections::HashMap<String, usize> = [
        (format!("{:?}", PlaceRefusal::OutOfStock(scarce)), 15),
        (format!("{:?}", PlaceRefusal::CouponNotUsable), 1),
        (format!("{:?}", PlaceRefusal::UserCouponNotFound), 1),
        (format!("{:?}", PlaceRefusal::UserNotFound), 1),
        (
            format!(
                "{:?}",
                PlaceRefusal::ProductNotFound(ProductId::new(77).unwrap())
            ),
            1,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(refusals, expected);
    assert_eq!(placed.len(), 5 + 3);
    // Stock, stored lines and answers agree; each coupon was used by its one order.
    assert_eq!(shop.stock(scarce), 0);
    assert_eq!(shop.stock(plenty), 100 - 5 - 3 * 2);
    for order in &placed {
        let stored = shop.scalar(&format!(
            "SELECT o.user_id || ' ' || o.status || ' ' || o.total_amount || ' ' || \
                    string_agg(l.product_id || 'x' || l.quantity || '@' || l.unit_price, ',' \
                               ORDER BY l.product_id) \
             FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.id = {} \
             GROUP BY o.id",
            order.id
        ));
        let lines: Vec<String> = order
            .lines
            .iter()
            .map(|l| {
                format!(
                    "{}x{}@{}",
                    l.product_id,
                    l.quantity.get(),
                    l.unit_price.get()
                )
            })
            .collect();
        assert_eq!(
            stored,
            format!(
                "{} NOT_PAID {} {}",
                order.user_id,
                order.total_amount.get(),
                lines.join(",")
            )
        );
    }
    for coupon in &coupons {
        assert_eq!(shop.coupon_state(*coupon), "USED false");
    }
    assert_eq!(shop.number("SELECT count(*) FROM orders"), 8);
}

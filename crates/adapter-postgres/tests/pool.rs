//! The pool: a checkout costs no round trip, and connections the server dropped while
//! they sat idle are replaced before any request sees them.

use adapter_postgres::PgPointStore;
use adapter_postgres::test_support::TestDatabase;
use domain::UserId;
use domain::ports::PointStore;

#[tokio::test]
async fn a_checkout_sends_nothing_so_a_read_is_one_round_trip() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(1);
    let store = PgPointStore::new(pool);
    let user = UserId::new(1).unwrap();
    store.balance(user).await.unwrap(); // connects and prepares the statement
    let (_, n) = trips.count(store.balance(user)).await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn connections_dropped_by_the_server_while_idle_are_replaced_without_an_error() {
    let db = TestDatabase::create().unwrap();
    let pool = db.pool(4);
    let store = PgPointStore::new(pool.clone());
    let user = UserId::new(1).unwrap();
    // Four idle connections in the pool.
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(held);
    assert_eq!(pool.state().idle_connections, 4);

    // The server goes away and comes back while the pool is idle (as on a restart).
    db.set_reachable(false).unwrap();
    db.set_reachable(true).unwrap();

    let reads = (0..8).map(|_| store.balance(user));
    for read in futures_util::future::join_all(reads).await {
        read.expect("no request sees a dead connection once the server is back");
    }
}

//! The catalogue store on a real PostgreSQL: one round trip per operation, a product
//! count that stays exact without counting the table, and keyset pages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use adapter_postgres::PgProductRepository;
use adapter_postgres::test_support::TestDatabase;
use chrono::Utc;
use domain::page::KeysetRequest;
use domain::ports::{ProductRepository, RestockError};
use domain::product::{
    Description, NewProduct, Price, ProductName, ProductPatch, Restock, RestockQuantity, Stock,
};
use domain::{PageRequest, ProductId};

fn new_product(name: &str) -> NewProduct {
    NewProduct {
        name: ProductName::new(name).unwrap(),
        description: Description::new("d").unwrap(),
        price: Price::new(100).unwrap(),
        stock: Stock::new(5).unwrap(),
    }
}

async fn create_n(products: &PgProductRepository, n: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let p = products
            .create(new_product(&format!("p{i}")), Utc::now())
            .await
            .unwrap();
        ids.push(p.id.get());
    }
    ids
}

fn id(raw: i64) -> ProductId {
    ProductId::new(raw).unwrap()
}

fn stored_count(db: &TestDatabase) -> String {
    db.query_scalar("SELECT product_count FROM catalogue_stats")
        .unwrap()
}

#[tokio::test]
async fn a_page_a_keyset_page_and_a_product_each_take_one_round_trip() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(1);
    let products = PgProductRepository::new(pool);
    let ids = create_n(&products, 5).await;

    let page = PageRequest::new(Some(1), Some(2)).unwrap();
    products.list(page).await.unwrap(); // warms the connection
    let (listed, n) = trips.count(products.list(page)).await;
    assert_eq!(listed.unwrap().total_count, 5);
    assert_eq!(n, 1, "a numbered page");

    let after = KeysetRequest::new(ids[1], Some(2)).unwrap();
    products.list_after(after).await.unwrap();
    let (listed, n) = trips.count(products.list_after(after)).await;
    assert_eq!(listed.unwrap().items.len(), 2);
    assert_eq!(n, 1, "a keyset page");

    products.find(id(ids[0])).await.unwrap();
    let (found, n) = trips.count(products.find(id(ids[0]))).await;
    assert!(found.unwrap().is_some());
    assert_eq!(n, 1, "one product");

    let (_, n) = trips
        .count(products.create(new_product("more"), Utc::now()))
        .await;
    assert_eq!(n, 1, "creating (and counting) a product");
}

#[tokio::test]
async fn restock_and_update_take_one_round_trip_and_read_again_only_to_explain_a_refusal() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(1);
    let products = PgProductRepository::new(pool);
    let p = create_n(&products, 1).await[0];
    let restock = Restock::new(id(p), RestockQuantity::new(3).unwrap());
    products.restock(restock, Utc::now()).await.unwrap();
    let (restocked, n) = trips.count(products.restock(restock, Utc::now())).await;
    assert_eq!(restocked.unwrap().stock.get(), 11);
    assert_eq!(n, 1, "a successful restock");

    let patch = ProductPatch {
        price: Some(Price::new(7).unwrap()),
        ..ProductPatch::default()
    };
    products
        .update(id(p), patch.clone(), Utc::now())
        .await
        .unwrap();
    let (updated, n) = trips
        .count(products.update(id(p), patch.clone(), Utc::now()))
        .await;
    assert_eq!(updated.unwrap().unwrap().price.get(), 7);
    assert_eq!(n, 1, "an update");
    let (missing, n) = trips
        .count(products.update(id(p + 1_000), patch, Utc::now()))
        .await;
    assert!(missing.unwrap().is_none());
    assert_eq!(n, 1, "an update of an unknown product");

    let ghost = Restock::new(id(p + 1_000), RestockQuantity::new(1).unwrap());
    let _ = products.restock(ghost, Utc::now()).await; // prepares the explaining read
    let (refused, n) = trips.count(products.restock(ghost, Utc::now())).await;
    assert!(matches!(refused, Err(RestockError::ProductNotFound)));
    assert_eq!(n, 2, "the guarded update, then the read that explains it");
}

#[tokio::test]
async fn the_count_is_read_with_the_page_even_past_the_end() {
    let db = TestDatabase::create().unwrap();
    let products = PgProductRepository::new(db.pool(2));
    let empty = products.list(PageRequest::default()).await.unwrap();
    assert_eq!((empty.items.len(), empty.total_count), (0, 0));

    let ids = create_n(&products, 5).await;
    let page = products
        .list(PageRequest::new(Some(2), Some(2)).unwrap())
        .await
        .unwrap();
    let got: Vec<i64> = page.items.iter().map(|p| p.id.get()).collect();
    assert_eq!((got, page.total_count), (ids[2..4].to_vec(), 5));
    let past = products
        .list(PageRequest::new(Some(4), Some(2)).unwrap())
        .await
        .unwrap();
    assert_eq!((past.items.len(), past.total_count), (0, 5));
    let beyond = products
        .list_after(KeysetRequest::new(ids[4], None).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (beyond.items.len(), beyond.total_count, beyond.next_after),
        (0, 5, None)
    );
}

#[tokio::test]
async fn keyset_pages_walk_the_catalogue_by_id_and_the_last_one_has_no_cursor() {
    let db = TestDatabase::create().unwrap();
    let products = PgProductRepository::new(db.pool(2));
    let ids = create_n(&products, 5).await;

    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    // Start from the first page's last id, as a client moving from `page` to `after` would.
    let first = products
        .list(PageRequest::new(Some(1), Some(2)).unwrap())
        .await
        .unwrap();
    seen.extend(first.items.iter().map(|p| p.id.get()));
    let mut after = seen.last().copied();
    while let Some(cursor) = after {
        let page = products
            .list_after(KeysetRequest::new(cursor, Some(2)).unwrap())
            .await
            .unwrap();
        assert_eq!(page.total_count, 5);
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|p| p.id.get()));
        cursors.push(page.next_after);
        after = page.next_after;
    }
    assert_eq!(seen, ids);
    // After ids[1]: ids[2], ids[3] and more follow; after ids[3]: only ids[4], no cursor.
    assert_eq!(cursors, vec![Some(ids[3]), None]);

    // A cursor between ids (a gap) lists from the next existing id.
    let gap = products
        .list_after(KeysetRequest::new(ids[0], Some(100)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        gap.items.iter().map(|p| p.id.get()).collect::<Vec<_>>(),
        ids[1..].to_vec()
    );
    assert_eq!(gap.next_after, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creations_all_count_and_the_count_matches_the_table() {
    let db = TestDatabase::create().unwrap();
    let products = PgProductRepository::new(db.pool(8));
    let creations = (0..40).map(|i| {
        let products = products.clone();
        tokio::spawn(async move {
            products
                .create(new_product(&format!("c{i}")), Utc::now())
                .await
        })
    });
    for created in futures_util::future::join_all(creations).await {
        created.unwrap().unwrap();
    }
    assert_eq!(stored_count(&db), "40");
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM products").unwrap(),
        "40"
    );
    let page = products.list(PageRequest::default()).await.unwrap();
    assert_eq!(page.total_count, 40);
}

#[tokio::test]
async fn a_refused_creation_counts_nothing() {
    let db = TestDatabase::create().unwrap();
    let products = PgProductRepository::new(db.pool(1));
    create_n(&products, 2).await;
    // A name the domain would refuse reaches the table's own check here.
    db.execute("ALTER TABLE products ADD CONSTRAINT no_x CHECK (name <> 'x')")
        .unwrap();
    assert!(products.create(new_product("x"), Utc::now()).await.is_err());
    assert_eq!(stored_count(&db), "2");
}

#[tokio::test]
async fn the_migration_starts_the_count_from_the_products_already_there() {
    let db = TestDatabase::create().unwrap();
    let down = include_str!("../../../migrations/2026-11-29-000003_catalogue_count/down.sql");
    let up = include_str!("../../../migrations/2026-11-29-000003_catalogue_count/up.sql");
    db.execute(down).unwrap();
    db.execute(
        "INSERT INTO products (name, price, stock, created_at, updated_at) \
         SELECT 'old ' || i, 1, 1, now(), now() FROM generate_series(1, 7) i",
    )
    .unwrap();
    db.execute(&format!("BEGIN; {up} COMMIT;")).unwrap();
    assert_eq!(stored_count(&db), "7");
    let products = PgProductRepository::new(db.pool(1));
    create_n(&products, 1).await;
    assert_eq!(
        products
            .list(PageRequest::default())
            .await
            .unwrap()
            .total_count,
        8
    );
}

//! The outbox listener's TLS, read from `DATABASE_URL` as libpq reads it: each `sslmode`
//! against a real PostgreSQL behind a [`TlsFront`], which terminates TLS with a certificate
//! of a test CA and passes the bytes on to the database (the test cluster itself runs
//! without TLS).
//!
//! A listener that must not connect is given 3 s: one that connects does so in
//! milliseconds, and a wrong acceptance shows up as a completed TLS session too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use adapter_postgres::PgOutboxListener;
use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::test_support::tls::{TestPki, TlsFront};
use domain::ports::OutboxWakeup;

const INSERT: &str = "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
     VALUES (gen_random_uuid(), 'ORDER_PAID', (random() * 1e9)::bigint, '{}', now(), now())";

async fn listens_within(listener: &PgOutboxListener, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if listener.is_listening() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.is_listening()
}

/// Starts a listener on `url` and tells whether it got to listen.
async fn listens(url: &str) -> bool {
    let listener = PgOutboxListener::start(url).unwrap();
    listens_within(&listener, Duration::from_secs(3)).await
}

#[tokio::test]
async fn verify_full_listens_over_tls_to_a_server_of_its_ca_and_notifications_flow() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("full").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("localhost").unwrap(), None)
        .await
        .unwrap();
    let url = front
        .url(
            db.url(),
            &format!("sslmode=verify-full&sslrootcert={}", pki.ca_file()),
        )
        .unwrap();
    let listener = PgOutboxListener::start(&url).unwrap();
    assert!(listens_within(&listener, Duration::from_secs(30)).await);
    assert_eq!((front.tls_sessions(), front.plain_sessions()), (1, 0));
    // Takes the signal that connecting leaves, then a commit wakes it through TLS.
    listener.wait(Duration::ZERO).await;
    db.execute(INSERT).unwrap();
    let started = Instant::now();
    listener.wait(Duration::from_secs(60)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the commit woke it"
    );
}

#[tokio::test]
async fn verify_full_refuses_another_ca_and_another_host_name_and_verify_ca_only_the_first() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("names").unwrap();
    let stranger = TestPki::new("stranger").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("db.example").unwrap(), None)
        .await
        .unwrap();
    let ca = pki.ca_file();
    let other_ca = stranger.ca_file();

    for params in [
        format!("sslmode=verify-full&sslrootcert={ca}"),
        format!("sslmode=verify-full&sslrootcert={other_ca}"),
        format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        // As libpq: a root certificate makes require check the chain too.
        format!("sslmode=require&sslrootcert={other_ca}"),
    ] {
        assert!(
            !listens(&front.url(db.url(), &params).unwrap()).await,
            "{params}"
        );
    }
    assert_eq!(front.tls_sessions(), 0, "no session was accepted");

    let verify_ca = format!("sslmode=verify-ca&sslrootcert={ca}");
    assert!(
        listens(&front.url(db.url(), &verify_ca).unwrap()).await,
        "verify-ca takes a certificate of its CA issued for another name"
    );
    assert_eq!(front.tls_sessions(), 1);
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_checking_and_disable_never_does() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("unchecked").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("db.example").unwrap(), None)
        .await
        .unwrap();

    assert!(listens(&front.url(db.url(), "sslmode=require").unwrap()).await);
    assert!(
        listens(&front.url(db.url(), "application_name=x").unwrap()).await,
        "prefer, the default"
    );
    assert_eq!((front.tls_sessions(), front.plain_sessions()), (2, 0));

    assert!(listens(&front.url(db.url(), "sslmode=disable").unwrap()).await);
    assert_eq!((front.tls_sessions(), front.plain_sessions()), (2, 1));
}

#[tokio::test]
async fn a_server_that_asks_for_a_client_certificate_gets_sslcert_and_sslkey() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("client").unwrap();
    let front = TlsFront::start(
        db.url(),
        pki.leaf("localhost").unwrap(),
        Some(pki.roots().unwrap()),
    )
    .await
    .unwrap();
    pki.leaf("shop-client").unwrap();
    let verify = format!("sslmode=verify-full&sslrootcert={}", pki.ca_file());

    assert!(
        !listens(&front.url(db.url(), &verify).unwrap()).await,
        "no client certificate"
    );
    assert_eq!(front.tls_sessions(), 0);
    let with_certificate = format!(
        "{verify}&sslcert={}&sslkey={}",
        pki.file("shop-client.pem"),
        pki.file("shop-client.key")
    );
    assert!(listens(&front.url(db.url(), &with_certificate).unwrap()).await);
    assert_eq!(front.tls_sessions(), 1);
}

#[tokio::test]
async fn a_keyword_value_string_is_read_the_same_way() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("keyword").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("localhost").unwrap(), None)
        .await
        .unwrap();
    // The front's URL, written as keyword/value pairs.
    let url = front.url(db.url(), "x=y").unwrap();
    let (_, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let (user, host_port) = authority.rsplit_once('@').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let dbname = path.split_once('?').map_or(path, |(name, _)| name);
    let conninfo = |ca: &str| {
        format!(
            "host={host} port={port} user={user} dbname = '{dbname}' sslmode=verify-full \
             sslrootcert='{ca}' gssencmode=disable"
        )
    };
    let stranger = TestPki::new("keyword-stranger").unwrap();
    assert!(!listens(&conninfo(&stranger.ca_file())).await, "another CA");
    assert_eq!(front.tls_sessions(), 0);
    assert!(listens(&conninfo(&pki.ca_file())).await);
    assert_eq!((front.tls_sessions(), front.plain_sessions()), (1, 0));
}

#[tokio::test]
async fn libpq_only_parameters_do_not_stop_the_listener() {
    let db = TestDatabase::create().unwrap();
    let url = format!(
        "{}{}gssencmode=disable&sslcrl=/nonexistent.crl&sslmode=disable",
        db.url(),
        if db.url().contains('?') { '&' } else { '?' }
    );
    assert!(listens(&url).await);
}

#[test]
fn a_verifying_mode_with_an_unreadable_root_certificate_is_a_start_up_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let refused = PgOutboxListener::start(
        "postgres://u@localhost/shop?sslmode=verify-full&sslrootcert=/nonexistent/root.pem",
    );
    assert!(refused.is_err_and(|e| format!("{e:#}").contains("/nonexistent/root.pem")));
}

//! The whole server on a `DATABASE_URL` with `sslmode=verify-full`: the pool and the
//! outbox listener (both libpq) connect over TLS, checked against a test CA, through a TLS
//! front of the test database.

use std::time::{Duration, Instant};

use adapter_postgres::test_support::tls::{TestPki, TlsFront};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::dataplatform::{paid_order, wait_for_requests};
use crate::helpers::spawn_app_with;

#[tokio::test]
async fn a_server_on_verify_full_serves_and_listens_over_tls_only() {
    let pki = TestPki::new("server").unwrap();
    let database = std::env::var("DATABASE_URL").unwrap();
    let front = TlsFront::start(&database, pki.leaf("localhost").unwrap(), None)
        .await
        .unwrap();
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&platform)
        .await;
    let params = format!("sslmode=verify-full&sslrootcert={}", pki.ca_file());
    let app = spawn_app_with(|c| {
        c.database_url = front.url(&c.database_url, &params).unwrap();
        c.data_platform_url = Some(format!("{}/events", platform.uri()));
    })
    .await;

    // The listener's session, through the front (the only way to the database it has).
    let listener_sessions = "SELECT count(*)::text AS value FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'shop-outbox-listener'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.db.query_scalar(listener_sessions).unwrap() != "1" {
        assert!(Instant::now() < deadline, "the listener never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    paid_order(&app).await;
    let delivered = wait_for_requests(&platform, 1, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1, "the paid order was delivered");
    assert_eq!(
        front.plain_sessions(),
        0,
        "nothing reached the database in clear"
    );
    assert!(
        front.tls_sessions() >= 2,
        "the pool and the listener: {} TLS sessions",
        front.tls_sessions()
    );
}

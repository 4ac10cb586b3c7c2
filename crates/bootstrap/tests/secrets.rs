//! Nothing secret in the logs or in the database: the real `shop-server` binary runs with
//! every secret-bearing setting holding credentials, a query and (in `DATABASE_URL`) a raw
//! `?` in the password, at the debug log level, while the identity provider and the data
//! platform are unreachable (so their errors are logged and a delivery error is stored).
//! No line of its output and no `outbox_events.last_error` may contain any of them. Loading
//! `/docs` logs no warning either.
//!
//! One test in a binary of its own: it reads the whole process's output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use adapter_postgres::test_support::TestDatabase;

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_setting_reaches_a_log_line_or_a_stored_error() {
    let db = TestDatabase::create().unwrap();
    // A role that must give its password (scripts/db.sh), with `?`, `@` and `%` in it.
    let role = format!("shop_secrets_{}", std::process::id());
    db.execute(&format!(
        "DO $$ BEGIN CREATE ROLE shop_password_login NOLOGIN; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         CREATE ROLE {role} LOGIN PASSWORD 'db-pa?ss@wo%rd' IN ROLE shop_password_login; \
         GRANT ALL ON SCHEMA public TO {role}; \
         GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"
    ))
    .unwrap();
    let (_, rest) = db.url().split_once("://").unwrap();
    let (_, host_and_path) = rest.split_once('@').unwrap();
    let database_url = format!("postgres://{role}:db-pa?ss%40wo%25rd@{host_and_path}");

    let port = closed_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_shop-server"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGGSSENCMODE", "disable")
        .env("DATABASE_URL", &database_url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "debug")
        .env("ADMIN_TOKEN", "admin-secret-value")
        .env(
            "AUTH_JWKS_URL",
            format!(
                "http://idp:jwks-pass@127.0.0.1:{}/jwks?key=jwks-query",
                closed_port()
            ),
        )
        .env("AUTH_JWKS_ALLOW_HTTP", "true")
        .env("AUTH_JWT_ISSUER", "https://id.example")
        .env("AUTH_JWT_AUDIENCE", "shop")
        .env(
            "DATA_PLATFORM_URL",
            format!(
                "http://dp:dp-pass@127.0.0.1:{}/events?token=dp-query",
                closed_port()
            ),
        )
        .env(
            "DATA_PLATFORM_SECRET",
            "whsec_ZHAtc2lnbmluZy1zZWNyZXQtb2YtMzItYnl0ZXMhIQ==",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client.get(format!("{base}/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if let Some(exit) = server.try_wait().unwrap() {
            let mut output = String::new();
            let _ = server.stderr.take().unwrap().read_to_string(&mut output);
            panic!("the server stopped ({exit}): {output}");
        }
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in ["/docs", "/docs/", "/docs/swagger-ui.css", "/openapi.json"] {
        let res = client.get(format!("{base}{path}")).send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }
    // An event for the unreachable data platform: its error is logged and stored.
    db.execute(
        "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
         VALUES (gen_random_uuid(), 'ORDER_PAID', 1, '{}', now(), now())",
    )
    .unwrap();
    let stored = "SELECT coalesce(string_agg(last_error, ' | '), '') AS value FROM outbox_events";
    while db.query_scalar(stored).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no delivery failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = db.query_scalar(stored).unwrap();

    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = server.wait().unwrap();
    let mut output = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    let _ = db.execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    assert!(status.success(), "{status}\n{output}");

    assert!(
        output.contains("fetching the JWK set failed"),
        "the test saw the failures it meant to: {output}"
    );
    assert!(stored.contains("error"), "{stored}");
    for secret in [
        "db-pa",
        "ss@wo",
        "ss%40wo",
        "wo%rd",
        "wo%25rd",
        "admin-secret-value",
        "jwks-pass",
        "jwks-query",
        "dp-pass",
        "dp-query",
        "ZHAtc2lnbmluZy1zZWNyZXQ",
    ] {
        for line in output.lines() {
            assert!(!line.contains(secret), "{secret:?} logged: {line}");
        }
        assert!(!stored.contains(secret), "{secret:?} stored: {stored}");
    }
    for line in output.lines() {
        assert!(
            !(line.contains("WARN") && line.contains("cardinality")),
            "a warning the operator must learn to ignore: {line}"
        );
    }
}

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, spawn_app_with};

pub(crate) async fn paid_order(app: &TestApp) -> i64 {
    let p = app.create_product(100, 10).await;
    let user = app.create_user().await;
    app.charge(user, 1_000).await;
    let res = app
        .post(
            "/api/v1/orders",
            &json!({"userId": user, "items": [{"productId": p, "quantity": 2}]}),
        )
        .await;
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let paid = app
        .post(
            "/api/v1/points/use",
            &json!({"userId": user, "orderId": id}),
        )
        .await;
    assert!(paid.status().is_success());
    id
}

pub(crate) async fn wait_for_requests(
    server: &MockServer,
    at_least: usize,
    within: Duration,
) -> Vec<wiremock::Request> {
    let deadline = Instant::now() + within;
    loop {
        let got = server.received_requests().await.unwrap_or_default();
        if got.len() >= at_least || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_paid_order_reaches_the_data_platform_within_a_second_or_so() {
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&platform)
        .await;
    let app =
        spawn_app_with(|c| c.data_platform_url = Some(format!("{}/events", platform.uri()))).await;
    let started = Instant::now();
    let order = paid_order(&app).await;
    let got = wait_for_requests(&platform, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "delivered once");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        got[0].headers["idempotency-key"].to_str().unwrap(),
        body["eventId"].as_str().unwrap()
    );
    assert_eq!(
        (
            body["eventType"].as_str(),
            body["order"]["orderId"].as_i64(),
            body["order"]["payAmount"].as_i64()
        ),
        (Some("ORDER_PAID"), Some(order), Some(200))
    );
    assert_eq!(
        body["order"]["items"][0],
        json!({"productId": body["order"]["items"][0]["productId"], "quantity": 2, "unitPrice": 100, "amount": 200})
    );
}

#[tokio::test]
async fn a_failing_data_platform_gets_the_same_event_until_it_takes_it() {
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&platform)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&platform)
        .await;
    let app = spawn_app_with(|c| c.data_platform_url = Some(platform.uri())).await;
    paid_order(&app).await;
    let got = wait_for_requests(&platform, 3, Duration::from_secs(8)).await;
    assert_eq!(got.len(), 3, "two failures, then delivered, then no more");
    let keys: Vec<_> = got
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "one stable event id: {keys:?}"
    );
    let res = app
        .admin(reqwest::Method::GET, "/api/v1/admin/outbox", None)
        .await;
    let counts: Value = res.json().await.unwrap();
    assert_eq!(counts, json!({"pending": 0, "delivered": 1, "failed": 0}));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        platform.received_requests().await.unwrap_or_default().len(),
        3
    );
}

#[tokio::test]
async fn a_stalled_receiver_call_does_not_hold_back_newer_events() {
    let platform = MockServer::start().await;
    // The first call stalls for most of the client's 5 s timeout, then succeeds.
    let stall = Duration::from_millis(4_500);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(stall))
        .up_to_n_times(1)
        .mount(&platform)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&platform)
        .await;
    let app = spawn_app_with(|c| c.data_platform_url = Some(platform.uri())).await;
    let first = paid_order(&app).await;
    assert_eq!(
        wait_for_requests(&platform, 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    let stalled_since = Instant::now();
    let second = paid_order(&app).await;
    let got = wait_for_requests(&platform, 2, Duration::from_secs(10)).await;
    let waited = stalled_since.elapsed();
    eprintln!("the newer event arrived {waited:?} into the stalled call");
    assert_eq!(got.len(), 2);
    assert!(
        waited < Duration::from_millis(3_000),
        "the newer event waited {waited:?} behind the stalled call"
    );
    let order_of = |r: &wiremock::Request| {
        serde_json::from_slice::<Value>(&r.body).unwrap()["order"]["orderId"].as_i64()
    };
    assert_eq!(
        (order_of(&got[0]), order_of(&got[1])),
        (Some(first), Some(second))
    );
    // The stalled call's 2xx still counts: both end up delivered, each once.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let counts: Value = app
            .admin(reqwest::Method::GET, "/api/v1/admin/outbox", None)
            .await
            .json()
            .await
            .unwrap();
        if counts == json!({"pending": 0, "delivered": 2, "failed": 0}) {
            break;
        }
        assert!(Instant::now() < deadline, "{counts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        platform.received_requests().await.unwrap_or_default().len(),
        2
    );
}

#[tokio::test]
async fn stopping_while_a_delivery_hangs_takes_the_grace_period_and_leaves_it_undelivered() {
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(4_800)))
        .mount(&platform)
        .await;
    let app = spawn_app_with(|c| {
        c.data_platform_url = Some(platform.uri());
        c.outbox_shutdown_grace_ms = 300;
    })
    .await;
    paid_order(&app).await;
    assert_eq!(
        wait_for_requests(&platform, 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    let stopping = Instant::now();
    app.handle.stop(true).await;
    tokio::time::timeout(Duration::from_secs(10), app.stopped)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    eprintln!("stopping with a delivery hanging took {took:?}");
    assert!(
        took < Duration::from_millis(2_500),
        "stopping took {took:?} with a delivery hanging"
    );
    // Abandoned, not marked: it is delivered again once its lease lapses.
    assert_eq!(
        app.db
            .query_scalar(
                "SELECT count(*) FILTER (WHERE delivered_at IS NULL) || '/' || count(*) \
                 FROM outbox_events"
            )
            .unwrap(),
        "1/1"
    );
}

#[tokio::test]
async fn a_delivery_that_finishes_within_the_shutdown_grace_is_marked_delivered() {
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1_000)))
        .mount(&platform)
        .await;
    let app = spawn_app_with(|c| {
        c.data_platform_url = Some(platform.uri());
        c.outbox_shutdown_grace_ms = 4_000;
    })
    .await;
    paid_order(&app).await;
    assert_eq!(
        wait_for_requests(&platform, 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    let stopping = Instant::now();
    app.handle.stop(true).await;
    tokio::time::timeout(Duration::from_secs(10), app.stopped)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(3_500), "{took:?}");
    assert_eq!(
        app.db
            .query_scalar("SELECT count(*) FROM outbox_events WHERE delivered_at IS NOT NULL")
            .unwrap(),
        "1",
        "its 2xx came within the grace period"
    );
}

/// The receiver's side of a signed delivery, written independently of the server's code:
/// Python's `hmac`, `hashlib` and `base64` (exit 0 when a `v1,` signature matches).
fn python_verifies(secret: &str, request: &wiremock::Request) -> bool {
    use std::io::Write;
    const VERIFY_PY: &str = r#"
import base64, hashlib, hmac, sys
secret, msg_id, timestamp, header = sys.argv[1:5]
key = base64.b64decode(secret.removeprefix("whsec_"))
signed = f"{msg_id}.{timestamp}.".encode() + sys.stdin.buffer.read()
expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
sys.exit(0 if any(hmac.compare_digest(s.removeprefix("v1,"), expected) for s in header.split(" ")) else 1)
"#;
    let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
    let mut child = std::process::Command::new("python3")
        .args(["-c", VERIFY_PY, secret])
        .args([
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&request.body)
        .unwrap();
    child.wait().unwrap().success()
}

#[tokio::test]
async fn with_a_secret_every_delivery_is_signed_over_the_bytes_sent() {
    const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&platform)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&platform)
        .await;
    let app = spawn_app_with(|c| {
        c.data_platform_url = Some(platform.uri());
        c.data_platform_secret = Some(SECRET.into());
    })
    .await;
    let order = paid_order(&app).await;
    let got = wait_for_requests(&platform, 2, Duration::from_secs(8)).await;
    assert_eq!(got.len(), 2, "a failed attempt, then the delivery");
    for request in &got {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["order"]["orderId"].as_i64(), Some(order));
        assert_eq!(
            request.headers["webhook-id"].to_str().unwrap(),
            body["eventId"].as_str().unwrap()
        );
        assert!(python_verifies(SECRET, request), "the retry is signed too");
        assert!(!python_verifies(
            "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
            request
        ));
    }
}

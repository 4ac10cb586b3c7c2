//! What an idle instance costs the database, what wakes the outbox relay (a commit's
//! NOTIFY at once, also after the database dropped the listener's connection), and that
//! the expiry scheduler, sleeping until the next deadline, still expires orders on time.
//!
//! Bounds are generous (seconds where a wake-up takes milliseconds) so the tests cannot
//! flake on a loaded machine, yet far below what polling would need to meet them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapter_dataplatform::HttpDataPlatform;
use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::{PgOutboxListener, PgOutboxStore};
use application::outbox::DeliverEvents;
use bootstrap::relay::RelaySettings;
use bootstrap::{Application, Config};
use domain::ports::SystemClock;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::ADMIN_TOKEN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_costs_at_most_one_database_round_trip_per_second() {
    let db = TestDatabase::create().unwrap();
    let (pool, trips) = db.counting_pool(10);
    let config = Config {
        database_url: db.url().to_owned(),
        bind_addr: "127.0.0.1:0".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        http_workers: 2,
        shutdown_timeout_secs: 5,
        ..Config::default()
    };
    let app = Application::build_with_pool(config, pool).await.unwrap();
    let handle = app.handle();
    let stopped = tokio::spawn(app.run_until_stopped());
    // Every scheduler runs once at start; what matters is the steady state after.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let window = Duration::from_secs(15);
    let (_, round_trips) = trips.count(tokio::time::sleep(window)).await;
    eprintln!("idle: {round_trips} round trips in {window:?}");
    assert!(
        round_trips <= usize::try_from(window.as_secs()).unwrap(),
        "{round_trips} round trips in {window:?}"
    );

    handle.stop(true).await;
    stopped.await.unwrap().unwrap();
}

/// A relay like the server's, resting up to a minute between deliveries: only a
/// wake-up can make it deliver within the tests' bounds.
struct Relay {
    db: TestDatabase,
    platform: MockServer,
    listener: Arc<PgOutboxListener>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start() -> Self {
        Self::start_gathering(Duration::from_millis(100)).await
    }

    /// A relay whose claims a wake-up starts are at least `gather` apart.
    async fn start_gathering(gather: Duration) -> Self {
        let db = TestDatabase::create().unwrap();
        let platform = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&platform)
            .await;
        let relay = DeliverEvents::new(
            Arc::new(PgOutboxStore::new(db.pool(4))),
            Arc::new(HttpDataPlatform::new(platform.uri(), Duration::from_secs(5), None).unwrap()),
            Arc::new(SystemClock),
        );
        let listener = Arc::new(PgOutboxListener::start(db.url()).unwrap());
        let settings = RelaySettings {
            concurrency: 16,
            gather,
            busy_poll: Duration::from_secs(60),
            fallback_poll: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(1),
        };
        let task = tokio::spawn({
            let listener = listener.clone();
            async move {
                // Never stops: the task is aborted with the test.
                let (_stop, stopped) = tokio::sync::watch::channel(false);
                bootstrap::relay::run(relay, &*listener, settings, stopped).await;
            }
        });
        let relay = Self {
            db,
            platform,
            listener,
            task,
        };
        relay
            .until("listening", || async { relay.listener.is_listening() })
            .await;
        // Lets the relay settle into its long rest.
        tokio::time::sleep(Duration::from_millis(500)).await;
        relay
    }

    async fn until<F: Future<Output = bool>>(&self, what: &str, condition: impl Fn() -> F) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !condition().await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn commit_event(&self, aggregate: i64) {
        self.db
            .execute(&format!(
                "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at) \
                 VALUES (gen_random_uuid(), 'ORDER_PAID', {aggregate}, '{{}}', now(), now())"
            ))
            .unwrap();
    }

    async fn delivered(&self) -> usize {
        self.platform
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    }

    /// How long until `count` events in all reached the platform (panics after 30 s).
    async fn time_until_delivered(&self, count: usize) -> Duration {
        let started = Instant::now();
        self.until("delivered", || async { self.delivered().await >= count })
            .await;
        started.elapsed()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_resting_relay_long_before_its_fallback_poll() {
    let relay = Relay::start().await;
    assert_eq!(relay.delivered().await, 0);
    relay.commit_event(1);
    let took = relay.time_until_delivered(1).await;
    assert!(took < Duration::from_secs(10), "delivered after {took:?}");
}

/// With a gather period of 3 s: an event committed after a quiet spell (the last claim
/// longer ago than that) is claimed at once, not 3 s later; one committed right after a
/// claim waits for the period, gathering with whatever else comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_a_quiet_spell_is_claimed_at_once_and_one_right_after_a_claim_gathers() {
    let gather = Duration::from_secs(3);
    let relay = Relay::start_gathering(gather).await;
    // The start-up claim, and the one the listener's connecting wakes (held back to 3 s
    // after it), are recent: let them age.
    tokio::time::sleep(gather * 2).await;
    relay.commit_event(1);
    let took = relay.time_until_delivered(1).await;
    assert!(took < Duration::from_secs(2), "first after quiet: {took:?}");
    tokio::time::sleep(gather + Duration::from_millis(500)).await;
    relay.commit_event(2);
    let took = relay.time_until_delivered(2).await;
    assert!(
        took < Duration::from_secs(2),
        "second after quiet: {took:?}"
    );
    // Right after that claim: the next waits out the period.
    relay.commit_event(3);
    let took = relay.time_until_delivered(3).await;
    assert!(took >= Duration::from_secs(1), "gathered: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_after_the_database_drops_the_listener() {
    let relay = Relay::start().await;
    relay.db.set_reachable(false).unwrap();
    relay
        .until("disconnected", || async { !relay.listener.is_listening() })
        .await;
    relay.db.set_reachable(true).unwrap();
    relay
        .until("listening again", || async {
            relay.listener.is_listening()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    relay.commit_event(2);
    let took = relay.time_until_delivered(1).await;
    assert!(took < Duration::from_secs(10), "delivered after {took:?}");
}

#[tokio::test]
async fn the_outbox_gauge_is_counted_when_metrics_are_scraped() {
    let app = crate::helpers::spawn_app().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The first scrape starts the count; a later one reports it.
    loop {
        let text = app.get("/metrics").await.text().await.unwrap();
        if text.contains(r#"shop_outbox_events{state="pending"} 0"#) {
            assert!(
                text.contains(r#"shop_outbox_events{state="delivered"} 0"#),
                "{text}"
            );
            assert!(
                text.contains(r#"shop_outbox_events{state="failed"} 0"#),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never counted: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_expiry_scheduler_expires_an_unpaid_order_at_its_deadline_without_a_trigger() {
    let app = crate::helpers::spawn_app_with(|c| c.order_payment_timeout_secs = 2).await;
    let product = app.create_product(100, 3).await;
    let user = app.create_user().await;
    let res = app
        .post(
            "/api/v1/orders",
            &serde_json::json!({"userId": user, "items": [{"productId": product, "quantity": 1}]}),
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let order = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let placed = Instant::now();
    loop {
        let got: serde_json::Value = app
            .get(&format!("/api/v1/orders/{order}?userId={user}"))
            .await
            .json()
            .await
            .unwrap();
        if got["status"] == "EXPIRED" {
            break;
        }
        assert!(
            placed.elapsed() < Duration::from_secs(15),
            "still {} long after its deadline",
            got["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.product(product).await["stock"], 3, "stock restored");
}

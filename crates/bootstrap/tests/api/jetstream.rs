//! End-to-end: paid orders published to NATS JetStream. The shared `nats-server -js` at
//! `NATS_URL` (`make test` starts it; without it these tests fail, saying so), each test on
//! a stream of its own; a server of the test's own where the test stops it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use adapter_dataplatform::test_support::{
    NatsServer, StreamMessage, delete_stream, nats_url, read_new, stream_messages, unique,
};
use bootstrap::Config;
use serde_json::{Value, json};

use crate::dataplatform::paid_order;
use crate::helpers::{ADMIN_TOKEN, TestApp, second_instance, spawn_app_with};

/// A stream of the test's own on a NATS server.
struct Target {
    url: String,
    stream: String,
    subject: String,
}

impl Target {
    fn on(url: String) -> Self {
        let stream = unique("E2E");
        let subject = format!("test.{}.orders.paid", stream.to_ascii_lowercase());
        Self {
            url,
            stream,
            subject,
        }
    }

    fn configure(&self, config: &mut Config) {
        config.data_platform_url = Some(self.url.clone());
        config.data_platform_stream = self.stream.clone();
        config.data_platform_subject = self.subject.clone();
    }

    async fn read_new(&self) -> Vec<StreamMessage> {
        read_new(&self.url, &self.stream, "reader").await.unwrap()
    }

    /// Deletes the stream when the test is done with the shared server, which reserves
    /// each stream's maximum size (1 GiB) of its storage.
    async fn delete(&self) {
        delete_stream(&self.url, &self.stream).await.unwrap();
    }
}

async fn outbox_counts(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/api/v1/admin/outbox"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the outbox counts until they are `want` (panics with the last counts after `within`).
async fn wait_for_counts(app: &TestApp, want: Value, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let counts = outbox_counts(&app.client, &app.base).await;
        if counts == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "outbox {counts}, waiting for {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outbox's event ids.
fn outbox_ids(app: &TestApp) -> BTreeSet<String> {
    app.db
        .query_scalar("SELECT coalesce(string_agg(id::text, ','), '') FROM outbox_events")
        .unwrap()
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Each message's `Nats-Msg-Id` is its body's `eventId`; returns the ids.
fn ids_checked(messages: &[StreamMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(&m.payload).unwrap();
            assert_eq!(body["eventType"], "ORDER_PAID", "{body}");
            let id = body["eventId"].as_str().unwrap().to_owned();
            assert_eq!(m.msg_id.as_deref(), Some(id.as_str()), "Nats-Msg-Id");
            id
        })
        .collect()
}

#[tokio::test]
async fn every_paid_order_is_on_the_stream_once_with_its_event_id_as_nats_msg_id() {
    let target = Target::on(nats_url().unwrap());
    let app = spawn_app_with(|c| target.configure(c)).await;
    let mut orders = BTreeSet::new();
    for _ in 0..4 {
        orders.insert(paid_order(&app).await);
    }
    wait_for_counts(
        &app,
        json!({"pending": 0, "delivered": 4, "failed": 0}),
        Duration::from_secs(10),
    )
    .await;
    let messages = target.read_new().await;
    let ids = ids_checked(&messages);
    assert_eq!(ids.len(), 4, "{messages:?}");
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        outbox_ids(&app)
    );
    let published: BTreeSet<i64> = messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(&m.payload).unwrap()["order"]["orderId"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(published, orders);
    // The body is the HTTP delivery's: the outbox's payload, as stored.
    for (message, id) in messages.iter().zip(&ids) {
        let stored: Value = serde_json::from_str(
            &app.db
                .query_scalar(&format!(
                    "SELECT payload::text FROM outbox_events WHERE id = '{id}'"
                ))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&message.payload).unwrap(),
            stored
        );
    }
    assert!(target.read_new().await.is_empty(), "nothing more");
    target.delete().await;
}

#[tokio::test]
async fn a_relay_killed_between_publish_and_mark_publishes_again_and_the_stream_drops_the_duplicate()
 {
    let target = Target::on(nats_url().unwrap());
    let app = spawn_app_with(|c| target.configure(c)).await;
    // The instance "dies" between the publish and the mark: its mark can never commit.
    app.db
        .execute(
            "CREATE FUNCTION test_no_mark() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF NEW.delivered_at IS NOT NULL AND OLD.delivered_at IS NULL THEN \
                 RAISE EXCEPTION 'the relay died before its mark'; \
               END IF; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER test_no_mark BEFORE UPDATE ON outbox_events \
               FOR EACH ROW EXECUTE FUNCTION test_no_mark();",
        )
        .unwrap();
    paid_order(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream_messages(&target.url, &target.stream)
        .await
        .unwrap_or(0)
        < 1
    {
        assert!(Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.handle.stop(false).await;
    assert_eq!(
        app.db
            .query_scalar("SELECT count(*) FROM outbox_events WHERE delivered_at IS NULL")
            .unwrap(),
        "1",
        "published, never marked"
    );
    // Another instance takes over once the claim's lease lapses (brought forward here).
    app.db
        .execute(
            "DROP TRIGGER test_no_mark ON outbox_events; \
             UPDATE outbox_events SET next_attempt_at = now();",
        )
        .unwrap();
    let (_other, _handle) = second_instance(&app, |c| target.configure(c)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .db
        .query_scalar("SELECT count(*) FROM outbox_events WHERE delivered_at IS NOT NULL")
        .unwrap()
        != "1"
    {
        assert!(
            Instant::now() < deadline,
            "never marked by the other instance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.db
            .query_scalar("SELECT attempts FROM outbox_events")
            .unwrap(),
        "2",
        "published twice: once by each instance"
    );
    let messages = target.read_new().await;
    assert_eq!(
        ids_checked(&messages).into_iter().collect::<BTreeSet<_>>(),
        outbox_ids(&app),
        "the consumer sees the event once: {messages:?}"
    );
    assert_eq!(messages.len(), 1);
    assert_eq!(
        stream_messages(&target.url, &target.stream).await.unwrap(),
        1
    );
    target.delete().await;
}

#[tokio::test]
async fn while_nats_is_down_events_wait_in_the_outbox_and_all_arrive_within_the_backoff_after_it_returns()
 {
    let mut nats = NatsServer::start(&[]).unwrap();
    let target = Target::on(nats.url());
    let app = spawn_app_with(|c| target.configure(c)).await;
    // One delivery while it is up: the stream exists and the client is connected.
    paid_order(&app).await;
    wait_for_counts(
        &app,
        json!({"pending": 0, "delivered": 1, "failed": 0}),
        Duration::from_secs(10),
    )
    .await;

    nats.kill().unwrap();
    for _ in 0..3 {
        paid_order(&app).await;
    }
    // Each event's attempt failed; all wait in the outbox.
    wait_for_counts(
        &app,
        json!({"pending": 0, "delivered": 1, "failed": 3}),
        Duration::from_secs(15),
    )
    .await;

    // Down "for a while": every waiting event failed three times (0.5 + 1 + 2 s of backoff).
    let deadline = Instant::now() + Duration::from_secs(20);
    while app
        .db
        .query_scalar("SELECT min(attempts) FROM outbox_events WHERE delivered_at IS NULL")
        .unwrap()
        .parse::<i32>()
        .unwrap()
        < 3
    {
        assert!(Instant::now() < deadline, "the relay stopped retrying");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    nats.restart().unwrap();
    let restarted = chrono::Utc::now();
    let attempts: i32 = app
        .db
        .query_scalar("SELECT max(attempts) FROM outbox_events WHERE delivered_at IS NULL")
        .unwrap()
        .parse()
        .unwrap();
    wait_for_counts(
        &app,
        json!({"pending": 0, "delivered": 4, "failed": 0}),
        Duration::from_secs(90),
    )
    .await;
    // At worst one more attempt failed while the client reconnected (at most 1 s apart);
    // the retry after it is the backoff's delay for one attempt more.
    let bound =
        restarted + domain::outbox::retry_delay(attempts + 1) + chrono::Duration::seconds(3);
    let last: chrono::DateTime<chrono::Utc> = app
        .db
        .query_scalar(
            "SELECT to_char(max(delivered_at) AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM outbox_events",
        )
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "NATS back at {restarted}; last event delivered {} ms later (attempts before: {attempts})",
        (last - restarted).num_milliseconds()
    );
    assert!(last <= bound, "delivered at {last}, later than {bound}");
    let messages = target.read_new().await;
    assert_eq!(
        ids_checked(&messages).into_iter().collect::<BTreeSet<_>>(),
        outbox_ids(&app)
    );
    assert_eq!(messages.len(), 4, "each once: {messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_publishing_to_one_stream_put_every_paid_order_on_it_exactly_once() {
    let target = Target::on(nats_url().unwrap());
    let app = spawn_app_with(|c| target.configure(c)).await;
    let (second, _h2) = second_instance(&app, |c| target.configure(c)).await;
    let (third, _h3) = second_instance(&app, |c| target.configure(c)).await;
    let bases = [app.base.clone(), second, third];
    let product = app.create_product(100, 1_000).await;
    let mut users = Vec::new();
    for _ in 0..30 {
        let user = app.create_user().await;
        assert!(app.charge(user, 10_000).await.status().is_success());
        users.push(user);
    }
    let payments = users.iter().enumerate().map(|(i, user)| {
        let base = bases[i % 3].clone();
        let client = app.client.clone();
        let user = *user;
        async move {
            let order: Value = client
                .post(format!("{base}/api/v1/orders"))
                .json(&json!({"userId": user, "items": [{"productId": product, "quantity": 1}]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let order = order["id"].as_i64().unwrap();
            let paid = client
                .post(format!("{base}/api/v1/points/use"))
                .json(&json!({"userId": user, "orderId": order}))
                .send()
                .await
                .unwrap();
            assert!(paid.status().is_success(), "{}", paid.status());
            order
        }
    });
    let orders: BTreeSet<i64> = futures_util::future::join_all(payments)
        .await
        .into_iter()
        .collect();
    assert_eq!(orders.len(), 30);
    wait_for_counts(
        &app,
        json!({"pending": 0, "delivered": 30, "failed": 0}),
        Duration::from_secs(20),
    )
    .await;
    let messages = target.read_new().await;
    let ids = ids_checked(&messages);
    assert_eq!(ids.len(), 30, "no duplicates on the stream");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), outbox_ids(&app));
    let published: BTreeSet<i64> = messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(&m.payload).unwrap()["order"]["orderId"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(published, orders);
    assert_eq!(
        stream_messages(&target.url, &target.stream).await.unwrap(),
        30
    );
    target.delete().await;
}

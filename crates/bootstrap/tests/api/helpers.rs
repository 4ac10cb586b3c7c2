//! `spawn_app()` and request helpers shared by the end-to-end tests.

use actix_web::dev::ServerHandle;
use adapter_postgres::test_support::TestDatabase;
use bootstrap::{Application, Config};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub handle: ServerHandle,
    pub stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::create().expect("test database");
    let mut config = Config {
        database_url: db.url().to_owned(),
        bind_addr: "127.0.0.1:0".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        http_workers: 2,
        db_pool_size: 10,
        db_checkout_timeout_ms: 1_000,
        shutdown_timeout_secs: 5,
        ..Config::default()
    };
    customise(&mut config);
    let app = Application::build(config)
        .await
        .expect("application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let stopped = tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        client: reqwest::Client::new(),
        db,
        handle,
        stopped,
    }
}

/// Another instance of the application on `app`'s database (as behind a load balancer).
pub async fn second_instance(
    app: &TestApp,
    customise: impl FnOnce(&mut Config),
) -> (String, ServerHandle) {
    let mut config = Config {
        database_url: app.db.url().to_owned(),
        bind_addr: "127.0.0.1:0".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        http_workers: 2,
        db_pool_size: 10,
        ..Config::default()
    };
    customise(&mut config);
    let other = Application::build(config)
        .await
        .expect("second instance builds");
    let base = format!("http://127.0.0.1:{}", other.port());
    let handle = other.handle();
    tokio::spawn(other.run_until_stopped());
    (base, handle)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_with_key(&self, path: &str, body: &Value, key: &str) -> Response {
        self.client
            .post(self.url(path))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.unwrap()
    }

    pub async fn create_product(&self, price: i64, stock: i64) -> i64 {
        let body = json!({"name": "Widget", "description": "test", "price": price, "stock": stock});
        let res = self
            .admin(reqwest::Method::POST, "/api/v1/admin/products", Some(&body))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    pub async fn product(&self, id: i64) -> Value {
        let res = self.get(&format!("/api/v1/products/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// A coupon open from a minute ago for a day.
    pub async fn create_coupon(&self, quantity: i64, kind: &str, value: i64) -> i64 {
        let now = chrono::Utc::now();
        let body = json!({
            "name": "Hot deal", "discountType": kind, "discountValue": value, "totalQuantity": quantity,
            "startsAt": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "endsAt": (now + chrono::Duration::days(1)).to_rfc3339(),
        });
        let res = self
            .admin(reqwest::Method::POST, "/api/v1/admin/coupons", Some(&body))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    pub async fn coupon(&self, id: i64) -> Value {
        let res = self.get(&format!("/api/v1/coupons/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn issue(&self, user: i64, coupon: i64) -> Response {
        self.post(
            "/api/v1/coupons/issue",
            &json!({"userId": user, "couponId": coupon}),
        )
        .await
    }

    pub async fn user_coupons(&self, user: i64) -> Vec<Value> {
        let res = self.get(&format!("/api/v1/coupons?userId={user}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn create_user(&self) -> i64 {
        let res = self.post("/api/v1/users", &json!({})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    pub async fn charge(&self, user: i64, amount: i64) -> Response {
        self.post(
            "/api/v1/points/charge",
            &json!({"userId": user, "amount": amount}),
        )
        .await
    }

    pub async fn balance(&self, user: i64) -> i64 {
        let res = self.get(&format!("/api/v1/points?userId={user}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["balance"]
            .as_i64()
            .unwrap()
    }

    pub async fn history_count(&self, user: i64) -> i64 {
        let res = self
            .get(&format!("/api/v1/points/history?userId={user}"))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["totalCount"]
            .as_i64()
            .unwrap()
    }
}

/// Asserts a problem+json response with `status` and `code`; returns its body.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(
        res.status().as_u16(),
        status,
        "status of {:?}",
        res.url().path()
    );
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
    body
}

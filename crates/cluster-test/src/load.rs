//! The mixed load, driven through nginx: charges, orders (paid, cancelled or left unpaid),
//! payments, coupon issues and catalogue and balance reads, by concurrent workers until a
//! deadline. Every keyed POST whose outcome is unknown (503, a broken connection, its key
//! still held by a request that died) is sent again with the same `Idempotency-Key` until
//! it has one, so the ledger knows exactly what happened; every response is recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// What the client knows happened.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Points charged per user.
    pub charged: HashMap<i64, i64>,
    /// Every order placed: its user, lines and status as the client last saw it.
    pub orders: BTreeMap<i64, Order>,
    /// Coupon issues: user → user coupon id.
    pub issued: HashMap<i64, i64>,
    /// Users refused the coupon as sold out.
    pub sold_out: usize,
    /// User coupons in an order that is not cancelled (not to be used twice).
    pub coupons_in_use: std::collections::HashSet<i64>,
}

/// An order as the client knows it.
#[derive(Debug, Clone)]
pub struct Order {
    pub user: i64,
    pub lines: Vec<(i64, i64)>,
    pub status: &'static str,
    pub pay_amount: i64,
}

/// One response (or transport failure, status 0) and when it came.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub op: &'static str,
    pub status: u16,
    pub at: Instant,
}

/// The fixtures the workers act on.
#[derive(Debug)]
pub struct Fixtures {
    pub users: Vec<i64>,
    /// (product id, price)
    pub products: Vec<(i64, i64)>,
    pub coupon: i64,
}

/// The shop through one base URL.
#[derive(Debug, Clone)]
pub struct Shop {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
}

/// Statuses that are the shop's definite answers to a keyed POST; anything else (a 503,
/// a broken connection, 409 `IDEMPOTENCY_KEY_IN_USE`) leaves the outcome open.
fn is_definite(status: u16, code: Option<&str>) -> bool {
    status != 0 && status != 503 && code != Some("IDEMPOTENCY_KEY_IN_USE")
}

impl Shop {
    /// One request: its status (0 for a transport failure) and its JSON body (`Null`
    /// when none).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
        admin: bool,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if admin {
            request = request.bearer_auth(&self.admin_token);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// An admin or set-up call that must succeed with `expect`.
    ///
    /// # Errors
    /// On any other status.
    pub async fn must(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        admin: bool,
        expect: StatusCode,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.send(method, path, body.as_ref(), None, admin).await;
        anyhow::ensure!(
            status == expect.as_u16(),
            "{path}: expected {expect}, got {status} {value}"
        );
        Ok(value)
    }
}

/// The load's shared state.
#[derive(Debug)]
pub struct Load {
    pub shop: Shop,
    pub fixtures: Fixtures,
    pub ledger: Mutex<Ledger>,
    pub responses: Mutex<Vec<Response>>,
    /// Keyed POSTs that never got a definite answer, and answers the driver did not expect.
    pub violations: Mutex<Vec<String>>,
    /// How long one keyed POST is retried (past a dead request's 30 s key hold).
    pub retry_for: Duration,
    /// Requests whose outcome was left open at first, and how they were settled.
    pub retries: Mutex<Retries>,
}

/// Requests sent again because their first answer left the outcome open.
#[derive(Debug, Default, Clone)]
pub struct Retries {
    /// Requests that needed more than one attempt.
    pub requests: usize,
    /// Answers `IDEMPOTENCY_KEY_IN_USE` among the attempts (the key held by a request that
    /// died or still runs).
    pub key_in_use: usize,
    /// The longest time from a first attempt to the definite answer.
    pub longest: Duration,
}

impl Load {
    fn record(&self, op: &'static str, status: u16) {
        if let Ok(mut responses) = self.responses.lock() {
            responses.push(Response {
                op,
                status,
                at: Instant::now(),
            });
        }
    }

    fn violation(&self, what: String) {
        if let Ok(mut violations) = self.violations.lock() {
            violations.push(what);
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A worker panicking is a bug the run reports anyway; its ledger stays usable.
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends a request until its outcome is definite (keyed POSTs; the cancel, whose
    /// repeat is refused as not cancellable, is read back by the caller): each attempt
    /// recorded under `op`.
    async fn until_definite(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Option<(u16, Value)> {
        let first = Instant::now();
        let deadline = first + self.retry_for;
        let mut attempts = 0_usize;
        let mut key_in_use = 0_usize;
        loop {
            let (status, value) = self
                .shop
                .send(method.clone(), path, Some(body), key, false)
                .await;
            self.record(op, status);
            attempts += 1;
            let code = value.get("code").and_then(Value::as_str);
            if is_definite(status, code) {
                if attempts > 1
                    && let Ok(mut retries) = self.retries.lock()
                {
                    retries.requests += 1;
                    retries.key_in_use += key_in_use;
                    retries.longest = retries.longest.max(first.elapsed());
                }
                return Some((status, value));
            }
            if code == Some("IDEMPOTENCY_KEY_IN_USE") {
                key_in_use += 1;
            }
            if Instant::now() > deadline {
                self.violation(format!(
                    "{op} {path} {body}: no definite answer within {:?} (last {status})",
                    self.retry_for
                ));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A worker: random operations until `until`.
    pub async fn worker(&self, seed: u64, until: Instant) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut n = 0_u64;
        while Instant::now() < until {
            n += 1;
            let key = format!("w{seed}-{n}");
            let Some(&user) = pick(&mut rng, &self.fixtures.users) else {
                return;
            };
            match rng.u32(0..100) {
                0..25 => self.charge(user, rng.i64(1..=5) * 10_000, &key).await,
                25..50 => self.order_flow(&mut rng, user, &key).await,
                50..58 => self.issue(user, &key).await,
                58..72 => self.read_page(&mut rng).await,
                72..86 => self.read_product(&mut rng).await,
                86..92 => self.read("best", "/api/v1/products/best").await,
                _ => {
                    self.read("balance", &format!("/api/v1/points?userId={user}"))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn charge(&self, user: i64, amount: i64, key: &str) {
        let body = json!({"userId": user, "amount": amount});
        match self
            .until_definite(
                "charge",
                Method::POST,
                "/api/v1/points/charge",
                &body,
                Some(key),
            )
            .await
        {
            Some((200, _)) => *self.ledger().charged.entry(user).or_default() += amount,
            Some((409, value)) if code_is(&value, "BALANCE_LIMIT_EXCEEDED") => {}
            Some((status, value)) => self.unexpected("charge", status, &value),
            None => {}
        }
    }

    async fn issue(&self, user: i64, key: &str) {
        if self.ledger().issued.contains_key(&user) {
            return;
        }
        let body = json!({"userId": user, "couponId": self.fixtures.coupon});
        match self
            .until_definite(
                "coupon_issue",
                Method::POST,
                "/api/v1/coupons/issue",
                &body,
                Some(key),
            )
            .await
        {
            Some((201, value)) => {
                if let Some(id) = int(&value, "id") {
                    self.ledger().issued.insert(user, id);
                }
            }
            Some((409, value)) if code_is(&value, "COUPON_SOLD_OUT") => {
                self.ledger().sold_out += 1;
            }
            // Another worker issued it to this user meanwhile.
            Some((409, value)) if code_is(&value, "COUPON_ALREADY_ISSUED") => {}
            Some((status, value)) => self.unexpected("coupon_issue", status, &value),
            None => {}
        }
    }

    /// Places an order (a third of them on the scarce first product, half with the user's
    /// coupon when it has a free one), then pays it (80%), cancels it (10%) or leaves it
    /// unpaid; one the balance cannot pay is cancelled.
    async fn order_flow(&self, rng: &mut fastrand::Rng, user: i64, key: &str) {
        let (scarce, plenty) = match self.fixtures.products.split_first() {
            Some((scarce, plenty)) if !plenty.is_empty() => (scarce.0, plenty),
            _ => return,
        };
        let mut lines: Vec<(i64, i64)> = Vec::new();
        let first = match pick(rng, plenty) {
            Some(p) if rng.u32(0..3) != 0 => p.0,
            _ => scarce,
        };
        lines.push((first, rng.i64(1..=3)));
        if rng.bool()
            && let Some(&(second, _)) = pick(rng, plenty)
            && second != first
        {
            lines.push((second, rng.i64(1..=2)));
        }
        let coupon = if rng.bool() {
            let mut ledger = self.ledger();
            let free = ledger
                .issued
                .get(&user)
                .copied()
                .filter(|c| !ledger.coupons_in_use.contains(c));
            if let Some(c) = free {
                ledger.coupons_in_use.insert(c);
            }
            free
        } else {
            None
        };
        let items: Vec<Value> = lines
            .iter()
            .map(|(p, q)| json!({"productId": p, "quantity": q}))
            .collect();
        let body = json!({"userId": user, "items": items, "userCouponId": coupon});
        let placed = self
            .until_definite("order", Method::POST, "/api/v1/orders", &body, Some(key))
            .await;
        let release = |load: &Self| {
            if let Some(c) = coupon {
                load.ledger().coupons_in_use.remove(&c);
            }
        };
        let order = match placed {
            Some((201, value)) => value,
            Some((409, value)) if code_is(&value, "OUT_OF_STOCK") => return release(self),
            Some((status, value)) => {
                self.unexpected("order", status, &value);
                return release(self);
            }
            None => return release(self),
        };
        let Some(id) = int(&order, "id") else {
            self.unexpected("order", 201, &order);
            return release(self);
        };
        let pay_amount = int(&order, "payAmount").unwrap_or(0);
        self.ledger().orders.insert(
            id,
            Order {
                user,
                lines,
                status: "NOT_PAID",
                pay_amount,
            },
        );
        let pay = rng.u32(0..10) < 8;
        let cancel = if pay {
            !self.pay(user, id, &format!("{key}-pay")).await
        } else {
            rng.bool()
        };
        if cancel {
            self.cancel(user, id, coupon).await;
        }
    }

    /// Pays an order; false when the balance was short.
    async fn pay(&self, user: i64, order: i64, key: &str) -> bool {
        let body = json!({"userId": user, "orderId": order});
        match self
            .until_definite("pay", Method::POST, "/api/v1/points/use", &body, Some(key))
            .await
        {
            Some((200, _)) => {
                if let Some(o) = self.ledger().orders.get_mut(&order) {
                    o.status = "PAID";
                }
                true
            }
            Some((409, value)) if code_is(&value, "INSUFFICIENT_BALANCE") => false,
            Some((status, value)) => {
                self.unexpected("pay", status, &value);
                true
            }
            None => true,
        }
    }

    /// Cancels an order; an outcome left open (or a repeat refused) is read back.
    async fn cancel(&self, user: i64, order: i64, coupon: Option<i64>) {
        let path = format!("/api/v1/orders/{order}/cancel");
        let body = json!({"userId": user});
        let status = match self
            .until_definite("cancel", Method::POST, &path, &body, None)
            .await
        {
            Some((200, _)) => Some("CANCELLED"),
            Some(_) | None => {
                let (status, value) = self
                    .shop
                    .send(
                        Method::GET,
                        &format!("/api/v1/orders/{order}?userId={user}"),
                        None,
                        None,
                        false,
                    )
                    .await;
                self.record("order_read", status);
                if status == 200 {
                    value.get("status").and_then(Value::as_str).and_then(|s| {
                        ["NOT_PAID", "PAID", "CANCELLED", "EXPIRED"]
                            .into_iter()
                            .find(|k| *k == s)
                    })
                } else {
                    self.unexpected("order_read", status, &value);
                    None
                }
            }
        };
        let mut ledger = self.ledger();
        if let Some(status) = status
            && let Some(o) = ledger.orders.get_mut(&order)
        {
            o.status = status;
        }
        if status == Some("CANCELLED")
            && let Some(c) = coupon
        {
            ledger.coupons_in_use.remove(&c);
        }
    }

    async fn read_page(&self, rng: &mut fastrand::Rng) {
        let page = rng.usize(1..=3);
        self.read(
            "products_page",
            &format!("/api/v1/products?page={page}&size=10"),
        )
        .await;
    }

    async fn read_product(&self, rng: &mut fastrand::Rng) {
        let Some(&(id, _)) = pick(rng, &self.fixtures.products) else {
            return;
        };
        self.read("product", &format!("/api/v1/products/{id}"))
            .await;
    }

    async fn read(&self, op: &'static str, path: &str) {
        let (status, value) = self.shop.send(Method::GET, path, None, None, false).await;
        self.record(op, status);
        if status != 200 && status != 503 {
            self.unexpected(op, status, &value);
        }
    }

    fn unexpected(&self, op: &str, status: u16, value: &Value) {
        if status < 500 {
            self.violation(format!("{op}: unexpected {status} {value}"));
        }
    }
}

/// A random element of `items`.
fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> Option<&'a T> {
    items.get(rng.usize(..items.len().max(1)))
}

/// The integer `field` of a JSON object.
pub fn int(value: &Value, field: &str) -> Option<i64> {
    value.get(field).and_then(Value::as_i64)
}

fn code_is(value: &Value, code: &str) -> bool {
    value.get("code").and_then(Value::as_str) == Some(code)
}

/// Creates `users` users, `products` products (the first one scarce: `scarce_stock`), and a
/// coupon for fewer users than there are.
///
/// # Errors
/// When a set-up call fails.
pub async fn fixtures(
    shop: &Shop,
    users: usize,
    products: usize,
    scarce_stock: i64,
    coupons: usize,
) -> anyhow::Result<(Fixtures, BTreeMap<i64, i64>)> {
    let mut fixtures = Fixtures {
        users: Vec::new(),
        products: Vec::new(),
        coupon: 0,
    };
    let mut stock = BTreeMap::new();
    for _ in 0..users {
        let user = shop
            .must(
                Method::POST,
                "/api/v1/users",
                Some(json!({})),
                false,
                StatusCode::CREATED,
            )
            .await?;
        fixtures.users.push(int(&user, "id").context("a user id")?);
    }
    for n in 0..products {
        let initial = if n == 0 { scarce_stock } else { 100_000 };
        let price = 1_000 + 500 * i64::try_from(n % 9)?;
        let product = shop
            .must(
                Method::POST,
                "/api/v1/admin/products",
                Some(json!({"name": format!("cluster product {n}"), "price": price, "stock": initial})),
                true,
                StatusCode::CREATED,
            )
            .await?;
        let id = int(&product, "id").context("a product id")?;
        fixtures.products.push((id, price));
        stock.insert(id, initial);
    }
    let coupon = shop
        .must(
            Method::POST,
            "/api/v1/admin/coupons",
            Some(json!({
                "name": "cluster coupon",
                "discountType": "FIXED",
                "discountValue": 500,
                "totalQuantity": coupons,
                "endsAt": "2999-01-01T00:00:00Z",
            })),
            true,
            StatusCode::CREATED,
        )
        .await?;
    fixtures.coupon = int(&coupon, "id").context("a coupon id")?;
    Ok((fixtures, stock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_shop_answer_is_definite() {
        assert!(is_definite(200, None));
        assert!(is_definite(409, Some("INSUFFICIENT_BALANCE")));
        assert!(!is_definite(503, Some("SERVICE_UNAVAILABLE")));
        assert!(!is_definite(0, None));
        assert!(!is_definite(409, Some("IDEMPOTENCY_KEY_IN_USE")));
    }
}

//! With end-user authentication on, every user-scoped route acts for the bearer token's
//! user: each route × each kind of token gets the right status and code, a refusal
//! changes nothing, and idempotency keys belong to the token's user.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app_with};

const SECRET: &str = "a-route-matrix-secret-of-32-bytes!";
const ISSUER: &str = "https://id.example";
const AUDIENCE: &str = "shop";
/// The fixture key pair, private half as PKCS#1 DER: a test key, trusted by nothing else.
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa-test-key.der");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa-test-key.pub.pem");
/// The modulus of the fixture key, base64url: its JWK's `n`.
const RSA_N: &str = "1h0WoF_EmAtTKVYFvOfuVtXqb0u3kDoHMcr-Vg9YtXP2THATXDwsxyWlBmPeyTQjkKGADpLsA21NCVjgp3X1gBqI_0WRkMrZ5555n4gAibEj5BpQ00zcYZ4V13GQZMmYZWp9g5hV7hwH-xnwABTUz2JnOJ_hsgm4_UCjy_ZeSwi3jypb1-pUcwhCKX1qgD-yZxRKr07TpHRsJQOqftCxC6zKZsWwdnXz8aPDHzIFFn4pNlF5ydvisu18XoB_VliOoCQpl5UmYRksdNXGUCtfSkSO2kBdHT5yckjGcQ3j7HDp1WvCv2n-w56e2RyzKV05EtR89HZUMP7vyrnx_ce_hw";

fn now() -> i64 {
    i64::try_from(get_current_timestamp()).unwrap()
}

fn claims(subject: &str) -> Value {
    json!({"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600})
}

fn with(mut claims: Value, claim: &str, value: Value) -> Value {
    claims[claim] = value;
    claims
}

fn signed(claims: &Value, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).unwrap();
    format!(
        "Bearer {}",
        encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
    )
}

fn bearer(subject: &str) -> String {
    signed(&claims(subject), SECRET.as_bytes())
}

/// A token with `alg: none` and no signature, as an attacker writes one.
fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "Bearer {}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// Every `Authorization` a route must refuse with 401, by name, with whether it carries a
/// bearer token at all (the detail differs; the challenge is the same).
fn refused_credentials() -> Vec<(&'static str, Option<String>, bool)> {
    let alice = claims("alice");
    vec![
        ("no token", None, false),
        (
            "another scheme",
            Some("Basic YWxpY2U6c2VjcmV0".into()),
            false,
        ),
        ("malformed", Some("Bearer not.a.token".into()), true),
        (
            "wrong signature",
            Some(signed(&alice, b"another-secret-of-at-least-32-bytes")),
            true,
        ),
        (
            "expired",
            Some(signed(
                &with(alice.clone(), "exp", json!(now() - 3600)),
                SECRET.as_bytes(),
            )),
            true,
        ),
        (
            "not yet valid",
            Some(signed(
                &with(alice.clone(), "nbf", json!(now() + 3600)),
                SECRET.as_bytes(),
            )),
            true,
        ),
        (
            "wrong issuer",
            Some(signed(
                &with(alice.clone(), "iss", json!("https://evil.example")),
                SECRET.as_bytes(),
            )),
            true,
        ),
        (
            "wrong audience",
            Some(signed(
                &with(alice.clone(), "aud", json!("another-api")),
                SECRET.as_bytes(),
            )),
            true,
        ),
        ("alg none", Some(unsigned(&alice)), true),
    ]
}

/// Where a route names its user.
#[derive(Clone, Copy)]
enum Named {
    Query,
    Body,
    Path,
}

struct Route {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    named: Named,
    /// The status of a success.
    ok: u16,
}

impl Route {
    fn new(name: &'static str, method: Method, path: String, named: Named, ok: u16) -> Self {
        Self {
            name,
            method,
            path,
            body: None,
            named,
            ok,
        }
    }

    fn body(self, body: Value) -> Self {
        Self {
            body: Some(body),
            ..self
        }
    }

    /// The request with `authorization`, naming `user` (or no one). A route that names
    /// its user in the path always names one: `user`, else `own`.
    fn request(
        &self,
        app: &TestApp,
        authorization: Option<&str>,
        user: Option<i64>,
        own: i64,
    ) -> RequestBuilder {
        let mut path = self.path.clone();
        let mut body = self.body.clone();
        match (self.named, user) {
            (Named::Path, user) => path = path.replace("{user}", &user.unwrap_or(own).to_string()),
            (Named::Query, Some(user)) => {
                let separator = if path.contains('?') { '&' } else { '?' };
                path = format!("{path}{separator}userId={user}");
            }
            (Named::Body, Some(user)) => {
                if let Some(body) = body.as_mut() {
                    body["userId"] = json!(user);
                }
            }
            (_, None) => {}
        }
        let mut req = app.client.request(self.method.clone(), app.url(&path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        req
    }

    async fn send(
        &self,
        app: &TestApp,
        authorization: Option<&str>,
        user: Option<i64>,
        own: i64,
    ) -> Response {
        self.request(app, authorization, user, own)
            .send()
            .await
            .unwrap()
    }
}

/// Alice's and Bob's users, a product, a coupon, and two unpaid orders of Alice's.
struct Shop {
    app: TestApp,
    alice: i64,
    bob: i64,
    coupon: i64,
    product: i64,
    to_pay: i64,
    to_cancel: i64,
}

async fn register(app: &TestApp, authorization: &str) -> i64 {
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn place(app: &TestApp, authorization: &str, product: i64) -> i64 {
    let res = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("authorization", authorization)
        .json(&json!({"items": [{"productId": product, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn shop() -> Shop {
    let app = spawn_app_with(|c| {
        c.auth_jwt_secret = Some(SECRET.into());
        c.auth_jwt_issuer = Some(ISSUER.into());
        c.auth_jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let alice = register(&app, &bearer("alice")).await;
    let bob = register(&app, &bearer("bob")).await;
    let product = app.create_product(1_000, 100).await;
    let coupon = app.create_coupon(10, "FIXED", 500).await;
    let to_pay = place(&app, &bearer("alice"), product).await;
    let to_cancel = place(&app, &bearer("alice"), product).await;
    let charged = app
        .client
        .post(app.url("/api/v1/points/charge"))
        .header("authorization", bearer("alice"))
        .json(&json!({"amount": 50_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(charged.status().as_u16(), 200);
    Shop {
        app,
        alice,
        bob,
        coupon,
        product,
        to_pay,
        to_cancel,
    }
}

/// Every user-scoped route, each as Alice would call it successfully.
fn routes(shop: &Shop) -> Vec<Route> {
    use Method as M;
    use Named::{Body, Path, Query};
    vec![
        Route::new("getUser", M::GET, "/api/v1/users/{user}".into(), Path, 200),
        Route::new("getBalance", M::GET, "/api/v1/points".into(), Query, 200),
        Route::new(
            "listPointHistory",
            M::GET,
            "/api/v1/points/history".into(),
            Query,
            200,
        ),
        Route::new(
            "listOrders",
            M::GET,
            "/api/v1/orders?page=1".into(),
            Query,
            200,
        ),
        Route::new(
            "getOrder",
            M::GET,
            format!("/api/v1/orders/{}", shop.to_pay),
            Query,
            200,
        ),
        Route::new(
            "issueCoupon",
            M::POST,
            "/api/v1/coupons/issue".into(),
            Body,
            201,
        )
        .body(json!({"couponId": shop.coupon})),
        Route::new(
            "listUserCoupons",
            M::GET,
            "/api/v1/coupons".into(),
            Query,
            200,
        ),
        Route::new(
            "chargePoints",
            M::POST,
            "/api/v1/points/charge".into(),
            Body,
            200,
        )
        .body(json!({"amount": 1_000})),
        Route::new("placeOrder", M::POST, "/api/v1/orders".into(), Body, 201)
            .body(json!({"items": [{"productId": shop.product, "quantity": 2}]})),
        Route::new("payOrder", M::POST, "/api/v1/points/use".into(), Body, 200)
            .body(json!({"orderId": shop.to_pay})),
        Route::new(
            "cancelOrder",
            M::POST,
            format!("/api/v1/orders/{}/cancel", shop.to_cancel),
            Body,
            200,
        )
        .body(json!({})),
    ]
}

/// Everything a user-scoped route could change, as one line.
fn state(app: &TestApp) -> String {
    app.db
        .query_scalar(
            "SELECT concat_ws(' | ', \
               (SELECT string_agg(user_id || '=' || balance, ',' ORDER BY user_id) FROM point_wallets), \
               (SELECT count(*) FROM point_history), \
               (SELECT string_agg(id || '=' || status, ',' ORDER BY id) FROM orders), \
               (SELECT string_agg(id || '=' || stock, ',' ORDER BY id) FROM products), \
               (SELECT string_agg(id || '=' || status, ',' ORDER BY id) FROM user_coupons), \
               (SELECT count(*) FROM idempotency_keys), \
               (SELECT count(*) FROM users), \
               (SELECT count(*) FROM user_subjects), \
               (SELECT count(*) FROM outbox_events))",
        )
        .unwrap()
}

fn challenge(res: &Response) -> String {
    res.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn every_user_scoped_route_refuses_every_unusable_token_and_changes_nothing() {
    let shop = shop().await;
    let before = state(&shop.app);
    for route in routes(&shop) {
        for (case, authorization, bearer) in refused_credentials() {
            for named in [None, Some(shop.alice)] {
                let res = route
                    .send(&shop.app, authorization.as_deref(), named, shop.alice)
                    .await;
                let challenge = challenge(&res);
                let body = assert_problem(res, 401, "UNAUTHORIZED").await;
                assert_eq!(
                    challenge, r#"Bearer error="invalid_token""#,
                    "{} with {case}",
                    route.name
                );
                // No detail that helps an attacker: every invalid token reads the same.
                let detail = if bearer {
                    "the bearer token is not valid"
                } else {
                    "a bearer token is required"
                };
                assert_eq!(body["detail"], detail, "{case}");
            }
        }
    }
    assert_eq!(state(&shop.app), before);
}

#[tokio::test]
async fn another_users_token_is_forbidden_and_unregistered_subjects_act_for_no_one() {
    let shop = shop().await;
    let before = state(&shop.app);
    let bob = bearer("bob");
    let carol = bearer("carol"); // a valid token whose subject never registered
    for route in routes(&shop) {
        // Naming Alice, existing, or an id no user has: the same 403, so a token
        // learns nothing about other ids.
        for named in [shop.alice, 999_999] {
            for token in [&bob, &carol] {
                let res = route
                    .send(&shop.app, Some(token), Some(named), shop.alice)
                    .await;
                assert_problem(res, 403, "FORBIDDEN").await;
            }
        }
        // Carol naming no one has no user.
        if !matches!(route.named, Named::Path) {
            let res = route.send(&shop.app, Some(&carol), None, shop.alice).await;
            assert_problem(res, 404, "USER_NOT_FOUND").await;
        }
    }
    // Bob naming himself, on Alice's orders: not found, as any order not his.
    for path in [
        format!("/api/v1/orders/{}", shop.to_pay),
        format!("/api/v1/orders/{}?userId={}", shop.to_pay, shop.bob),
    ] {
        let res = shop
            .app
            .client
            .get(shop.app.url(&path))
            .header("authorization", &bob)
            .send()
            .await
            .unwrap();
        assert_problem(res, 404, "ORDER_NOT_FOUND").await;
    }
    for (path, body) in [
        (
            "/api/v1/points/use".to_owned(),
            json!({"orderId": shop.to_pay}),
        ),
        (
            format!("/api/v1/orders/{}/cancel", shop.to_cancel),
            json!({}),
        ),
    ] {
        let res = shop
            .app
            .client
            .post(shop.app.url(&path))
            .header("authorization", &bob)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(res, 404, "ORDER_NOT_FOUND").await;
    }
    // Bob's lists hold nothing of Alice's.
    for path in [
        "/api/v1/orders",
        "/api/v1/points/history",
        "/api/v1/coupons",
    ] {
        let res = shop
            .app
            .client
            .get(shop.app.url(path))
            .header("authorization", &bob)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["items"], json!([]), "{path}");
    }
    assert_eq!(state(&shop.app), before);
}

#[tokio::test]
async fn the_right_token_acts_for_its_user_named_or_not() {
    let shop = shop().await;
    let alice = bearer("alice");
    for route in routes(&shop) {
        // Naming no one for the reads, naming herself for the rest (whose success
        // changes what a second call would get).
        let res = route.send(&shop.app, Some(&alice), None, shop.alice).await;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, route.ok, "{}: {body}", route.name);
        let user = body.get("userId").or_else(|| body.get("id"));
        if route.method == Method::GET && matches!(route.named, Named::Query) {
            let again = route
                .send(&shop.app, Some(&alice), Some(shop.alice), shop.alice)
                .await;
            assert_eq!(
                again.status().as_u16(),
                200,
                "{} naming herself",
                route.name
            );
        }
        match route.name {
            "listOrders" | "listPointHistory" | "listUserCoupons" => {
                assert!(!body["items"].as_array().unwrap().is_empty(), "{body}");
                assert!(
                    body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|item| item.get("userId").is_none_or(|u| u == shop.alice)),
                    "{body}"
                );
            }
            "getUser" => assert_eq!(user, Some(&json!(shop.alice))),
            _ => assert_eq!(body["userId"], shop.alice, "{}: {body}", route.name),
        }
    }
    // Paid with Alice's points: 50,000 + 1,000 charged, 1,000 paid.
    assert_eq!(
        shop.app
            .db
            .query_scalar(&format!(
                "SELECT balance FROM point_wallets WHERE user_id = {}",
                shop.alice
            ))
            .unwrap(),
        "50000"
    );
}

#[tokio::test]
async fn idempotency_keys_belong_to_the_tokens_user() {
    let shop = shop().await;
    let charge = |token: String| {
        shop.app
            .client
            .post(shop.app.url("/api/v1/points/charge"))
            .header("authorization", token)
            .header("Idempotency-Key", "charge-1")
            .json(&json!({"amount": 700}))
    };
    let alice = charge(bearer("alice")).send().await.unwrap();
    assert_eq!(alice.status().as_u16(), 200);
    // The same key and body from Bob is Bob's own request, not a replay of Alice's.
    let bob = charge(bearer("bob")).send().await.unwrap();
    assert_eq!(bob.status().as_u16(), 200);
    assert!(bob.headers().get("idempotent-replayed").is_none());
    let bob: Value = bob.json().await.unwrap();
    assert_eq!(bob, json!({"userId": shop.bob, "balance": 700}));
    // Alice's retry replays hers.
    let again = charge(bearer("alice")).send().await.unwrap();
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"userId": shop.alice, "balance": 50_700})
    );
    // Naming herself is the same request as leaving her user out: a replay, not a
    // reuse of the key with another request.
    let named = shop
        .app
        .client
        .post(shop.app.url("/api/v1/points/charge"))
        .header("authorization", bearer("alice"))
        .header("Idempotency-Key", "charge-1")
        .json(&json!({"userId": shop.alice, "amount": 700}))
        .send()
        .await
        .unwrap();
    assert_eq!(named.status().as_u16(), 200);
    assert_eq!(named.headers().get("idempotent-replayed").unwrap(), "true");
    // Another amount under the same key is another request.
    let other = charge(bearer("alice"))
        .json(&json!({"amount": 701}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 422);
    assert_eq!(
        shop.app
            .db
            .query_scalar(
                "SELECT string_agg(user_id::text, ',' ORDER BY user_id) FROM idempotency_keys"
            )
            .unwrap(),
        format!("{},{}", shop.alice, shop.bob)
    );
    let balance: Value = shop
        .app
        .client
        .get(shop.app.url("/api/v1/points"))
        .header("authorization", bearer("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(balance["balance"], 50_700, "one charge for Alice");
}

#[tokio::test]
async fn with_an_rs256_key_set_an_hs256_token_is_refused_whatever_it_is_signed_with() {
    let file = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
    let set =
        json!({"keys": [{"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "rsa-1", "use": "sig"}]});
    std::fs::write(&file, set.to_string()).unwrap();
    let path = file.to_string_lossy().into_owned();
    let app = spawn_app_with(|c| {
        c.auth_jwks_file = Some(path);
        c.auth_jwt_issuer = Some(ISSUER.into());
        c.auth_jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let rs256 = |claims: &Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let key = EncodingKey::from_rsa_der(RSA_PRIVATE);
        format!("Bearer {}", encode(&header, claims, &key).unwrap())
    };
    let alice = rs256(&claims("alice"));
    let user = register(&app, &alice).await;
    let shop = Shop {
        alice: user,
        bob: user,
        coupon: app.create_coupon(10, "FIXED", 500).await,
        product: app.create_product(1_000, 100).await,
        to_pay: 1,
        to_cancel: 1,
        app,
    };
    // Algorithm confusion: HS256 "signed" with the public key as the HMAC secret, in
    // the forms an attacker would try, with and without the key's kid.
    let mut confused = Vec::new();
    for secret in [RSA_PUBLIC.as_bytes(), RSA_N.as_bytes()] {
        for kid in [None, Some("rsa-1")] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid.map(String::from);
            let key = EncodingKey::from_secret(secret).unwrap();
            confused.push(format!(
                "Bearer {}",
                encode(&header, &claims("alice"), &key).unwrap()
            ));
        }
    }
    let before = state(&shop.app);
    for route in routes(&shop) {
        for token in &confused {
            let res = route.send(&shop.app, Some(token), None, shop.alice).await;
            assert_problem(res, 401, "UNAUTHORIZED").await;
        }
    }
    assert_eq!(state(&shop.app), before);
    // The key set's own token is Alice.
    let res = routes(&shop)[1]
        .send(&shop.app, Some(&alice), None, shop.alice)
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"userId": shop.alice, "balance": 0})
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn with_authentication_off_a_user_scoped_route_needs_its_user_named() {
    let app = crate::helpers::spawn_app().await;
    let user = app.create_user().await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/points", None),
        (Method::GET, "/api/v1/orders", None),
        (
            Method::POST,
            "/api/v1/points/charge",
            Some(json!({"amount": 100})),
        ),
        (
            Method::POST,
            "/api/v1/points/charge",
            Some(json!({"userId": null, "amount": 100})),
        ),
    ] {
        let mut req = app.client.request(method, app.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let body = assert_problem(req.send().await.unwrap(), 400, "VALIDATION_FAILED").await;
        assert_eq!(body["errors"][0]["field"], "userId", "{path}: {body}");
    }
    // A token is not looked at: the named user is the user.
    let res = app
        .client
        .get(app.url(&format!("/api/v1/points?userId={user}")))
        .header("authorization", "Bearer not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

/// The token costs no round trip once its subject is known to the instance, and one (the
/// subject's lookup) the first time. Each count is the least of three tries, so a
/// background job's statement landing in one window cannot make the test flaky; a
/// request costing more every time still fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_adds_no_round_trip_once_its_subject_is_known() {
    use bootstrap::{Application, Config};

    let registrar = spawn_app_with(|c| c.auth_jwt_secret = Some(SECRET.into())).await;
    let subjects = ["u1", "u2", "u3"];
    for subject in subjects {
        register(
            &registrar,
            &signed(
                &json!({"sub": subject, "exp": now() + 600}),
                SECRET.as_bytes(),
            ),
        )
        .await;
    }
    // Another instance, counting its round trips, that has never seen these subjects.
    let (pool, trips) = registrar.db.counting_pool(4);
    let config = Config {
        database_url: registrar.db.url().to_owned(),
        bind_addr: "127.0.0.1:0".into(),
        http_workers: 1,
        auth_jwt_secret: Some(SECRET.into()),
        order_expiry_scan_secs: 86_400,
        best_seller_refresh_secs: 86_400,
        ..Config::default()
    };
    let app = Application::build_with_pool(config, pool).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let charge = |subject: &str| {
        client
            .post(format!("{base}/api/v1/points/charge"))
            .header(
                "authorization",
                signed(
                    &json!({"sub": subject, "exp": now() + 600}),
                    SECRET.as_bytes(),
                ),
            )
            .json(&json!({"amount": 100}))
            .send()
    };
    let mut cold = Vec::new();
    for subject in subjects {
        let (res, n) = trips.count(charge(subject)).await;
        assert_eq!(res.unwrap().status().as_u16(), 200);
        cold.push(n);
    }
    let mut warm = Vec::new();
    for subject in subjects {
        let (res, n) = trips.count(charge(subject)).await;
        assert_eq!(res.unwrap().status().as_u16(), 200);
        warm.push(n);
    }
    // A charge is one statement (see round_trips.rs); the subject's lookup one more.
    assert_eq!(cold.iter().min(), Some(&2), "first requests: {cold:?}");
    assert_eq!(warm.iter().min(), Some(&1), "later requests: {warm:?}");
    handle.stop(true).await;
}

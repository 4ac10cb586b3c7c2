//! End-user authentication on (`AUTH_JWT_SECRET`, `AUTH_JWKS_FILE` or `AUTH_JWKS_URL`
//! set): the admin API takes a token with the `shop:admin` scope as it takes
//! `ADMIN_TOKEN`, and refuses others as RFC 6750 says.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_problem, spawn_app, spawn_app_with};

const SECRET: &str = "an-end-to-end-secret-of-32-bytes+";
const ISSUER: &str = "https://id.example";
const AUDIENCE: &str = "shop";

async fn spawn_with_auth() -> TestApp {
    spawn_app_with(|c| {
        c.auth_jwt_secret = Some(SECRET.into());
        c.auth_jwt_issuer = Some(ISSUER.into());
        c.auth_jwt_audience = Some(AUDIENCE.into());
    })
    .await
}

/// A token for `subject`, expiring `exp_in` seconds from now, with `scope`.
fn token(subject: &str, scope: Option<&str>, exp_in: i64) -> String {
    let now = i64::try_from(get_current_timestamp()).unwrap();
    let mut claims = json!({"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "exp": now + exp_in});
    if let Some(scope) = scope {
        claims["scope"] = json!(scope);
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn create_product(app: &TestApp, authorization: Option<&str>) -> Response {
    let mut req = app
        .client
        .request(Method::POST, app.url("/api/v1/admin/products"))
        .json(&json!({"name": "Mug", "description": "350 ml", "price": 12000, "stock": 5}));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    req.send().await.unwrap()
}

fn challenge(res: &Response) -> String {
    res.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn products(app: &TestApp) -> String {
    app.db
        .query_scalar("SELECT count(*) FROM products")
        .unwrap()
}

#[tokio::test]
async fn an_admin_scoped_token_may_call_the_admin_api_and_a_token_without_the_scope_may_not() {
    let app = spawn_with_auth().await;
    let user = format!("Bearer {}", token("alice", Some("openid profile"), 600));
    let res = create_product(&app, Some(&user)).await;
    let www = challenge(&res);
    assert_problem(res, 403, "FORBIDDEN").await;
    assert!(www.contains(r#"error="insufficient_scope""#), "{www}");
    assert_eq!(products(&app), "0", "nothing created on refusal");

    let admin = format!("Bearer {}", token("ops", Some("openid shop:admin"), 600));
    let res = create_product(&app, Some(&admin)).await;
    assert_eq!(res.status().as_u16(), 201);
    // The static token still works alongside.
    let res = create_product(&app, Some(&format!("Bearer {ADMIN_TOKEN}"))).await;
    assert_eq!(res.status().as_u16(), 201);
    assert_eq!(products(&app), "2");
}

#[tokio::test]
async fn a_missing_or_invalid_token_on_an_admin_route_is_401_with_a_bearer_challenge() {
    let app = spawn_with_auth().await;
    let res = create_product(&app, None).await;
    assert_eq!(
        challenge(&res),
        r#"Bearer error="invalid_token""#,
        "the challenge of any unusable credentials"
    );
    assert_problem(res, 401, "UNAUTHORIZED").await;

    let expired = token("ops", Some("shop:admin"), -120);
    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "ops", "iss": ISSUER, "aud": AUDIENCE, "exp": 4_102_444_800_u64, "scope": "shop:admin"}),
        &EncodingKey::from_secret(b"not-the-server-secret-of-32-bytes").unwrap(),
    )
    .unwrap();
    for bad in [expired.as_str(), &wrong_key, "not.a.token", "junk"] {
        let res = create_product(&app, Some(&format!("Bearer {bad}"))).await;
        let www = challenge(&res);
        let body: Value = assert_problem(res, 401, "UNAUTHORIZED").await;
        assert_eq!(www, r#"Bearer error="invalid_token""#, "{bad}");
        assert!(!body.to_string().contains(bad), "the token is not echoed");
    }
    assert_eq!(products(&app), "0");
}

#[tokio::test]
async fn with_authentication_off_a_token_is_just_a_wrong_admin_token() {
    let app = spawn_app().await;
    let admin = format!("Bearer {}", token("ops", Some("shop:admin"), 600));
    let res = create_product(&app, Some(&admin)).await;
    assert_problem(res, 401, "UNAUTHORIZED").await;
    assert_eq!(products(&app), "0");
}

#[tokio::test]
async fn the_openapi_document_declares_the_bearer_scheme_on_admin_routes() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["bearerFormat"],
        "JWT"
    );
    let security = &doc["paths"]["/api/v1/admin/products"]["post"]["security"];
    assert_eq!(
        security,
        &json!([{"admin": []}, {"bearer": ["shop:admin"]}])
    );
}

/// A P-256 key pair made for this test (PKCS #8 DER in base64, and the public point).
const EC_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgERaQ0ERV+hqS10NhlMryJsZXpUl6yV7MCR7STkxXZzehRANCAASwz+XB9KtsMWH8QReGCI2KYCykZ8y/JaKEWRd8XCxEGZVgbC/L87nNPBYRSb+lPHUk2EiTpRrKCAxI4ZMPPF27";
const EC_X: &str = "sM_lwfSrbDFh_EEXhgiNimAspGfMvyWihFkXfFwsRBk";
const EC_Y: &str = "lWBsL8vzuc08FhFJv6U8dSTYSJOlGsoIDEjhkw88Xbs";

#[tokio::test]
async fn with_a_jwks_file_es256_tokens_of_its_keys_are_accepted() {
    use base64::Engine;
    let file = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
    let set = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "k1"}]});
    std::fs::write(&file, set.to_string()).unwrap();
    let path = file.to_string_lossy().into_owned();
    let app = spawn_app_with(|c| {
        c.auth_jwks_file = Some(path);
        c.auth_jwt_issuer = Some(ISSUER.into());
        c.auth_jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let der = base64::engine::general_purpose::STANDARD
        .decode(EC_PRIVATE)
        .unwrap();
    let sign = |kid: &str, algorithm: Algorithm| {
        let now = get_current_timestamp();
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.into());
        let claims = json!({"sub": "ops", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "scope": "shop:admin"});
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_der(&der),
            _ => EncodingKey::from_secret(EC_X.as_bytes()).unwrap(),
        };
        format!("Bearer {}", encode(&header, &claims, &key).unwrap())
    };
    let res = create_product(&app, Some(&sign("k1", Algorithm::ES256))).await;
    assert_eq!(res.status().as_u16(), 201);
    for refused in [sign("k2", Algorithm::ES256), sign("k1", Algorithm::HS256)] {
        let res = create_product(&app, Some(&refused)).await;
        assert_problem(res, 401, "UNAUTHORIZED").await;
    }
    assert_eq!(products(&app), "1");
    let _ = std::fs::remove_file(file);
}

fn es256_admin_token(kid: &str) -> String {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(EC_PRIVATE)
        .unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let claims = json!({"sub": "ops", "iss": ISSUER, "aud": AUDIENCE, "exp": get_current_timestamp() + 600, "scope": "shop:admin"});
    let token = encode(&header, &claims, &EncodingKey::from_ec_der(&der)).unwrap();
    format!("Bearer {token}")
}

#[tokio::test]
async fn with_a_jwks_url_tokens_of_the_fetched_keys_are_accepted() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let idp = MockServer::start().await;
    let set = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "k1"}]});
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(set))
        .mount(&idp)
        .await;
    let url = format!("{}/jwks", idp.uri());
    let app = spawn_app_with(|c| {
        c.auth_jwks_url = Some(url);
        // The mock identity provider speaks http://.
        c.auth_jwks_allow_http = true;
        c.auth_jwt_issuer = Some(ISSUER.into());
        c.auth_jwt_audience = Some(AUDIENCE.into());
        c.auth_required = true;
    })
    .await;
    let res = create_product(&app, Some(&es256_admin_token("k1"))).await;
    assert_eq!(res.status().as_u16(), 201);
    let res = create_product(&app, Some(&es256_admin_token("k2"))).await;
    assert_problem(res, 401, "UNAUTHORIZED").await;
    assert_eq!(products(&app), "1");
    // The fetched keys' state shows in readiness.
    let ready: serde_json::Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(
        ready["components"]["identityKeys"]["status"], "UP",
        "{ready}"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_url_refuses_start_up_only_when_authentication_is_required() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/jwks");
    let db = adapter_postgres::test_support::TestDatabase::create().unwrap();
    let config = |required: bool| bootstrap::Config {
        database_url: db.url().to_owned(),
        bind_addr: "127.0.0.1:0".into(),
        http_workers: 1,
        auth_jwks_url: Some(url.clone()),
        auth_jwks_allow_http: true,
        auth_jwt_issuer: Some(ISSUER.into()),
        auth_jwt_audience: Some(AUDIENCE.into()),
        auth_required: required,
        ..bootstrap::Config::default()
    };
    let err = bootstrap::Application::build(config(true))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("AUTH_JWKS_URL"), "{err:#}");
    // Not required: the server starts and refuses every token until a fetch succeeds.
    let app = bootstrap::Application::build(config(false)).await.unwrap();
    let (port, handle) = (app.port(), app.handle());
    let running = tokio::spawn(app.run_until_stopped());
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/admin/products"))
        .header("authorization", es256_admin_token("k1"))
        .json(&json!({"name": "Mug", "description": "350 ml", "price": 12000, "stock": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // Readiness stays up (requests without a token, and the database, work) and says why.
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        ready["components"]["identityKeys"]["status"], "DOWN",
        "{ready}"
    );
    let detail = ready["components"]["identityKeys"]["detail"]
        .as_str()
        .unwrap();
    assert!(detail.contains("refused"), "{detail}");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

//! What checking a bearer token costs, per algorithm: the full check of a token seen for
//! the first time (signature, claims) and the check of a token the verifier remembers.
//!
//! `cargo run --release -p adapter-identity --example token_check_cost` (figures in
//! docs/benchmarks.md). The keys are the test suites' own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use adapter_identity::Verifier;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;

const EC_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgERaQ0ERV+hqS10NhlMryJsZXpUl6yV7MCR7STkxXZzehRANCAASwz+XB9KtsMWH8QReGCI2KYCykZ8y/JaKEWRd8XCxEGZVgbC/L87nNPBYRSb+lPHUk2EiTpRrKCAxI4ZMPPF27";
const EC_X: &str = "sM_lwfSrbDFh_EEXhgiNimAspGfMvyWihFkXfFwsRBk";
const EC_Y: &str = "lWBsL8vzuc08FhFJv6U8dSTYSJOlGsoIDEjhkw88Xbs";
const RSA_PRIVATE: &[u8] = include_bytes!("../../bootstrap/tests/api/fixtures/rsa-test-key.der");
const RSA_N: &str = "1h0WoF_EmAtTKVYFvOfuVtXqb0u3kDoHMcr-Vg9YtXP2THATXDwsxyWlBmPeyTQjkKGADpLsA21NCVjgp3X1gBqI_0WRkMrZ5555n4gAibEj5BpQ00zcYZ4V13GQZMmYZWp9g5hV7hwH-xnwABTUz2JnOJ_hsgm4_UCjy_ZeSwi3jypb1-pUcwhCKX1qgD-yZxRKr07TpHRsJQOqftCxC6zKZsWwdnXz8aPDHzIFFn4pNlF5ydvisu18XoB_VliOoCQpl5UmYRksdNXGUCtfSkSO2kBdHT5yckjGcQ3j7HDp1WvCv2n-w56e2RyzKV05EtR89HZUMP7vyrnx_ce_hw";
const SECRET: &[u8] = b"a-benchmark-secret-of-32-bytes!!";
const TOKENS: usize = 2_000;

fn main() {
    let ec = EncodingKey::from_ec_der(
        &base64::engine::general_purpose::STANDARD
            .decode(EC_PRIVATE)
            .unwrap(),
    );
    let cases = [
        (
            "HS256",
            Verifier::hs256(SECRET, Some("iss".into()), Some("aud".into())).unwrap(),
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET).unwrap(),
        ),
        (
            "RS256",
            jwks(json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "k"})),
            Algorithm::RS256,
            EncodingKey::from_rsa_der(RSA_PRIVATE),
        ),
        (
            "ES256",
            jwks(json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "k"})),
            Algorithm::ES256,
            ec,
        ),
    ];
    println!("| algorithm | first check of a token (µs) | check of a remembered token (µs) |");
    println!("|---|---|---|");
    for (name, verifier, algorithm, key) in cases {
        let mut header = Header::new(algorithm);
        header.kid = Some("k".into());
        let exp = get_current_timestamp() + 3_600;
        let tokens: Vec<String> = (0..TOKENS)
            .map(|i| {
                let claims =
                    json!({"sub": format!("user-{i}"), "iss": "iss", "aud": "aud", "exp": exp});
                encode(&header, &claims, &key).unwrap()
            })
            .collect();
        let started = Instant::now();
        for token in &tokens {
            verifier.verify(token).unwrap();
        }
        let first = started.elapsed().as_secs_f64() * 1e6 / TOKENS as f64;
        let started = Instant::now();
        for _ in 0..10 {
            for token in &tokens {
                verifier.verify(token).unwrap();
            }
        }
        let remembered = started.elapsed().as_secs_f64() * 1e6 / (10 * TOKENS) as f64;
        println!("| {name} | {first:.1} | {remembered:.2} |");
    }
}

fn jwks(key: serde_json::Value) -> Verifier {
    Verifier::from_jwk_set(
        &json!({ "keys": [key] }).to_string(),
        "iss".into(),
        "aud".into(),
    )
    .unwrap()
}

//! Load generator for `make bench`: a burst of first-come-first-served issues of one
//! hot coupon by distinct users, against a running server.
//!
//! ```sh
//! cargo run --release --example hot_coupon -- http://127.0.0.1:18080 ADMIN_TOKEN [users] [concurrency]
//! ```
//! Prints issues/s and latency percentiles, then the same for as many latecomers
//! against the now sold-out coupon, and checks the outcome (exactly `users` issued,
//! none remaining, every latecomer refused).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use serde_json::{Value, json};

struct Burst {
    statuses: Vec<u16>,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Burst {
    fn report(&self, label: &str) {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let pct = |p: f64| {
            let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted[i].as_secs_f64() * 1_000.0
        };
        let rate = self.statuses.len() as f64 / self.elapsed.as_secs_f64();
        println!(
            "{label}: {n} requests in {s:.2}s = {rate:.0} req/s; latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
            n = self.statuses.len(),
            s = self.elapsed.as_secs_f64(),
            p50 = pct(0.50),
            p99 = pct(0.99),
            max = pct(1.0),
        );
    }

    fn count(&self, status: u16) -> usize {
        self.statuses.iter().filter(|s| **s == status).count()
    }
}

async fn burst(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Value>,
    concurrency: usize,
) -> Burst {
    let started = Instant::now();
    let results: Vec<(u16, Duration)> = stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            let url = url.to_owned();
            async move {
                let t = Instant::now();
                let res = client.post(&url).json(&body).send().await.unwrap();
                let status = res.status().as_u16();
                let _ = res.bytes().await;
                (status, t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Burst {
        elapsed: started.elapsed(),
        statuses: results.iter().map(|r| r.0).collect(),
        latencies: results.iter().map(|r| r.1).collect(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:18080".into());
    let token = args.get(2).cloned().unwrap_or_else(|| "bench-token".into());
    let users: usize = args.get(3).map_or(5_000, |s| s.parse().unwrap());
    let concurrency: usize = args.get(4).map_or(64, |s| s.parse().unwrap());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let client = Arc::new(client);

    // Distinct users, made through the API: the racers, then as many latecomers.
    let all: Vec<i64> = stream::iter(0..users * 2)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}/api/v1/users");
            async move {
                let res = client.post(&url).json(&json!({})).send().await.unwrap();
                res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let (ids, latecomers) = all.split_at(users);

    let now = chrono::Utc::now();
    let coupon: Value = client
        .post(format!("{base}/api/v1/admin/coupons"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "discountType": "FIXED", "discountValue": 1000,
                      "totalQuantity": users, "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let coupon = coupon["id"].as_i64().unwrap();
    let issue_url = format!("{base}/api/v1/coupons/issue");

    let hot = burst(
        &client,
        &issue_url,
        ids.iter()
            .map(|u| json!({"userId": u, "couponId": coupon}))
            .collect(),
        concurrency,
    )
    .await;
    hot.report(&format!(
        "hot coupon issue (quantity {users}, {users} distinct users, concurrency {concurrency})"
    ));
    println!(
        "  201 issued: {}, other: {}",
        hot.count(201),
        hot.statuses.len() - hot.count(201)
    );

    // Latecomers: every request is refused with COUPON_SOLD_OUT.
    let sold_out = burst(
        &client,
        &issue_url,
        latecomers
            .iter()
            .map(|u| json!({"userId": u, "couponId": coupon}))
            .collect(),
        concurrency,
    )
    .await;
    sold_out.report(&format!("sold-out coupon issue ({users} latecomers)"));
    println!("  409 refused: {}", sold_out.count(409));

    let remaining: Value = client
        .get(format!("{base}/api/v1/coupons/{coupon}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "  remainingQuantity after the burst: {}",
        remaining["remainingQuantity"]
    );
    assert_eq!(
        hot.count(201),
        users,
        "every distinct user gets one while quantity lasts"
    );
    assert_eq!(remaining["remainingQuantity"], 0);
    assert_eq!(sold_out.count(409), users, "every latecomer is refused");
    println!(
        "HOT_COUPON_ISSUES_PER_SEC={:.0}",
        users as f64 / hot.elapsed.as_secs_f64()
    );
}

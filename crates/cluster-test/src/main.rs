//! `make cluster-test`: the shop scaled out on this machine, under load and faults.
//!
//! It starts, on ports of their own with their files under `$TMPDIR` (the Makefile points
//! it into the project's `.cluster/`):
//! - a PostgreSQL of its own (the primary; `initdb` with the binaries `scripts/db.sh` uses)
//!   and a streaming replica of it (`pg_basebackup`), both counting statements with
//!   `pg_stat_statements`; the first instance migrates the new database;
//! - PgBouncer in transaction mode in front of the primary;
//! - three `nats-server -js` nodes clustered, the stream created with three replicas;
//! - three `shop-server` instances (`SHOP_SERVER_BIN`): `a` and `b` through PgBouncer with
//!   unnamed statements, `c` straight to the primary, all reading the catalogue from the
//!   replica;
//! - nginx load-balancing them.
//!
//! A mixed load runs through nginx for `CLUSTER_LOAD_SECS` (60) with `CLUSTER_WORKERS` (16)
//! workers, while the run SIGKILLs instance `b` and starts it again, kills the stream's
//! leader node and starts it again, and stops the replica and starts it again. Then it
//! waits until every paid order is delivered and checks the shop's invariants, prints a
//! report, stops everything it started (also on Ctrl-C) and exits non-zero on any
//! violation.

// A command-line report.
#![allow(clippy::print_stdout)]

mod checks;
mod load;
mod processes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adapter_dataplatform::test_support::{NatsCluster, read_new, unique};
use adapter_postgres::test_support::pgbouncer::PgBouncer;
use adapter_postgres::test_support::query_scalar_at as scalar;
use adapter_postgres::test_support::replica::Replica;
use adapter_postgres::test_support::server::Server;
use anyhow::{Context as _, bail};
use diesel::{Connection as _, RunQueryDsl as _};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::checks::Window;
use crate::load::{Load, Shop};
use crate::processes::{Instance, Nginx};

const ADMIN_TOKEN: &str = "cluster-admin-token";
/// After a fault's recovery, how long a 503 still counts as the fault's.
const GRACE: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let outcome = tokio::select! {
        outcome = run() => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(true) => {
            println!("\ncluster test: PASSED");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\ncluster test: FAILED (violations above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("\ncluster test: ERROR: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn setting(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| format!("{name}={v}")),
        _ => Ok(default),
    }
}

/// Both servers count the statements clients send them (`pg_stat_statements`).
const COUNT_STATEMENTS: [&str; 1] = ["shared_preload_libraries=pg_stat_statements"];

/// Statements the server of `url` has run in the database of `url` since its
/// `pg_stat_statements` counters were reset (`BEGIN` and `COMMIT` included).
fn statements(url: &str) -> anyhow::Result<i64> {
    Ok(scalar(
        url,
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )?
    .parse()?)
}

/// [`statements`] of a server that has just been started: retried for up to 30 s while
/// it refuses connections (a replica replays WAL before it takes any).
fn statements_once_up(url: &str) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match statements(url) {
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
            done => return done,
        }
    }
}

/// `id:value` pairs of `sql` (two columns, `id` and `value`) into a map.
fn pairs(url: &str, sql: &str) -> anyhow::Result<Vec<(i64, String)>> {
    let joined = scalar(
        url,
        &format!("SELECT string_agg(id || ':' || value, ',') FROM ({sql}) AS t"),
    )?;
    joined
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (id, value) = pair.split_once(':').context("id:value")?;
            Ok((id.parse()?, value.to_owned()))
        })
        .collect()
}

fn numbers(pairs: Vec<(i64, String)>) -> anyhow::Result<HashMap<i64, i64>> {
    pairs
        .into_iter()
        .map(|(id, v)| Ok((id, v.parse()?)))
        .collect()
}

/// Runs a blocking step (a process start or stop) without holding up the load's tasks.
fn blocking<T>(step: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(step)
}

/// The time since `start`, for the report.
fn at(start: Instant, t: Instant) -> String {
    format!("{:5.1} s", t.saturating_duration_since(start).as_secs_f64())
}

#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
async fn run() -> anyhow::Result<bool> {
    let load_secs = setting("CLUSTER_LOAD_SECS", 60)?;
    let workers = setting("CLUSTER_WORKERS", 16)?;
    anyhow::ensure!(load_secs >= 20, "CLUSTER_LOAD_SECS must be at least 20");
    let bin = PathBuf::from(
        std::env::var("SHOP_SERVER_BIN").unwrap_or_else(|_| "target/release/shop-server".into()),
    );
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: `cargo build --release --bin shop-server`",
        bin.display()
    );
    let dir = std::env::temp_dir().join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let started = Instant::now();

    // ---- the cluster -------------------------------------------------------------------
    println!("== starting: primary database, replica, PgBouncer, 3 NATS nodes, 3 instances, nginx");
    let server = blocking(|| Server::start(&COUNT_STATEMENTS))?;
    let primary = server.url("shop");
    blocking(|| -> anyhow::Result<()> {
        let mut admin = diesel::PgConnection::establish(&server.url("postgres"))?;
        diesel::sql_query("CREATE DATABASE shop").execute(&mut admin)?;
        let mut shop = diesel::PgConnection::establish(&primary)?;
        diesel::sql_query("CREATE EXTENSION pg_stat_statements").execute(&mut shop)?;
        Ok(())
    })?;
    let mut replica = blocking(|| Replica::start(&primary, &COUNT_STATEMENTS))?;
    let replica_url = replica.url(&primary)?;
    let bouncer = blocking(|| PgBouncer::start(&primary, 8))?;
    let mut nats = blocking(|| NatsCluster::start(3))?;
    let stream = unique("CLUSTER");
    let common = |url: &str| -> Vec<(String, String)> {
        [
            ("DATABASE_URL", url),
            ("DATABASE_READ_URL", &replica_url),
            ("DB_POOL_SIZE", "8"),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("DATA_PLATFORM_URL", &nats.seeds()),
            ("DATA_PLATFORM_STREAM", &stream),
            (
                "DATA_PLATFORM_SUBJECT",
                &format!("cluster.{}.paid", stream.to_ascii_lowercase()),
            ),
            ("DATA_PLATFORM_STREAM_REPLICAS", "3"),
            ("BEST_SELLER_REFRESH_SECS", "5"),
            ("PGGSSENCMODE", "disable"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let pooled = |mut env: Vec<(String, String)>| {
        env.push(("DATABASE_DIRECT_URL".into(), primary.clone()));
        env.push(("DB_PREPARED_STATEMENTS".into(), "false".into()));
        env
    };
    let bouncer_url = bouncer.url(&primary)?;
    let mut instances = vec![
        Instance::start("a", &bin, &dir, pooled(common(&bouncer_url)))?,
        Instance::start("b", &bin, &dir, pooled(common(&bouncer_url)))?,
        Instance::start("c", &bin, &dir, common(&primary))?,
    ];
    for instance in &mut instances {
        instance
            .wait_ready(&client, Duration::from_secs(60))
            .await?;
    }
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    let nginx = blocking(|| Nginx::start(&dir.join("nginx"), &ports))?;
    println!(
        "   up in {:.1} s: nginx {} → instances {:?} (a, b through PgBouncer; c direct); data in {}",
        started.elapsed().as_secs_f64(),
        nginx.base(),
        ports,
        dir.display()
    );
    for instance in &instances {
        wait_for_replica(&client, &instance.base()).await?;
    }

    // ---- fixtures ----------------------------------------------------------------------
    let shop = Shop {
        base: nginx.base(),
        client: client.clone(),
        admin_token: ADMIN_TOKEN.to_owned(),
    };
    let coupon_total = 40;
    let (fixtures, initial_stock) = load::fixtures(&shop, 80, 12, 60, coupon_total).await?;
    let users = fixtures.users.clone();
    let coupon = fixtures.coupon;
    let load = Arc::new(Load {
        shop: shop.clone(),
        fixtures,
        ledger: Mutex::default(),
        responses: Mutex::default(),
        violations: Mutex::default(),
        retry_for: Duration::from_secs(45),
        retries: Mutex::default(),
    });

    // ---- load and faults ---------------------------------------------------------------
    // The primary's counters start with the load, so that its top statements are the load's.
    scalar(&primary, "SELECT pg_stat_statements_reset()")?;
    let primary_before = statements(&primary)?;
    let mut replica_served = -statements(&replica_url)?;
    let load_start = Instant::now();
    let until = load_start + Duration::from_secs(load_secs);
    println!("== load: {workers} workers through nginx for {load_secs} s, with faults");
    let tasks: Vec<_> = (0..workers)
        .map(|n| {
            let load = Arc::clone(&load);
            tokio::spawn(async move { load.worker(n + 1, until).await })
        })
        .collect();
    let mut windows: Vec<Window> = Vec::new();
    let step = |fraction: f64| load_start + Duration::from_secs_f64(load_secs as f64 * fraction);

    tokio::time::sleep_until(step(0.13).into()).await;
    let from = Instant::now();
    let victim = instances.get_mut(1).context("instance b")?;
    victim.kill()?;
    println!("   {} SIGKILL instance b", at(load_start, from));
    tokio::time::sleep_until(step(0.27).into()).await;
    blocking(|| victim.resume())?;
    victim.wait_ready(&client, Duration::from_secs(30)).await?;
    let to = Instant::now();
    println!(
        "   {} instance b started again and ready",
        at(load_start, to)
    );
    windows.push(Window {
        what: "instance b killed".into(),
        from,
        to,
    });

    tokio::time::sleep_until(step(0.40).into()).await;
    let leader = stream_leader(&nats.seeds(), &stream).await.unwrap_or(0);
    let node = nats.nodes.get_mut(leader).context("the leader node")?;
    let from = Instant::now();
    blocking(|| node.kill())?;
    println!(
        "   {} killed NATS node n{leader} (the stream's leader)",
        at(load_start, from)
    );
    tokio::time::sleep_until(step(0.57).into()).await;
    blocking(|| node.restart())?;
    let to = Instant::now();
    println!(
        "   {} NATS node n{leader} started again",
        at(load_start, to)
    );
    windows.push(Window {
        what: format!("NATS node n{leader} down"),
        from,
        to,
    });

    tokio::time::sleep_until(step(0.67).into()).await;
    replica_served += statements(&replica_url)?;
    let from = Instant::now();
    blocking(|| replica.stop())?;
    println!("   {} stopped the replica", at(load_start, from));
    tokio::time::sleep_until(step(0.83).into()).await;
    blocking(|| replica.resume())?;
    replica_served -= blocking(|| statements_once_up(&replica_url))?;
    for instance in &instances {
        wait_for_replica(&client, &instance.base()).await?;
    }
    let to = Instant::now();
    println!(
        "   {} replica started again and back in use by every instance",
        at(load_start, to)
    );
    windows.push(Window {
        what: "replica down".into(),
        from,
        to,
    });

    for task in tasks {
        task.await.context("a load worker")?;
    }
    let load_end = Instant::now();
    replica_served += statements(&replica_url)?;
    let primary_served = statements(&primary)? - primary_before;
    println!("   {} load done", at(load_start, load_end));

    // ---- delivery ----------------------------------------------------------------------
    let drained = drain(&shop, Duration::from_secs(120)).await?;
    println!(
        "== outbox drained {:.1} s after the load: {drained}",
        load_end.elapsed().as_secs_f64()
    );
    let reader = nats
        .nodes
        .get(leader.wrapping_add(1) % 3)
        .context("a node")?
        .url();
    let messages = read_stream(&reader, &stream).await?;

    // ---- checks ------------------------------------------------------------------------
    let responses = load
        .responses
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let driver = load
        .violations
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let database_orders: BTreeMap<i64, String> =
        pairs(&primary, "SELECT id, status AS value FROM orders")?
            .into_iter()
            .collect();
    let paid: BTreeSet<i64> = database_orders
        .iter()
        .filter(|(_, s)| *s == "PAID")
        .map(|(id, _)| *id)
        .collect();
    let balances = numbers(pairs(
        &primary,
        "SELECT user_id AS id, balance AS value FROM point_wallets",
    )?)?;
    let history = numbers(pairs(
        &primary,
        "SELECT user_id AS id, sum(CASE kind WHEN 'CHARGE' THEN amount ELSE -amount END) AS value \
         FROM point_history GROUP BY user_id",
    )?)?;
    let stock = numbers(pairs(&primary, "SELECT id, stock AS value FROM products")?)?;
    let issued: i64 = scalar(
        &primary,
        &format!("SELECT count(*) FROM user_coupons WHERE coupon_id = {coupon}"),
    )?
    .parse()?;
    let coupon_now = shop
        .must(
            Method::GET,
            &format!("/api/v1/coupons/{coupon}"),
            None,
            false,
            StatusCode::OK,
        )
        .await?;
    let remaining = load::int(&coupon_now, "remainingQuantity").context("remainingQuantity")?;
    let mut api_balances = HashMap::new();
    for user in &users {
        let body = shop
            .must(
                Method::GET,
                &format!("/api/v1/points?userId={user}"),
                None,
                false,
                StatusCode::OK,
            )
            .await?;
        api_balances.insert(*user, load::int(&body, "balance").context("balance")?);
    }

    let ledger = load
        .ledger
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;

    let mut history_problems = Vec::new();
    for (user, balance) in &balances {
        let from_history = history.get(user).copied().unwrap_or(0);
        if from_history != *balance {
            history_problems.push(format!(
                "user {user}: balance {balance}, history sums to {from_history}"
            ));
        }
    }
    let results: Vec<(&str, Vec<String>)> = vec![
        (
            "every paid order is on the stream exactly once (by Nats-Msg-Id)",
            {
                let mut p = checks::stream_exactly_once(&messages, &paid);
                if drained.starts_with("NOT") {
                    p.push(drained.clone());
                }
                p
            },
        ),
        (
            "orders in the database are what the clients were answered",
            checks::orders_match(&ledger, &database_orders),
        ),
        (
            "balances = charges − payments (database)",
            checks::balances(&ledger, &users, &balances),
        ),
        (
            "balances = charges − payments (API through nginx)",
            checks::balances(&ledger, &users, &api_balances),
        ),
        ("balances = their point history", history_problems),
        (
            "stock = initial − ordered (cancelled returned), never negative",
            checks::stock(&ledger, &initial_stock, &stock),
        ),
        (
            "coupon: issued = answered 201 ≤ total, remaining = total − issued",
            checks::coupons(&ledger, coupon_total as i64, issued, remaining),
        ),
        (
            "no catalogue read failed; no 5xx but 503 inside a fault window",
            checks::statuses(&responses, &windows, GRACE),
        ),
        (
            "every keyed request got a definite, expected answer",
            driver,
        ),
    ];

    // ---- report ------------------------------------------------------------------------
    let mut by_op: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    for r in &responses {
        *by_op.entry(r.op).or_default().entry(r.status).or_default() += 1;
    }
    println!(
        "== responses through nginx ({} in {:.0} s)",
        responses.len(),
        (load_end - load_start).as_secs_f64()
    );
    for (op, statuses) in &by_op {
        let line: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        println!("   {op:<14} {}", line.join("  "));
    }
    println!("== fault windows");
    for w in &windows {
        println!(
            "   {} → {}  {}",
            at(load_start, w.from),
            at(load_start, w.to),
            w.what
        );
    }
    let paid_by_client = ledger
        .orders
        .values()
        .filter(|o| o.status == "PAID")
        .count();
    println!(
        "== outcome: {} orders ({} paid, {} on the stream), {} of {coupon_total} coupons issued ({} refused sold out)",
        ledger.orders.len(),
        paid_by_client,
        messages.len(),
        ledger.issued.len(),
        ledger.sold_out
    );
    let total = primary_served + replica_served;
    println!(
        "== statements during the load (pg_stat_statements): primary {primary_served}, replica {replica_served} ({:.0}% of all on the replica)",
        if total > 0 {
            100.0 * replica_served as f64 / total as f64
        } else {
            0.0
        }
    );
    let retries = load
        .retries
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    println!(
        "== requests sent again (outcome open: 503 or a broken connection): {}, of which \
         answered IDEMPOTENCY_KEY_IN_USE {} times; the longest took {:.1} s to a definite answer",
        retries.requests,
        retries.key_in_use,
        retries.longest.as_secs_f64()
    );
    println!(
        "== delivery: {}",
        scalar(
            &primary,
            "SELECT format('%s events; claimed more than once (a failed publish or a lapsed lease): %s, \
             at most %s times; paid to delivered p50 %s ms, p99 %s ms, max %s ms', count(*), \
             count(*) FILTER (WHERE attempts > 1), max(attempts), \
             round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)), \
             round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d)), round(max(d))) \
             FROM (SELECT attempts, extract(epoch FROM delivered_at - created_at) * 1000 AS d \
                   FROM outbox_events) AS e",
        )?
    );
    println!("== the primary's most frequent statements during the load");
    for line in scalar(
        &primary,
        "SELECT string_agg(format('%8s  %s', calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)), E'\\n' ORDER BY calls DESC) \
         FROM (SELECT calls, query FROM pg_stat_statements \
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               ORDER BY calls DESC LIMIT 12) AS top",
    )?
    .lines()
    {
        println!("   {line}");
    }
    println!("== checks");
    let mut ok = true;
    for (what, problems) in &results {
        if problems.is_empty() {
            println!("   ok    {what}");
        } else {
            ok = false;
            println!("   FAIL  {what}");
            for p in problems.iter().take(10) {
                println!("           {p}");
            }
            if problems.len() > 10 {
                println!("           … and {} more", problems.len() - 10);
            }
        }
    }
    drop(ledger);

    // ---- stop everything ---------------------------------------------------------------
    println!("== stopping (logs: {})", dir.display());
    drop(nginx);
    drop(instances);
    drop(nats);
    drop(bouncer);
    blocking(|| drop(replica));
    blocking(|| drop(server));
    if ok {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("   total {:.0} s", started.elapsed().as_secs_f64());
    Ok(ok)
}

/// Waits until an instance reads the catalogue from the replica (its readiness shows the
/// replica UP), for at most 30 s.
async fn wait_for_replica(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready: Value = match client.get(format!("{base}/health/ready")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if ready.pointer("/components/readReplica/status") == Some(&Value::from("UP")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{base} did not take the replica in use within 30 s: {ready}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The index of the node leading `stream` (server names are `n0`, `n1`, `n2`).
async fn stream_leader(seeds: &str, stream: &str) -> anyhow::Result<usize> {
    let urls: Vec<&str> = seeds.split(',').collect();
    let client = async_nats::connect(urls).await?;
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(stream)
        .await?;
    let info = stream.info().await?;
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .context("the stream has no leader")?;
    Ok(leader.trim_start_matches('n').parse()?)
}

/// Waits until the outbox has nothing pending (every paid order delivered), for at most
/// `within`; describes what it saw.
async fn drain(shop: &Shop, within: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let counts = shop
            .must(
                Method::GET,
                "/api/v1/admin/outbox",
                None,
                true,
                StatusCode::OK,
            )
            .await?;
        if load::int(&counts, "pending") == Some(0) && load::int(&counts, "failed") == Some(0) {
            return Ok(format!("{counts}"));
        }
        if Instant::now() > deadline {
            return Ok(format!("NOT drained within {within:?}: {counts}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Everything on the stream, read through `url` (retried while the cluster settles).
async fn read_stream(
    url: &str,
    stream: &str,
) -> anyhow::Result<Vec<adapter_dataplatform::test_support::StreamMessage>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match read_new(url, stream, "cluster-test-checker").await {
            Ok(messages) => return Ok(messages),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context("reading the stream")),
        }
    }
}

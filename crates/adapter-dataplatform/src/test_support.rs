//! Test helpers (feature `test-support`): the NATS server the tests share, servers of a
//! test's own that it stops and restarts, unique stream names, and a durable consumer that
//! reads what a stream holds.
//!
//! Tests get the shared server's URL from `NATS_URL` (`make test` starts one with
//! `scripts/nats.sh up` and sets it); without it they fail, naming the fix. A server of a
//! test's own runs the `nats-server` binary at `NATS_SERVER_BIN` (`make test` sets it), or
//! the one on `PATH`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;

/// The shared NATS server of the tests (`NATS_URL`).
///
/// # Errors
/// When `NATS_URL` is not set: the message says how to get one.
pub fn nats_url() -> anyhow::Result<String> {
    match std::env::var("NATS_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => bail!(
            "NATS_URL is not set: the JetStream tests need a NATS server with JetStream. \
             `make test` starts one; by hand: `scripts/nats.sh up` and \
             `NATS_URL=$(scripts/nats.sh url) cargo nextest run ...`"
        ),
    }
}

/// A name no other test (or earlier run) uses: `PREFIX_<pid>_<nanos>_<n>`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One message read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMessage {
    /// Its `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    pub payload: String,
}

/// Reads everything `stream` holds that the durable consumer `durable` has not
/// acknowledged yet, acknowledging each message (a consumer's usual loop). A second call
/// with the same `durable` returns only what arrived since.
///
/// # Errors
/// When NATS fails or a message is not UTF-8.
pub async fn read_new(
    url: &str,
    stream: &str,
    durable: &str,
) -> anyhow::Result<Vec<StreamMessage>> {
    let client = async_nats::connect(url)
        .await
        .context("connecting to NATS")?;
    let jetstream = jetstream::new(client);
    let stream = jetstream.get_stream(stream).await.context("the stream")?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            durable,
            consumer::pull::Config {
                durable_name: Some(durable.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..consumer::pull::Config::default()
            },
        )
        .await
        .context("the durable consumer")?;
    let mut read = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1_000)
            .messages()
            .await
            .context("fetching")?;
        let before = read.len();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("reading a message: {e}"))?;
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned());
            let payload = String::from_utf8(message.payload.to_vec()).context("payload")?;
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
            read.push(StreamMessage { msg_id, payload });
        }
        if read.len() == before {
            return Ok(read);
        }
    }
}

/// Deletes `stream`, as a test does when done with the shared server: each stream the
/// adapter creates reserves its maximum size (1 GiB) of the server's JetStream storage.
///
/// # Errors
/// When NATS fails or the stream does not exist.
pub async fn delete_stream(url: &str, stream: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(url)
        .await
        .context("connecting to NATS")?;
    jetstream::new(client)
        .delete_stream(stream)
        .await
        .with_context(|| format!("deleting the stream {stream}"))?;
    Ok(())
}

/// How many messages `stream` holds.
///
/// # Errors
/// When NATS fails.
pub async fn stream_messages(url: &str, stream: &str) -> anyhow::Result<u64> {
    let client = async_nats::connect(url)
        .await
        .context("connecting to NATS")?;
    let mut stream = jetstream::new(client)
        .get_stream(stream)
        .await
        .context("the stream")?;
    Ok(stream.info().await.context("stream info")?.state.messages)
}

/// A `nats-server -js` of a test's own, on a free port with its own store directory, so
/// the test may stop and restart it. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    args: Vec<String>,
}

impl NatsServer {
    /// Starts one (with extra command-line `args`, e.g. `--auth <token>`) and waits until
    /// it accepts connections.
    ///
    /// # Errors
    /// When no `nats-server` binary is found or it does not start within 10 s.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = std::env::temp_dir().join(unique("shop-nats-store"));
        std::fs::create_dir_all(&store)?;
        let mut server = Self {
            child: None,
            port,
            store,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.restart()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would: no clean shutdown); its store stays.
    ///
    /// # Errors
    /// When killing fails.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again on the same port and store (a no-op while it runs).
    ///
    /// # Errors
    /// When it does not start within 10 s.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let bin = std::env::var("NATS_SERVER_BIN")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "nats-server".to_owned());
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("running {bin} (set NATS_SERVER_BIN, or install it: `scripts/nats.sh bin`)")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("{bin} did not listen on port {} within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// `size` [`NatsServer`]s clustered (JetStream on each, server names `n0`, `n1`, …), each
/// routing to all the others; dropped, each is killed.
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the nodes and waits until each accepts clients (a new cluster elects its
    /// meta leader a moment later: the first publishes may be refused until it has).
    ///
    /// # Errors
    /// When a node does not start.
    pub fn start(size: usize) -> anyhow::Result<Self> {
        let cluster_ports: Vec<u16> = (0..size)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
            })
            .collect::<Result<_, _>>()?;
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_name = unique("shop-cluster");
        let nodes = cluster_ports
            .iter()
            .enumerate()
            .map(|(n, port)| {
                NatsServer::start(&[
                    "--server_name",
                    &format!("n{n}"),
                    "--cluster_name",
                    &cluster_name,
                    "--cluster",
                    &format!("nats://127.0.0.1:{port}"),
                    "--routes",
                    &routes,
                ])
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { nodes })
    }

    /// The nodes' client URLs, comma-separated: a `DATA_PLATFORM_URL` of seeds.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

//! A streaming replica of the test PostgreSQL: `pg_basebackup -R` of the whole cluster into
//! a directory of its own, served by the same PostgreSQL binaries on a free port. Stopped
//! (by process id, SIGINT: a fast shutdown) and removed when dropped. As root it runs as
//! the `postgres` user, as `scripts/db.sh` runs the primary.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A running (or stopped) replica.
#[derive(Debug)]
pub struct Replica {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
    /// The replication slot on the primary, dropped with the replica.
    slot: String,
    primary_url: String,
}

/// The PostgreSQL binaries' directory: `pg_ctl`'s on `PATH`, else the newest of
/// `/usr/lib/postgresql/*/bin`, as `scripts/db.sh` finds them.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql")?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("pg_basebackup").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .context("no PostgreSQL binaries under /usr/lib/postgresql")
}

impl Replica {
    /// Copies the cluster of `database_url` (its host and port; the role must be allowed
    /// replication connections, as the test cluster's `postgres` is) and starts a hot
    /// standby streaming from it; waits until it answers.
    ///
    /// # Errors
    /// When the copy or the start fails.
    pub fn start(database_url: &str) -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let (_, rest) = database_url.split_once("://").context("a URL")?;
        let (_, host_and_path) = rest.rsplit_once('@').unwrap_or(("", rest));
        let (host_port, _) = host_and_path
            .split_once('/')
            .context("a URL with a database")?;
        let (host, primary_port) = host_port.split_once(':').unwrap_or((host_port, "5432"));
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
        let dir = std::env::temp_dir().join(format!(
            "shop-replica-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        if root {
            Command::new("chown").arg("postgres").arg(&dir).status()?;
        }
        let bin = bin_dir()?;
        let slot = format!(
            "shop_replica_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let copied = Self::as_postgres(root, &bin.join("pg_basebackup"))
            .args([
                "-h",
                host,
                "-p",
                primary_port,
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
            ])
            // A spread checkpoint on the primary would hold the copy for minutes.
            .arg("--checkpoint=fast")
            // A slot of its own keeps the primary's WAL until the replica has it, so a
            // replica stopped while other tests write catches up when it starts again.
            .args(["-C", "-S", &slot])
            .arg("-D")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running pg_basebackup")?;
        anyhow::ensure!(copied.success(), "pg_basebackup failed: {copied}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut replica = Self {
            child: None,
            port,
            dir,
            bin,
            root,
            slot,
            primary_url: database_url.to_owned(),
        };
        replica.resume()?;
        Ok(replica)
    }

    /// A command that runs `program` as `postgres` when this process is root.
    fn as_postgres(root: bool, program: &std::path::Path) -> Command {
        if root {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid",
                    "postgres",
                    "--regid",
                    "postgres",
                    "--init-groups",
                ])
                .arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts it again (a no-op while it runs) and waits until it answers.
    ///
    /// # Errors
    /// When it does not listen within 30 s.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let data = self.dir.join("data");
        let child = Self::as_postgres(self.root, &self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", data.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the replica")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the replica did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops it (a fast shutdown) and waits until it has.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()?;
            child.wait()?;
        }
        Ok(())
    }

    /// `database_url` with the replica's address in place of the primary's.
    ///
    /// # Errors
    /// When `database_url` is not a URL with a database.
    pub fn url(&self, database_url: &str) -> anyhow::Result<String> {
        let (scheme, rest) = database_url.split_once("://").context("a URL")?;
        let (user, host_and_path) = match rest.rsplit_once('@') {
            Some((user, after)) => (format!("{user}@"), after),
            None => (String::new(), rest),
        };
        let (_, path) = host_and_path
            .split_once('/')
            .context("a URL with a database")?;
        Ok(format!("{scheme}://{user}127.0.0.1:{}/{path}", self.port))
    }
}

impl Drop for Replica {
    /// Stops it, drops its slot (else the primary would keep WAL for it forever) and
    /// removes its files.
    fn drop(&mut self) {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let _ = self.stop();
        if let Ok(mut primary) = diesel::PgConnection::establish(&self.primary_url) {
            let _ =
                primary.batch_execute(&format!("SELECT pg_drop_replication_slot('{}')", self.slot));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

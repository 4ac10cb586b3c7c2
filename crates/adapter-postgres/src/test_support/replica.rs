//! A streaming replica of the test PostgreSQL: `pg_basebackup -R` of the whole cluster into
//! a directory of its own, served by the same PostgreSQL binaries on a free port. Stopped
//! (by process id, SIGINT: a fast shutdown) and removed when dropped. As root it runs as
//! the `postgres` user, as `scripts/db.sh` runs the primary.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
        let primary = super::host_port(database_url)?;
        let (host, primary_port) = primary.split_once(':').unwrap_or((primary, "5432"));
        let root = super::running_as_root();
        let dir = super::unique_dir("shop-replica")?;
        if root {
            Command::new("chown").arg("postgres").arg(&dir).status()?;
        }
        let bin = bin_dir()?;
        // Unique as the directory is: `shop_replica_<pid>_<n>`.
        let slot = dir
            .file_name()
            .and_then(|name| name.to_str())
            .context("the replica's directory name")?
            .replace('-', "_");
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
        let port = super::free_port()?;
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
        super::wait_for_port(self.port, Duration::from_secs(30), "the replica")
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
        super::at_address(database_url, &format!("127.0.0.1:{}", self.port))
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

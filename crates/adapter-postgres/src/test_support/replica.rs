//! A streaming replica of a PostgreSQL (the test one, or a [`super::server::Server`]):
//! `pg_basebackup -R` of the whole cluster into a directory of its own, served by a
//! [`Postmaster`] on a free port. Stopped (by process id, SIGINT: a fast shutdown) and
//! removed when dropped. As root it runs as the `postgres` user, as `scripts/db.sh` runs
//! the primary.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::server::{Postmaster, as_postgres};

/// A running (or stopped) replica.
#[derive(Debug)]
pub struct Replica {
    postmaster: Postmaster,
    dir: PathBuf,
    /// The replication slot on the primary, dropped with the replica.
    slot: String,
    primary_url: String,
}

impl Replica {
    /// Copies the cluster of `database_url` (its host and port; the role must be allowed
    /// replication connections, as the test cluster's `postgres` is) and starts a hot
    /// standby streaming from it with the `-c` `settings` given; waits until it takes
    /// connections.
    ///
    /// # Errors
    /// When the copy or the start fails.
    pub fn start(database_url: &str, settings: &[&str]) -> anyhow::Result<Self> {
        let primary = super::host_port(database_url)?;
        let (host, primary_port) = primary.split_once(':').unwrap_or((primary, "5432"));
        let root = super::running_as_root();
        let dir = super::unique_dir("shop-replica")?;
        if root {
            Command::new("chown").arg("postgres").arg(&dir).status()?;
        }
        let data = dir.join("data");
        let mut postmaster = Postmaster::new(data.clone(), settings)?;
        // Unique as the directory is: `shop_replica_<pid>_<n>`.
        let slot = dir
            .file_name()
            .and_then(|name| name.to_str())
            .context("the replica's directory name")?
            .replace('-', "_");
        let copied = as_postgres(root, &postmaster.bin.join("pg_basebackup"))
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
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running pg_basebackup")?;
        anyhow::ensure!(copied.success(), "pg_basebackup failed: {copied}");
        postmaster.resume()?;
        Ok(Self {
            postmaster,
            dir,
            slot,
            primary_url: database_url.to_owned(),
        })
    }

    /// Starts it again (a no-op while it runs) and waits until it takes connections.
    ///
    /// # Errors
    /// When it does not within 30 s.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.postmaster.resume()
    }

    /// Stops it (a fast shutdown) and waits until it has.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.postmaster.stop()
    }

    /// `database_url` with the replica's address in place of the primary's.
    ///
    /// # Errors
    /// When `database_url` is not a URL with a database.
    pub fn url(&self, database_url: &str) -> anyhow::Result<String> {
        super::at_address(database_url, &format!("127.0.0.1:{}", self.postmaster.port))
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

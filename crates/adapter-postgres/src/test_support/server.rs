//! PostgreSQL servers of a test's own, run by the PostgreSQL binaries `scripts/db.sh` uses:
//! [`Server`], a new cluster (`initdb`), and the [`Postmaster`] that runs it or a replica's
//! copy on a free port, stopped by process id. As root they run as the `postgres` user,
//! as `scripts/db.sh` runs the project's server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use diesel::Connection as _;

/// The PostgreSQL binaries' directory: the newest of `/usr/lib/postgresql/*/bin`.
pub(crate) fn bin_dir() -> anyhow::Result<PathBuf> {
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

/// A command that runs `program` as `postgres` when this process is root.
pub(crate) fn as_postgres(root: bool, program: &Path) -> Command {
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

/// A `postgres` process serving one data directory on a port of its own, which may be
/// stopped and started again; stopped when dropped.
#[derive(Debug)]
pub struct Postmaster {
    child: Option<Child>,
    pub(crate) port: u16,
    data: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) root: bool,
    settings: Vec<String>,
}

impl Postmaster {
    /// Serves `data` (owned by `postgres` as root) with the `-c` `settings` given.
    pub(crate) fn new(data: PathBuf, settings: &[&str]) -> anyhow::Result<Self> {
        Ok(Self {
            child: None,
            port: super::free_port()?,
            data,
            bin: bin_dir()?,
            root: super::running_as_root(),
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Starts it (a no-op while it runs) and waits until it takes connections (a replica
    /// once it has replayed to a consistent state).
    ///
    /// # Errors
    /// When it does not take connections within 30 s.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut command = as_postgres(self.root, &self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.data.display()));
        for setting in &self.settings {
            command.arg("-c").arg(setting);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        let within = Duration::from_secs(30);
        let deadline = std::time::Instant::now() + within;
        super::wait_for_port(self.port, within, "postgres")?;
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        while let Err(e) = diesel::PgConnection::establish(&url) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "postgres on port {} took no connection within {within:?}: {e}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops it (a fast shutdown: SIGINT) and waits until it has.
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
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A PostgreSQL cluster of its own (`initdb` into a new directory, trust authentication,
/// replication connections allowed from loopback), removed when dropped.
#[derive(Debug)]
pub struct Server {
    pub postmaster: Postmaster,
    dir: PathBuf,
}

impl Server {
    /// Initialises and starts one with the `-c` `settings` given (e.g.
    /// `shared_preload_libraries=pg_stat_statements`).
    ///
    /// # Errors
    /// When `initdb` or the start fails.
    pub fn start(settings: &[&str]) -> anyhow::Result<Self> {
        let dir = super::unique_dir("shop-postgres")?;
        let root = super::running_as_root();
        if root {
            Command::new("chown").arg("postgres").arg(&dir).status()?;
        }
        let data = dir.join("data");
        let postmaster = Postmaster::new(data.clone(), settings)?;
        let created = as_postgres(root, &postmaster.bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running initdb")?;
        anyhow::ensure!(created.success(), "initdb failed: {created}");
        let mut server = Self { postmaster, dir };
        server.postmaster.resume()?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.postmaster.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.postmaster.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

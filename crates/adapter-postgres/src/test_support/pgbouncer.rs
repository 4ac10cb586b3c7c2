//! A PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the test PostgreSQL,
//! on a free port with its configuration in a directory of its own; killed by process id
//! when dropped. As root it runs as the `postgres` user (PgBouncer refuses root).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts one in front of the server of `database_url` (its host and port), pooling
    /// each client's transactions over at most `server_pool` server connections per
    /// database and user, and waits until it accepts connections.
    ///
    /// # Errors
    /// When the URL names no host and port, `pgbouncer` is missing (`scripts/pgbouncer.sh
    /// bin` installs it), or it does not listen within 10 s.
    pub fn start(database_url: &str, server_pool: u32) -> anyhow::Result<Self> {
        let server = super::host_port(database_url)?;
        let (host, db_port) = server.split_once(':').unwrap_or((server, "5432"));
        let port = super::free_port()?;
        let dir = super::unique_dir("shop-pgbouncer")?;
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={db_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 unix_socket_dir =\nlogfile = {log}\nmax_client_conn = 500\n\
                 default_pool_size = {server_pool}\n",
                users = dir.join("userlist.txt").display(),
                log = dir.join("pgbouncer.log").display(),
            ),
        )?;
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n")?;
        let root = super::running_as_root();
        if root {
            // The `postgres` user writes the log into the directory.
            Command::new("chmod").arg("777").arg(&dir).status()?;
        }
        let mut command = Command::new("pgbouncer");
        if root {
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "running pgbouncer (Debian's package; `scripts/pgbouncer.sh bin` installs it)",
            )?;
        // Dropped (and so killed) on the error path too.
        let bouncer = Self { child, port, dir };
        super::wait_for_port(port, Duration::from_secs(10), "pgbouncer")?;
        Ok(bouncer)
    }

    /// `database_url` with PgBouncer's address in place of the server's.
    ///
    /// # Errors
    /// When `database_url` is not a `postgres://` URL with a database.
    pub fn url(&self, database_url: &str) -> anyhow::Result<String> {
        super::at_address(database_url, &format!("127.0.0.1:{}", self.port))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the test PostgreSQL,
//! on a free port with its configuration in a directory of its own; killed by process id
//! when dropped. As root it runs as the `postgres` user (PgBouncer refuses root).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
        let (_, rest) = database_url.split_once("://").context("a URL")?;
        let (_, host_and_path) = rest.rsplit_once('@').unwrap_or(("", rest));
        let (host_port, _) = host_and_path
            .split_once('/')
            .context("a URL with a database")?;
        let (host, db_port) = host_port.split_once(':').unwrap_or((host_port, "5432"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shop-pgbouncer-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
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
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
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
        let bouncer = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "pgbouncer did not listen on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bouncer)
    }

    /// `database_url` with PgBouncer's address in place of the server's.
    ///
    /// # Errors
    /// When `database_url` is not a `postgres://` URL with a database.
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

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

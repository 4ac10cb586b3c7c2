//! The processes this test starts beside the helpers of `adapter-postgres` and
//! `adapter-dataplatform` (the replica, PgBouncer, the NATS nodes): the server instances and
//! nginx. Each is stopped by process id when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adapter_postgres::test_support::{free_port, wait_for_port};
use anyhow::{Context as _, bail};

/// Sends `signal` (`TERM`, `INT`, …) to `pid` with `kill(1)` (the workspace forbids the
/// unsafe a direct `kill(2)` would need).
fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

/// Waits for `child` to exit for at most `within`; kills it after that.
fn reap(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One `shop-server` process, which the test may SIGKILL and start again on the same port
/// with the same settings (as a supervisor would).
#[derive(Debug)]
pub struct Instance {
    pub name: &'static str,
    pub port: u16,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    /// Starts `bin` with `env` only (plus `PATH` and `HOME`: nothing of the caller's
    /// environment leaks in), on a free port, its output appended to `<dir>/<name>.log`.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn start(
        name: &'static str,
        bin: &Path,
        dir: &Path,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let mut instance = Self {
            name,
            port: free_port()?,
            bin: bin.to_owned(),
            env,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        instance.resume()?;
        Ok(instance)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it again (a no-op while it runs).
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = Command::new(&self.bin);
        command.env_clear();
        for keep in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(keep) {
                command.env(keep, value);
            }
        }
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `/health/ready` answers 200, for at most `within`.
    ///
    /// # Errors
    /// When it does not, or the process exited.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let url = format!("{}/health/ready", self.base());
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "instance {} exited ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "instance {} was not ready within {within:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, in-flight requests and claimed outbox events abandoned.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if signal(child.id(), "TERM").is_ok() {
                reap(&mut child, Duration::from_secs(10));
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's nginx load-balancing the instances round-robin, with its configuration, pid
/// file, log and temporary files in a directory of its own.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Nginx {
    /// The configuration: round-robin over `upstreams` with keep-alive connections. A
    /// request whose instance cannot be reached goes to the next one (any method: nothing
    /// was sent); one whose instance died after it was sent is retried elsewhere only when
    /// idempotent (GET), else answered 503 `SERVICE_UNAVAILABLE` with `Retry-After`, in the
    /// server's own problem+json shape, so that a client retries it with the same
    /// `Idempotency-Key` (nginx would say 502, which the API never answers).
    pub fn config(dir: &Path, port: u16, upstreams: &[u16]) -> String {
        let servers: String = upstreams
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let dir = dir.display();
        format!(
            r#"worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream shop {{
{servers}    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64k;
    location / {{
      proxy_pass http://shop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_connect_timeout 1s;
      proxy_read_timeout 30s;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      error_page 502 504 = @unavailable;
    }}
    location @unavailable {{
      default_type application/problem+json;
      add_header Retry-After 1 always;
      return 503 '{{"type":"urn:shop:problem:SERVICE_UNAVAILABLE","title":"Service Unavailable","status":503,"code":"SERVICE_UNAVAILABLE","detail":"the instance serving the request went away; retry it (with the same Idempotency-Key)"}}';
    }}
  }}
}}
"#
        )
    }

    /// Writes the configuration into `dir` and starts `nginx` in the foreground (as root
    /// its workers run as `nobody`, so `dir` is opened to them).
    ///
    /// # Errors
    /// When nginx is missing (`scripts/nginx.sh bin` installs it) or does not listen
    /// within 10 s.
    pub fn start(dir: &Path, upstreams: &[u16]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Command::new("chmod").arg("777").arg(dir).status()?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, Self::config(dir, port, upstreams))?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running nginx (Debian's package; `scripts/nginx.sh bin` installs it)")?;
        let nginx = Self { child, port };
        wait_for_port(port, Duration::from_secs(10), "nginx")
            .with_context(|| format!("see {}", dir.join("error.log").display()))?;
        Ok(nginx)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers (a SIGKILL would orphan them).
    fn drop(&mut self) {
        if signal(self.child.id(), "TERM").is_ok() {
            reap(&mut self.child, Duration::from_secs(10));
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

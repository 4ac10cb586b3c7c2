//! The outbox listener opens its connection through libpq, as the pool does, so one
//! `DATABASE_URL` with libpq's environment variables and files means the same on both:
//! they connect together or refuse together. TLS cases run against a real PostgreSQL
//! behind a [`TlsFront`], which terminates TLS with a certificate of a test CA and passes
//! the bytes on (the test cluster itself runs without TLS); password cases use a role of
//! `shop_password_login`, which `scripts/db.sh` makes give its password.
//!
//! libpq reads its variables and `~/.pgpass` from the process environment, which a test
//! may not change (`set_var` is unsafe), so each case runs [`probe`] in a child process of
//! this test binary with the environment under test, and reads back what it found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapter_postgres::PgOutboxListener;
use adapter_postgres::test_support::TestDatabase;
use adapter_postgres::test_support::tls::{TestPki, TlsFront};
use diesel::{Connection, PgConnection};

const PROBE_URL: &str = "SHOP_PROBE_URL";
const PROBE_OUT: &str = "SHOP_PROBE_OUT";
/// A connection that works is made in milliseconds; one that must not gets this long.
const GIVE: Duration = Duration::from_secs(3);

/// Which of the two kinds of connection got through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Connects {
    pool: bool,
    listener: bool,
}

const BOTH: Connects = Connects {
    pool: true,
    listener: true,
};
const NEITHER: Connects = Connects {
    pool: false,
    listener: false,
};

/// Tries a pool connection and the listener on `url` in this process. The pool's
/// connection is made as the pool makes each (diesel's `ConnectionManager` calls
/// `PgConnection::establish`), on this thread, so that no pool thread is still inside
/// libpq when the process exits; the listener is stopped before this returns, for the
/// same reason.
fn connects(url: &str) -> Connects {
    let listener = PgOutboxListener::start(url).unwrap();
    let started = Instant::now();
    let pool = PgConnection::establish(url).is_ok();
    while !listener.is_listening() && started.elapsed() < GIVE {
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = Connects {
        pool,
        listener: listener.is_listening(),
    };
    assert!(listener.stop(Duration::from_secs(30)), "the listener stops");
    found
}

/// In a child process (see [`connects_in_child`]): probes its `SHOP_PROBE_URL` and writes
/// the answer to `SHOP_PROBE_OUT`. Run directly, it probes a test database: both connect.
#[test]
fn probe() {
    let Ok(url) = std::env::var(PROBE_URL) else {
        let db = TestDatabase::create().unwrap();
        assert_eq!(connects(db.url()), BOTH);
        return;
    };
    let found = connects(&url);
    let out = std::env::var(PROBE_OUT).unwrap();
    std::fs::write(out, format!("{} {}", found.pool, found.listener)).unwrap();
}

/// A directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shop-libpq-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn display(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs [`probe`] on `url` in a child process whose environment has only `env` of libpq's
/// (the `PG*` variables this process has are removed, and `HOME` is an empty directory
/// unless `env` names one).
async fn connects_in_child(url: &str, env: &[(&str, String)]) -> Connects {
    let home = TempDir::new("home");
    let out = home.path().join("probe.out");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "probe", "--test-threads=1", "--quiet"])
        .env(PROBE_URL, url)
        .env(PROBE_OUT, &out)
        .env("HOME", home.path())
        .stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("PG") && name != "PGGSSENCMODE" {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    // The TLS front runs on this runtime: wait for the child off its threads.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "the probe failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let found = std::fs::read_to_string(&out).unwrap();
    let (pool, listener) = found.split_once(' ').unwrap();
    Connects {
        pool: pool.parse().unwrap(),
        listener: listener.parse().unwrap(),
    }
}

/// `url` with `user:password@` (as written) in place of its user.
fn with_user(url: &str, userinfo: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host_and_path) = rest.split_once('@').unwrap();
    format!("{scheme}://{userinfo}@{host_and_path}")
}

/// A login role of `shop_password_login` with `password`, dropped on drop.
struct PasswordRole<'a> {
    db: &'a TestDatabase,
    name: String,
}

impl<'a> PasswordRole<'a> {
    fn create(db: &'a TestDatabase, password: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "shop_pw_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        db.execute(
            "DO $$ BEGIN CREATE ROLE shop_password_login NOLOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .unwrap();
        db.execute(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD '{}' IN ROLE shop_password_login",
            password.replace('\'', "''")
        ))
        .unwrap();
        Self { db, name }
    }
}

impl Drop for PasswordRole<'_> {
    fn drop(&mut self) {
        let _ = self
            .db
            .execute(&format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_a_raw_question_mark_and_encoded_at_and_percent_gets_through() {
    let db = TestDatabase::create().unwrap();
    let role = PasswordRole::create(&db, "pa?ss@wo%rd");
    let name = &role.name;

    let wrong = with_user(db.url(), &format!("{name}:pa?ss%40wo%25rX"));
    assert_eq!(
        connects_in_child(&wrong, &[]).await,
        NEITHER,
        "the role must give its password (scripts/db.sh's pg_hba.conf line)"
    );
    let right = with_user(db.url(), &format!("{name}:pa?ss%40wo%25rd"));
    assert_eq!(connects_in_child(&right, &[]).await, BOTH);
}

#[tokio::test(flavor = "multi_thread")]
async fn pgpass_and_the_pg_variables_fill_in_what_the_url_leaves_out() {
    let db = TestDatabase::create().unwrap();
    let role = PasswordRole::create(&db, "from:the?file");
    let name = role.name.clone();
    let url = with_user(db.url(), &name);

    assert_eq!(connects_in_child(&url, &[]).await, NEITHER, "no password");

    let home = TempDir::new("pgpass");
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("*:*:*:{name}:from\\:the?file\n")).unwrap();
    std::process::Command::new("chmod")
        .args(["600", &pgpass.display().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        connects_in_child(&url, &[("HOME", home.display())]).await,
        BOTH,
        "~/.pgpass"
    );

    // Host, port and user from PGHOST, PGPORT and PGUSER, the password from PGPASSWORD.
    let (_, rest) = db.url().split_once('@').unwrap();
    let (host_port, path) = rest.split_once('/').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let dbname = path.split_once('?').map_or(path, |(name, _)| name);
    let env = [
        ("PGHOST", host.to_owned()),
        ("PGPORT", port.to_owned()),
        ("PGUSER", name.clone()),
        ("PGPASSWORD", "from:the?file".to_owned()),
    ];
    assert_eq!(
        connects_in_child(&format!("postgres:///{dbname}"), &env).await,
        BOTH,
        "PG* variables"
    );

    // A service of a service file names all of it.
    let services = home.path().join("services.conf");
    std::fs::write(
        &services,
        format!(
            "[shop]\nhost={host}\nport={port}\nuser={name}\npassword=from:the?file\ndbname={dbname}\n"
        ),
    )
    .unwrap();
    assert_eq!(
        connects_in_child(
            "postgres:///?service=shop",
            &[("PGSERVICEFILE", services.display().to_string())]
        )
        .await,
        BOTH,
        "service="
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pgsslmode_applies_when_the_url_names_only_the_root_certificate() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("env-mode").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("db.example").unwrap(), None)
        .await
        .unwrap();
    let url = front
        .url(db.url(), &format!("sslrootcert={}", pki.ca_file()))
        .unwrap();

    // verify-full from the environment: the certificate is for another name (libpq
    // checks the name once the handshake is done, then hangs up).
    let env = [("PGSSLMODE", "verify-full".to_owned())];
    assert_eq!(connects_in_child(&url, &env).await, NEITHER);
    // verify-ca from the environment takes it.
    let env = [("PGSSLMODE", "verify-ca".to_owned())];
    assert_eq!(connects_in_child(&url, &env).await, BOTH);
    assert_eq!(front.plain_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn require_checks_the_chain_against_the_root_certificate_in_the_home_directory() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("home-root").unwrap();
    let stranger = TestPki::new("home-stranger").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("db.example").unwrap(), None)
        .await
        .unwrap();
    let url = front.url(db.url(), "sslmode=require").unwrap();
    let home = TempDir::new("root-crt");
    std::fs::create_dir_all(home.path().join(".postgresql")).unwrap();
    let root = home.path().join(".postgresql/root.crt");

    std::fs::copy(stranger.ca_file(), &root).unwrap();
    let env = [("HOME", home.display())];
    assert_eq!(connects_in_child(&url, &env).await, NEITHER, "another CA");
    assert_eq!(front.tls_sessions(), 0);

    std::fs::copy(pki.ca_file(), &root).unwrap();
    assert_eq!(
        connects_in_child(&url, &env).await,
        BOTH,
        "the chain, not the name"
    );
    assert_eq!((front.tls_sessions(), front.plain_sessions()), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sslrootcert_system_means_the_same_to_the_pool_and_the_listener() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("system").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("localhost").unwrap(), None)
        .await
        .unwrap();
    let url = front.url(db.url(), "sslrootcert=system").unwrap();
    // libpq 16 and later take `system` as verify-full against the system's roots, which
    // do not hold the test CA; libpq 15 takes it as a file name, absent here, so `prefer`
    // encrypts without checking. Either way the two kinds of connection agree.
    let found = connects_in_child(&url, &[]).await;
    assert_eq!(found.pool, found.listener, "{found:?}");
    assert_eq!(front.plain_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_listens_over_tls_to_a_server_of_its_ca_and_refuses_others() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("full").unwrap();
    let stranger = TestPki::new("full-stranger").unwrap();
    let front = TlsFront::start(db.url(), pki.leaf("localhost").unwrap(), None)
        .await
        .unwrap();
    let with_ca = |ca: &str| {
        front
            .url(db.url(), &format!("sslmode=verify-full&sslrootcert={ca}"))
            .unwrap()
    };

    assert_eq!(
        connects_in_child(&with_ca(&stranger.ca_file()), &[]).await,
        NEITHER
    );
    assert_eq!(front.tls_sessions(), 0);
    assert_eq!(connects_in_child(&with_ca(&pki.ca_file()), &[]).await, BOTH);
    assert_eq!((front.tls_sessions(), front.plain_sessions()), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_asks_for_a_client_certificate_gets_sslcert_and_sslkey() {
    let db = TestDatabase::create().unwrap();
    let pki = TestPki::new("client").unwrap();
    let front = TlsFront::start(
        db.url(),
        pki.leaf("localhost").unwrap(),
        Some(pki.roots().unwrap()),
    )
    .await
    .unwrap();
    pki.leaf("shop-client").unwrap();
    let verify = format!("sslmode=verify-full&sslrootcert={}", pki.ca_file());

    assert_eq!(
        connects_in_child(&front.url(db.url(), &verify).unwrap(), &[]).await,
        NEITHER,
        "no client certificate"
    );
    assert_eq!(front.tls_sessions(), 0);
    // libpq refuses a key file that others may read.
    let key = pki.file("shop-client.key");
    std::process::Command::new("chmod")
        .args(["600", &key])
        .status()
        .unwrap();
    let with_certificate = format!(
        "{verify}&sslcert={}&sslkey={key}",
        pki.file("shop-client.pem")
    );
    assert_eq!(
        connects_in_child(&front.url(db.url(), &with_certificate).unwrap(), &[]).await,
        BOTH
    );
    assert_eq!(front.tls_sessions(), 2);
}

//! The shop server: reads its configuration from the environment and serves until
//! SIGTERM/SIGINT, then finishes in-flight requests and stops its schedulers.
//!
//! `shop-server token --sub <subject> [--admin] [--ttl 1h]` prints an end-user token
//! signed with `AUTH_JWT_SECRET` instead, for local use.

use std::io::Write;

use bootstrap::cli::{self, TOKEN_USAGE, TokenArgs};
use bootstrap::{Application, Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => serve().await,
        Some("token") => {
            let token = cli::token(&Config::auth_from_env()?, &TokenArgs::parse(args)?)?;
            writeln!(std::io::stdout().lock(), "{token}")?;
            Ok(())
        }
        Some(other) => {
            anyhow::bail!(
                "unknown command {other:?}; run without arguments to serve, or {TOKEN_USAGE}"
            )
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config.log_format);
    let app = Application::build(config).await?;
    tracing::info!(address = %app.address(), "shop server listening");
    app.run_until_stopped().await
}

//! The shop server: reads its configuration from the environment and serves until
//! SIGTERM/SIGINT, then finishes in-flight requests and stops its schedulers.

use bootstrap::{Application, Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config.log_format);
    let app = Application::build(config).await?;
    tracing::info!(address = %app.address(), "shop server listening");
    app.run_until_stopped().await
}

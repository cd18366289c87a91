//! `perry-hub`: ingest, dispatcher, finisher and download in one process, on one port (3456,
//! with `/ws`), plus the legacy WebSocket port (3457, any path). Runs migrations on start.
//! `perry-hub migrate` applies migrations and exits (for a deployment's migration job).

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "perry-hub",
    version,
    about = "Perry Hub: the build server behind `perry publish`, all services in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: standalone::Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { command, config } = Cli::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    if let Some(Command::Migrate) = command {
        let pool = shared::db::connect(&config.common.db, Duration::from_secs(60)).await?;
        shared::db::migrate(&pool).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    config.validate()?;
    let listeners = config.listen().await?;
    standalone::run(config, listeners, shared::shutdown::token_from_signal()).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn every_setting_has_a_unique_name() {
        Cli::command().debug_assert();
    }
}

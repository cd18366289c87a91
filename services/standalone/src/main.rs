//! `perry-hub`: ingest, dispatcher, finisher and download in one process, on one port (3456,
//! with `/ws`), plus the legacy WebSocket port (3457, any path). Runs migrations on start.
//! `perry-hub migrate` applies migrations and exits (for a deployment's migration job);
//! `perry-hub import-legacy --from mysql://…` imports the original server's data (crate `legacy`).

use std::time::Duration;

use anyhow::Context;
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
    /// Import licences, accounts, API tokens and usage (optionally builds) from the original
    /// server's MySQL database; safe to run more than once.
    ImportLegacy(legacy::Args),
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
    if let Some(Command::ImportLegacy(args)) = &command {
        let pool = shared::db::connect(&config.common.db, Duration::from_secs(60)).await?;
        shared::db::migrate(&pool).await?;
        let report = legacy::run(args, &pool).await.context("import-legacy")?;
        println!("{report}");
        anyhow::ensure!(report.succeeded(args.allow_skips), "rows were skipped");
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

    #[test]
    fn help_lists_the_settings_of_every_fragment_under_their_variable_names() {
        let help = Cli::command().render_long_help().to_string();
        for variable in [
            "PERRY_HUB_BIND",
            "PERRY_HUB_HTTP_PORT",
            "PERRY_HUB_WS_PORT",
            "PERRY_HUB_PUBLIC_URL",
            "PERRY_HUB_CREDENTIALS_KEY",
            "PERRY_DB_HOST",
            "DATABASE_URL",
            "AMQP_URL",
            "PERRY_BLOB_BACKEND",
            "PERRY_S3_BUCKET",
            "PERRY_HUB_MAX_BODY_BYTES",
            "PERRY_HUB_LEASE_SECS",
            "POLAR_ACCESS_TOKEN",
            "PERRY_FINISHER_SWEEP_SECS",
            "AZURE_VM_NAME",
        ] {
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{variable} missing"
            );
        }
    }
}

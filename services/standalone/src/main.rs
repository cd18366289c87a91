//! `perry-hub`: ingest, dispatcher, finisher and download in one process, on one port (3456,
//! with `/ws`), plus the legacy WebSocket port (3457, any path). Runs migrations on start.
//! `perry-hub migrate` applies migrations and exits (for a deployment's migration job);
//! `perry-hub import-legacy --from mysql://…` imports the original server's data (crate `legacy`).

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared::{
    config::{AmqpConfig, BlobConfig, DbConfig, HubConfig},
    runtime::Deps,
};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "perry-hub",
    version,
    about = "Perry Hub: the build server behind `perry publish`, all services in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to bind.
    #[arg(long, env = "PERRY_HUB_BIND", default_value = "0.0.0.0")]
    bind: String,
    /// HTTP port: the API, `/ws` and the health endpoints.
    #[arg(long, env = "PERRY_HUB_HTTP_PORT", default_value_t = 3456)]
    http_port: u16,
    /// Legacy WebSocket port (any path upgrades); 0 disables it.
    #[arg(long, env = "PERRY_HUB_WS_PORT", default_value_t = 3457)]
    ws_port: u16,
    #[command(flatten)]
    hub: HubConfig,
    #[command(flatten)]
    db: DbConfig,
    #[command(flatten)]
    amqp: AmqpConfig,
    #[command(flatten)]
    blob: BlobConfig,
    #[command(flatten)]
    ingest: ingest::Settings,
    #[command(flatten)]
    dispatcher: dispatcher::Settings,
    #[command(flatten)]
    finisher: finisher::Settings,
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
    let cli = Cli::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    if let Some(Command::Migrate) = cli.command {
        let pool = shared::db::connect(&cli.db, Duration::from_secs(60)).await?;
        shared::db::migrate(&pool).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    if let Some(Command::ImportLegacy(args)) = &cli.command {
        let pool = shared::db::connect(&cli.db, Duration::from_secs(60)).await?;
        shared::db::migrate(&pool).await?;
        let report = legacy::run(args, &pool).await.context("import-legacy")?;
        println!("{report}");
        anyhow::ensure!(report.succeeded(args.allow_skips), "rows were skipped");
        return Ok(());
    }
    validate(&cli)?;
    let cancel = shared::shutdown::token_from_signal();
    let deps = Deps::connect(&cli.db, &cli.amqp, &cli.blob, &cli.hub, cancel.clone()).await?;
    shared::db::migrate(&deps.pool).await?;
    deps.spawn_relay();

    let dispatch = dispatcher::start(&deps, cli.dispatcher.clone())?;
    finisher::start(&deps, cli.finisher.clone())?;
    let app = ingest::router(ingest::AppState::new(&deps, cli.ingest.clone())?)
        .merge(download::router(
            download::AppState::new(&deps).with_trust_forwarded_for(cli.ingest.trust_forwarded_for),
        ))
        .merge(dispatcher::router(dispatch.clone()))
        .merge(shared::http::health_router(deps.ready_checks()));
    let app = shared::http::finish_router(app);

    let http = TcpListener::bind((cli.bind.as_str(), cli.http_port))
        .await
        .with_context(|| format!("binding HTTP port {}", cli.http_port))?;
    tracing::info!(addr = %http.local_addr()?, public_url = %deps.hub.public_url(), "perry-hub listening (HTTP + /ws)");
    let mut servers = tokio::task::JoinSet::new();
    let c = cancel.clone();
    servers.spawn(shared::http::serve(http, app, async move {
        c.cancelled().await
    }));
    if cli.ws_port != 0 {
        let legacy = TcpListener::bind((cli.bind.as_str(), cli.ws_port))
            .await
            .with_context(|| format!("binding legacy WebSocket port {}", cli.ws_port))?;
        tracing::info!(addr = %legacy.local_addr()?, "legacy WebSocket listener (any path)");
        let c = cancel.clone();
        servers.spawn(shared::http::serve(
            legacy,
            dispatcher::legacy_router(dispatch),
            async move { c.cancelled().await },
        ));
    }
    while let Some(result) = servers.join_next().await {
        if let Err(error) = result.context("server task")? {
            cancel.cancel();
            return Err(error).context("serving HTTP");
        }
    }
    deps.shutdown(Duration::from_secs(10)).await;
    tracing::info!("perry-hub stopped");
    Ok(())
}

fn validate(cli: &Cli) -> anyhow::Result<()> {
    cli.hub.validate()?;
    cli.amqp.validate()?;
    cli.blob.validate()?;
    cli.hub.validate_admin_secret()?;
    dispatcher::validate(&cli.hub, &cli.dispatcher)?;
    if cli.hub.dev_mode {
        tracing::warn!("development mode: do not expose this hub to the internet");
    }
    Ok(())
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

//! The hub (`perry-hub`, every service in one process) as a separate process, started by tests
//! that kill it with SIGKILL mid-flow. The same entry point as the real binary: settings from
//! the environment, `standalone::run`.

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    config: standalone::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { config } = Cli::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    config.validate()?;
    let listeners = config.listen().await?;
    standalone::run(config, listeners, shared::shutdown::token_from_signal()).await
}

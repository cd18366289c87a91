//! The hub as a separate process, started by tests that kill it with SIGKILL mid-flow:
//! `perry-hub-process` runs every service in one process (`standalone::run`), and
//! `perry-hub-process <ingest|dispatcher|finisher|download>` one service, through the same
//! entry points as `perry-hub`. Settings come from the environment.

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    config: standalone::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let role = match args.get(1).map(String::as_str) {
        Some(r @ ("ingest" | "dispatcher" | "finisher" | "download")) => Some(r.to_owned()),
        _ => None,
    };
    if role.is_some() {
        args.remove(1);
    }
    match role.as_deref() {
        Some("ingest") => ingest::launch(ingest::Config::parse_from(args)).await,
        Some("dispatcher") => dispatcher::launch(dispatcher::Config::parse_from(args)).await,
        Some("finisher") => finisher::launch(finisher::Config::parse_from(args)).await,
        Some("download") => download::launch(download::Config::parse_from(args)).await,
        _ => {
            let Cli { config } = Cli::parse_from(args);
            shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
            config.validate()?;
            let listeners = config.listen().await?;
            standalone::run(config, listeners, shared::shutdown::token_from_signal()).await
        }
    }
}

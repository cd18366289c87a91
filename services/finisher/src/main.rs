//! `finisher`: the finisher service alone (health and metrics on PERRY_FINISHER_PORT).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = finisher::Config::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    let listener = config.common.listen(config.port).await?;
    finisher::run(config, listener, shared::shutdown::token_from_signal()).await
}

//! `ingest`: the ingest service alone (builds, artifact uploads, licences, accounts, admin).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ingest::Config::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    let listener = config.common.listen(config.port).await?;
    ingest::run(config, listener, shared::shutdown::token_from_signal()).await
}

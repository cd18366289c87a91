//! `finisher`: the finisher service alone (health and metrics on PERRY_FINISHER_PORT).

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = finisher::Config::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    let listener = tokio::net::TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind, config.port))?;
    finisher::run(config, listener, shared::shutdown::token_from_signal()).await
}

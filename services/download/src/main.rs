//! `download`: the download service alone (single-use artifact links, worker tarball fetches).

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = download::Config::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    let listener = tokio::net::TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind, config.port))?;
    download::run(config, listener, shared::shutdown::token_from_signal()).await
}

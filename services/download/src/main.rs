//! `download`: the download service alone (single-use artifact links, worker tarball fetches).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = download::Config::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    let listener = config.common.listen(config.port).await?;
    download::run(config, listener, shared::shutdown::token_from_signal()).await
}

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = dispatcher::Config::parse();
    shared::telemetry::init(shared::telemetry::DEFAULT_FILTER);
    let listener = config.common.listen(config.port).await?;
    dispatcher::run(config, listener, shared::shutdown::token_from_signal()).await
}

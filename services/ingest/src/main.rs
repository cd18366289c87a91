//! `ingest`: the ingest service alone, the same as `perry-hub ingest`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    shared::cli::start(ingest::Config::parse, ingest::launch)
}

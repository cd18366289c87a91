//! `download`: the download service alone, the same as `perry-hub download`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    shared::cli::start(download::Config::parse, download::launch)
}

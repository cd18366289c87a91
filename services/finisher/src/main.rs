//! `finisher`: the finisher service alone, the same as `perry-hub finisher`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    shared::cli::start(finisher::Config::parse, finisher::launch)
}

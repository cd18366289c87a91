//! `dispatcher`: the dispatcher service alone, the same as `perry-hub dispatcher`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    shared::cli::start(dispatcher::Config::parse, dispatcher::launch)
}

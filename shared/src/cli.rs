//! The skeleton of every binary's `main` ([`start`]) and of every role ([`launch`]): secrets
//! from `<NAME>_FILE`, the command line, logging, the runtime; then `--check`, or bind and run
//! until SIGTERM.

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{check::Needs, config::ServiceArgs};

/// Run a binary: export `<NAME>_FILE` secrets into the environment (before any thread exists),
/// `parse` the command line, initialise logging, then run `body` on a multi-threaded runtime.
pub fn start<C, F, Fut>(parse: impl FnOnce() -> C, body: F) -> anyhow::Result<()>
where
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::config::secret_files::export()?;
    let config = parse();
    crate::telemetry::init(crate::telemetry::DEFAULT_FILTER);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(body(config))
}

/// One role of the hub, as [`launch`] runs it.
#[derive(Debug, Clone, Copy)]
pub struct Role<'a> {
    /// `ingest`, `dispatcher`, ... (in `--check` output).
    pub name: &'static str,
    /// The shared settings (bind address, `--check`, backing services).
    pub args: &'a ServiceArgs,
    /// The backing services `--check` connects to.
    pub needs: Needs,
}

/// With `--check`, check the role's backing services and return; otherwise bind `port` and
/// `run` until SIGTERM or Ctrl-C. The configuration is validated by `run` (and by the caller
/// before a check).
pub async fn launch<F, Fut>(role: Role<'_>, port: u16, run: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if role.args.check {
        return crate::check::run(role.name, role.args, role.needs).await;
    }
    let listener = role.args.listen(port).await?;
    run(listener, crate::shutdown::token_from_signal()).await
}

//! `perry-hub`: the one binary of the image. It runs any role:
//!
//! - `perry-hub` or `perry-hub all`: ingest, dispatcher, finisher and download in one process,
//!   on one port (3456, with `/ws`) plus the legacy WebSocket port (3457). Migrates on start.
//! - `perry-hub ingest|dispatcher|finisher|download`: one service, as in a split deployment.
//! - `perry-hub migrate`: apply database migrations and exit (compose's one-shot service, the
//!   Kubernetes init containers).
//! - `perry-hub check` (or `--check` after any service role): check the configuration and the
//!   backing services, print their versions, exit.
//! - `perry-hub migrate-to-mysql`: move a one-box hub's SQLite data to MySQL.
//! - `perry-hub import-legacy --from mysql://…`: import the original server's data.
//! - `perry-hub admin jobs|job|cancel|requeue|workers|drain|…`: the operator API of a running
//!   hub, as tables or `--json`.
//!
//! Invoked under another name (a symlink `ingest` → `perry-hub`), the name is the role.

use std::{ffi::OsString, path::Path, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "perry-hub",
    version,
    propagate_version = true,
    about = "Perry Hub: the build server behind `perry publish`",
    after_help = "Without a role, `perry-hub` runs `all`. Every role prints its settings with \
                  `perry-hub <role> --help`. Each secret variable (PERRY_DB_PASSWORD, AMQP_URL, \
                  PERRY_HUB_WORKER_SECRET, …) may instead be read from the file named by \
                  <NAME>_FILE."
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// All four services in one process, on PERRY_HUB_HTTP_PORT (3456) and the legacy
    /// WebSocket port PERRY_HUB_WS_PORT (3457); applies migrations first (the default role)
    All(standalone::Config),
    /// Builds, artifact uploads, licences, accounts, admin, on PERRY_INGEST_PORT (3456)
    Ingest(ingest::Config),
    /// Worker and CLI WebSockets (`/ws`) and dispatch, on PERRY_DISPATCHER_PORT (3458)
    Dispatcher(dispatcher::Config),
    /// Stage 2, the signing VM, lost-job requeue, retention; health on PERRY_FINISHER_PORT (3460)
    Finisher(finisher::Config),
    /// Single-use artifact links and worker tarballs, on PERRY_DOWNLOAD_PORT (3459)
    Download(download::Config),
    /// Apply database migrations and exit; safe to run concurrently (sqlx takes a lock)
    Migrate(Migrate),
    /// Check the configuration and every backing service (same as `all --check`), print their
    /// versions, and exit
    Check(standalone::Config),
    /// Move a one-box hub's data from its SQLite file (PERRY_DB_SQLITE_PATH) to the MySQL
    /// database named by DATABASE_URL or PERRY_DB_*; the hub must be stopped, and the MySQL
    /// database must have no data yet
    MigrateToMysql(MigrateToMysql),
    /// Import licences, accounts, API tokens and usage (optionally builds) from the original
    /// server's MySQL database; safe to run more than once
    ImportLegacy(ImportLegacy),
    /// Operate a running hub over its admin API: jobs, cancel, requeue, workers, drain, queues,
    /// outbox, licences (PERRY_HUB_URL, PERRY_HUB_ADMIN_SECRET)
    Admin(standalone::admin::AdminArgs),
}

/// `perry-hub migrate`: only the database settings.
#[derive(Debug, clap::Args)]
struct Migrate {
    /// How long to wait for the database to accept connections, in seconds.
    #[arg(long, env = "PERRY_MIGRATE_WAIT_SECS", default_value_t = 60)]
    wait_secs: u64,
    #[command(flatten)]
    db: shared::config::DbConfig,
}

/// `perry-hub migrate-to-mysql`: the SQLite file to read and the MySQL database to fill.
#[derive(Debug, clap::Args)]
struct MigrateToMysql {
    #[command(flatten)]
    db: shared::config::DbConfig,
}

/// `perry-hub import-legacy`: the hub's database and the import's options.
#[derive(Debug, clap::Args)]
struct ImportLegacy {
    #[command(flatten)]
    args: legacy::Args,
    #[command(flatten)]
    db: shared::config::DbConfig,
}

/// The roles, by the names a symlink to the binary may carry.
const ROLES: &[&str] = &[
    "all",
    "ingest",
    "dispatcher",
    "finisher",
    "download",
    "migrate",
    "check",
    "migrate-to-mysql",
    "import-legacy",
    "admin",
];

/// The command line with the role made explicit: from the program name when it is a role (a
/// symlink), else `all` when the first argument is not a role or help.
fn with_role(args: Vec<OsString>) -> Vec<OsString> {
    let mut args = args.into_iter();
    let program = args.next().unwrap_or_else(|| "perry-hub".into());
    let rest: Vec<OsString> = args.collect();
    let invoked_as = Path::new(&program)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| ROLES.contains(n) && *n != "all");
    let role: Option<OsString> = match (invoked_as, rest.first().and_then(|a| a.to_str())) {
        (Some(name), _) => Some(name.into()),
        (None, Some(first)) if ROLES.contains(&first) || first == "help" => None,
        (None, Some("-h" | "--help" | "-V" | "--version")) => None,
        (None, _) => Some("all".into()),
    };
    std::iter::once("perry-hub".into())
        .chain(role)
        .chain(rest)
        .collect()
}

fn main() -> anyhow::Result<()> {
    shared::cli::start(
        || Cli::parse_from(with_role(std::env::args_os().collect())),
        |cli: Cli| run(cli.role),
    )
}

async fn run(role: Role) -> anyhow::Result<()> {
    match role {
        Role::All(config) => standalone::launch(config).await,
        Role::Check(mut config) => {
            config.common.check = true;
            standalone::launch(config).await
        }
        Role::Ingest(config) => ingest::launch(config).await,
        Role::Dispatcher(config) => dispatcher::launch(config).await,
        Role::Finisher(config) => finisher::launch(config).await,
        Role::Download(config) => download::launch(config).await,
        Role::Migrate(Migrate { wait_secs, mut db }) => {
            db.embedded_allowed = true;
            let pool = shared::db::connect(&db, Duration::from_secs(wait_secs)).await?;
            shared::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
            pool.close().await;
            Ok(())
        }
        Role::Admin(args) => match standalone::admin::run(&args).await {
            Ok(out) => {
                print!("{out}");
                Ok(())
            }
            // One line for a person at a terminal, no backtrace.
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
        },
        Role::MigrateToMysql(MigrateToMysql { db }) => {
            if !db.names_a_mysql_server() {
                anyhow::bail!(
                    "MYSQL_NOT_NAMED: set DATABASE_URL or PERRY_DB_HOST/USER/PASSWORD/NAME to \
                     the MySQL database to move the data to"
                );
            }
            let file = db.sqlite_path.clone();
            anyhow::ensure!(
                file.is_file(),
                "NO_SQLITE_DATABASE: {} does not exist (PERRY_DB_SQLITE_PATH)",
                file.display()
            );
            let source = shared::config::DbConfig {
                kind: shared::config::DbKind::Sqlite,
                embedded_allowed: true,
                ..db.clone()
            };
            let target = shared::config::DbConfig {
                kind: shared::config::DbKind::Mysql,
                ..db
            };
            let source = shared::db::connect(&source, Duration::from_secs(10)).await?;
            let target = shared::db::connect(&target, Duration::from_secs(60)).await?;
            let report = standalone::to_mysql::run(&file, &source, &target).await?;
            println!("{report}");
            println!(
                "moved {} to MySQL; start the hub with the MySQL settings (and AMQP_URL to run \
                 several processes)",
                file.display()
            );
            Ok(())
        }
        Role::ImportLegacy(ImportLegacy { args, mut db }) => {
            db.embedded_allowed = true;
            let pool = shared::db::connect(&db, Duration::from_secs(60)).await?;
            shared::db::migrate(&pool).await?;
            let report = legacy::run(&args, &pool).await.context("import-legacy")?;
            println!("{report}");
            anyhow::ensure!(report.succeeded(args.allow_skips), "rows were skipped");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{with_role, Cli, Role};

    fn parse(args: &[&str]) -> Role {
        let args = args.iter().map(Into::into).collect();
        Cli::try_parse_from(with_role(args)).expect("parses").role
    }

    #[test]
    fn every_setting_has_a_unique_name() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_role_means_all_and_flags_alone_go_to_all() {
        assert!(matches!(parse(&["perry-hub"]), Role::All(_)));
        let Role::All(config) = parse(&["perry-hub", "--http-port", "4000", "--check"]) else {
            panic!("expected all");
        };
        assert_eq!(config.http_port, 4000);
        assert!(config.common.check);
    }

    #[test]
    fn each_role_parses_with_its_own_settings() {
        assert!(
            matches!(parse(&["perry-hub", "ingest", "--check"]), Role::Ingest(c) if c.common.check)
        );
        assert!(
            matches!(parse(&["perry-hub", "dispatcher"]), Role::Dispatcher(c) if c.port == 3458)
        );
        assert!(matches!(parse(&["perry-hub", "finisher"]), Role::Finisher(c) if c.port == 3460));
        assert!(matches!(parse(&["perry-hub", "download"]), Role::Download(c) if c.port == 3459));
        assert!(matches!(parse(&["perry-hub", "migrate"]), Role::Migrate(_)));
        assert!(matches!(parse(&["perry-hub", "check"]), Role::Check(_)));
        assert!(matches!(
            parse(&["perry-hub", "migrate-to-mysql", "--db-sqlite-path", "/srv/hub.db"]),
            Role::MigrateToMysql(m) if m.db.sqlite_path == std::path::Path::new("/srv/hub.db")
        ));
        assert!(matches!(
            parse(&["perry-hub", "import-legacy", "--from", "mysql://u:p@h/db", "--dry-run"]),
            Role::ImportLegacy(i) if i.args.dry_run
        ));
        let Role::Admin(admin) = parse(&[
            "perry-hub",
            "admin",
            "--url",
            "http://h:1",
            "drain",
            "mac-1",
            "--json",
        ]) else {
            panic!("expected admin");
        };
        assert!(admin.json);
        assert_eq!(admin.url, "http://h:1");
        assert!(
            matches!(admin.command, standalone::admin::AdminCommand::Drain { name } if name == "mac-1")
        );
    }

    #[test]
    fn a_symlink_named_after_a_role_runs_that_role() {
        assert!(matches!(parse(&["/usr/local/bin/ingest"]), Role::Ingest(_)));
        assert!(matches!(parse(&["download", "--port", "1"]), Role::Download(c) if c.port == 1));
        assert!(matches!(parse(&["migrate"]), Role::Migrate(_)));
    }

    #[test]
    fn every_role_has_its_own_help_and_version() {
        for role in [
            "all",
            "ingest",
            "dispatcher",
            "finisher",
            "download",
            "migrate",
            "check",
        ] {
            for flag in ["--help", "--version"] {
                let args = ["perry-hub", role, flag].iter().map(Into::into).collect();
                let err = Cli::try_parse_from(with_role(args)).unwrap_err();
                assert!(
                    matches!(
                        err.kind(),
                        clap::error::ErrorKind::DisplayHelp
                            | clap::error::ErrorKind::DisplayVersion
                    ),
                    "{role} {flag}: {err}"
                );
            }
        }
    }

    #[test]
    fn help_of_all_lists_the_settings_of_every_fragment_under_their_variable_names() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("all")
            .expect("all")
            .render_long_help()
            .to_string();
        for variable in [
            "PERRY_HUB_BIND",
            "PERRY_HUB_HTTP_PORT",
            "PERRY_HUB_WS_PORT",
            "PERRY_HUB_PUBLIC_URL",
            "PERRY_HUB_CREDENTIALS_KEY",
            "PERRY_HUB_SHUTDOWN_GRACE_SECS",
            "PERRY_DB_HOST",
            "DATABASE_URL",
            "AMQP_URL",
            "PERRY_BLOB_BACKEND",
            "PERRY_S3_BUCKET",
            "PERRY_HUB_MAX_BODY_BYTES",
            "PERRY_HUB_LEASE_SECS",
            "POLAR_ACCESS_TOKEN",
            "PERRY_FINISHER_SWEEP_SECS",
            "AZURE_VM_NAME",
        ] {
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{variable} missing"
            );
        }
    }
}

//! `--check` (and `perry-hub check`): after the configuration validated, connect once to each
//! backing service a role needs, print what answered (server versions, the schema state, the
//! blob store) and exit non-zero if anything is missing, refused or too old. Nothing is written
//! except the blob store's probe file, and nothing retries for long: a wrong password or an
//! unknown database is reported at once.

use std::time::Duration;

use anyhow::Context as _;
use lapin::{types::AMQPValue, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{AmqpConfig, BlobBackend, BlobConfig, DbConfig, ServiceArgs};

/// Time allowed for each backing service to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The backing services a role uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// MySQL / MariaDB.
    pub db: bool,
    /// RabbitMQ (when `AMQP_URL` is set; else the in-process queue, nothing to check).
    pub broker: bool,
    /// The blob store.
    pub blob: bool,
}

impl Needs {
    /// Every backing service.
    pub const ALL: Self = Self {
        db: true,
        broker: true,
        blob: true,
    };
}

/// Check each backing service `role` needs, printing one line per service to stdout.
/// Fails (after trying every service) when one of them is unusable.
pub async fn run(role: &str, args: &ServiceArgs, needs: Needs) -> anyhow::Result<()> {
    println!("{role}: configuration ok");
    let mut failed = Vec::new();
    if needs.db {
        let label = match args.db.embedded() {
            Ok(Some(_)) => "database",
            _ => "mysql",
        };
        report(label, check_db(&args.db).await, &mut failed);
    }
    if needs.broker && args.amqp.configured() {
        report("rabbitmq", check_broker(&args.amqp).await, &mut failed);
    } else if needs.broker {
        // Only `perry-hub all` gets here: the split roles refuse to start without AMQP_URL.
        println!("queue: in-process (AMQP_URL is not set, so no RabbitMQ is used)");
    }
    if needs.blob {
        report("blob", check_blob(&args.blob).await, &mut failed);
    }
    anyhow::ensure!(
        failed.is_empty(),
        "CHECK_FAILED: {role}: {} unusable",
        failed.join(", ")
    );
    println!("{role}: ready to start");
    Ok(())
}

fn report(name: &'static str, result: anyhow::Result<String>, failed: &mut Vec<&'static str>) {
    match result {
        Ok(line) => println!("{name}: {line}"),
        Err(error) => {
            println!("{name}: FAILED: {error:#}");
            failed.push(name);
        }
    }
}

/// Connect once (no retry loop), read the version and refuse servers without `SKIP LOCKED`.
async fn check_db(config: &DbConfig) -> anyhow::Result<String> {
    let target = match config.embedded()? {
        Some(path) => path.display().to_string(),
        None => {
            let options = config.connect_options()?;
            format!(
                "{}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            )
        }
    };
    let pool = crate::db::connect(config, Duration::ZERO)
        .await
        .with_context(|| format!("at {target}"))?;
    let version = crate::db::server_version(&pool).await?;
    version.require_supported()?;
    let applied = crate::db::applied_migrations(&pool).await?;
    let known = crate::db::migrator(&pool).iter().count();
    pool.close().await;
    let schema = match known.saturating_sub(applied) {
        0 => format!("schema up to date ({applied} migrations)"),
        pending => {
            format!("schema: {applied} of {known} migrations applied, {pending} pending (run `perry-hub migrate`)")
        }
    };
    Ok(format!("{version} at {target}, {schema}"))
}

/// Read the broker's server properties from its `connection.start`, then log in with lapin to
/// prove the credentials and the virtual host.
async fn check_broker(config: &AmqpConfig) -> anyhow::Result<String> {
    let uri: lapin::uri::AMQPUri = config
        .url
        .expose()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("AMQP_URL is not an AMQP URL: {e}"))?;
    let host = uri.authority.host.clone();
    let port = uri.authority.port;
    let product = match uri.scheme {
        lapin::uri::AMQPScheme::AMQP => server_product(&host, port)
            .await
            .with_context(|| format!("at {host}:{port}"))?,
        lapin::uri::AMQPScheme::AMQPS => "server version not read over TLS".to_owned(),
    };
    let props = ConnectionProperties::default().with_connection_name("perry-hub-check".into());
    let conn = tokio::time::timeout(
        CHECK_TIMEOUT,
        lapin::Connection::connect(&config.url_with_heartbeat(), props),
    )
    .await
    .map_err(|_| anyhow::anyhow!("AMQP_TIMEOUT: no answer from {host}:{port}"))?
    .map_err(|e| {
        anyhow::anyhow!(
            "AMQP_LOGIN_FAILED: {product} at {host}:{port} refused the login to vhost {:?}: {e} (check AMQP_URL)",
            uri.vhost
        )
    })?;
    let _ = conn.close(200, "check done".into()).await;
    Ok(format!("{product} at {host}:{port}, vhost {:?}", uri.vhost))
}

/// The `product` and `version` the broker announces in `connection.start`, the first frame it
/// sends after the protocol header (lapin reads and drops them).
async fn server_product(host: &str, port: u16) -> anyhow::Result<String> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect((host, port)).await?;
        socket.write_all(b"AMQP\x00\x00\x09\x01").await?;
        let mut header = [0u8; 7];
        socket.read_exact(&mut header).await?;
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
        anyhow::ensure!(header[0] == 1 && size < 1 << 20, "not an AMQP 0-9-1 server");
        let mut payload = vec![0u8; size as usize];
        socket.read_exact(&mut payload).await?;
        Ok(payload)
    };
    let payload = tokio::time::timeout(CHECK_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("AMQP_TIMEOUT: no connection.start"))??;
    let (_, class) = lapin::protocol::parse_class(&payload[..])
        .map_err(|_| anyhow::anyhow!("unreadable connection.start"))?;
    let lapin::protocol::AMQPClass::Connection(lapin::protocol::connection::AMQPMethod::Start(
        start,
    )) = class
    else {
        anyhow::bail!("expected connection.start");
    };
    let field = |name: &str| match start.server_properties.inner().get(name) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        _ => "?".to_owned(),
    };
    Ok(format!("{} {}", field("product"), field("version")))
}

/// Probe the blob store: a directory that takes a file, or a bucket that answers.
async fn check_blob(config: &BlobConfig) -> anyhow::Result<String> {
    let store = config.build().await?;
    tokio::time::timeout(CHECK_TIMEOUT, store.check())
        .await
        .map_err(|_| anyhow::anyhow!("BLOB_TIMEOUT: the store did not answer"))?
        .map_err(|e| anyhow::anyhow!("BLOB_UNUSABLE: {e}"))?;
    Ok(match config.backend {
        BlobBackend::Fs => format!("directory {} is writable", config.dir.display()),
        BlobBackend::S3 => format!(
            "bucket {:?} answers at {}",
            config.s3_bucket,
            config.s3_endpoint.as_deref().unwrap_or("AWS S3")
        ),
    })
}

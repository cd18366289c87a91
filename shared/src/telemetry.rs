//! Logging setup: `RUST_LOG` filter, compact text by default, flattened JSON with
//! `LOG_FORMAT=json`.

use tracing_subscriber::{fmt, EnvFilter};

/// Initialise the global subscriber for a binary. `default_filter` applies when `RUST_LOG` is
/// unset, e.g. `"info,sqlx=warn,lapin=warn"`.
pub fn init(default_filter: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // These libraries dump whole frames and headers at debug/trace level: WebSocket frames
    // carry job tokens and decrypted credentials, HTTP headers carry bearer secrets. Cap them
    // whatever RUST_LOG says, so no log level can leak a secret.
    for directive in CAPPED {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    if let Err(error) = result {
        eprintln!("telemetry already initialised: {error}");
    }
}

/// Libraries capped at `info` because their verbose levels log message bodies or headers.
pub const CAPPED: &[&str] = &[
    "tungstenite=info",
    "tokio_tungstenite=info",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "reqwest=info",
    "lapin=info",
    "amq_protocol=info",
    "aws_smithy_runtime=info",
    "aws_sigv4=info",
    "sqlx=info",
];

/// The default filter used by every binary.
pub const DEFAULT_FILTER: &str =
    "info,sqlx=warn,lapin=warn,amq_protocol=warn,aws_config=warn,aws_smithy_runtime=warn,tower_http=info";

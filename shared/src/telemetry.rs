//! Logging setup: `RUST_LOG` filter, compact text by default, flattened JSON with
//! `LOG_FORMAT=json`.

use tracing_subscriber::{fmt, EnvFilter};

/// Initialise the global subscriber for a binary. `default_filter` applies when `RUST_LOG` is
/// unset, e.g. `"info,sqlx=warn,lapin=warn"`.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let result = if json {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.compact().try_init()
    };
    if let Err(error) = result {
        eprintln!("telemetry already initialised: {error}");
    }
}

/// The default filter used by every binary.
pub const DEFAULT_FILTER: &str =
    "info,sqlx=warn,lapin=warn,amq_protocol=warn,aws_config=warn,aws_smithy_runtime=warn,tower_http=info";

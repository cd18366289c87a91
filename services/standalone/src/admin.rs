//! `perry-hub admin …`: the operator API from a terminal. Each subcommand is one request to a
//! running hub (`--url`, default `http://localhost:3456`) with the admin secret
//! (`PERRY_HUB_ADMIN_SECRET`, or the file named by `PERRY_HUB_ADMIN_SECRET_FILE`; never a flag,
//! so it stays out of shell history and `ps`). Tables for people; `--json` prints the hub's
//! answer unchanged for scripts. An error answer exits non-zero with its stable code.

use anyhow::{bail, Context as _};
use serde_json::Value;

/// `perry-hub admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the hub's HTTP API (ingest, or the all-in-one port).
    #[arg(long, env = "PERRY_HUB_URL", default_value = "http://localhost:3456")]
    pub url: String,
    /// The admin secret (from the environment only).
    #[arg(
        long = "admin-secret",
        env = "PERRY_HUB_ADMIN_SECRET",
        hide_env_values = true,
        hide = true,
        default_value = ""
    )]
    pub secret: String,
    /// Print the hub's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Jobs, newest first
    Jobs {
        /// Only these states (comma-separated: queued,running,failed,…)
        #[arg(long)]
        state: Option<String>,
        /// Only this target
        #[arg(long)]
        target: Option<String>,
        /// Only this licence id
        #[arg(long)]
        license: Option<i64>,
        /// Only this account id
        #[arg(long)]
        account: Option<String>,
        /// Only jobs created in the last N minutes
        #[arg(long)]
        since_minutes: Option<i64>,
        /// Page size (1–200)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `next_cursor` of the previous page
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One job: attempts, artifacts and its last events
    Job {
        /// Job id
        id: String,
    },
    /// Cancel a job
    Cancel {
        /// Job id
        id: String,
    },
    /// Run a failed job again
    Requeue {
        /// Job id
        id: String,
    },
    /// Connected workers with their slots and jobs
    Workers,
    /// Drain a worker: it finishes what it holds and takes nothing new
    Drain {
        /// Worker name
        name: String,
    },
    /// Give a drained worker jobs again
    Undrain {
        /// Worker name
        name: String,
    },
    /// Queue depth and oldest waiting job per target
    Queues,
    /// Outbox backlog and dead letters
    Outbox,
    /// Replay dead letters through the outbox
    Replay,
    /// Licences with this month's publishes
    Licences {
        /// Only this tier
        #[arg(long)]
        tier: Option<String>,
        /// Page size (1–200)
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Accounts with their licences and live API tokens
    Accounts {
        /// Page size (1–200)
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Change a licence's tier
    Tier {
        /// Licence id
        id: i64,
        /// free or pro
        tier: String,
    },
    /// Revoke an API token
    RevokeToken {
        /// Token id
        id: i64,
    },
}

/// Run one subcommand; returns what to print.
pub async fn run(args: &AdminArgs) -> anyhow::Result<String> {
    if args.secret.trim().is_empty() {
        bail!("PERRY_HUB_ADMIN_SECRET is not set");
    }
    let (method, path) = request(&args.command);
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let req = match method {
        Method::Get => client.get(&url),
        Method::Post => client.post(&url).json(&serde_json::json!({})),
        Method::PostBody(body) => client.post(&url).json(&body),
    };
    let resp = req
        .bearer_auth(args.secret.trim())
        .send()
        .await
        .with_context(|| format!("cannot reach the hub at {}", args.url))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("HTTP_ERROR");
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("{code} ({}): {message}", status.as_u16());
    }
    if args.json {
        return Ok(serde_json::to_string_pretty(&body)? + "\n");
    }
    Ok(crate::admin_tables::render(&args.command, &body))
}

enum Method {
    Get,
    Post,
    PostBody(Value),
}

fn request(command: &AdminCommand) -> (Method, String) {
    use AdminCommand as C;
    let enc = |s: &str| urlencode(s);
    match command {
        C::Jobs {
            state,
            target,
            license,
            account,
            since_minutes,
            limit,
            cursor,
        } => {
            let mut q = vec![format!("limit={limit}")];
            let mut add = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            };
            add("state", state.clone());
            add("target", target.clone());
            add("license_id", license.map(|l| l.to_string()));
            add("account_id", account.clone());
            add(
                "since_ms",
                since_minutes.map(|m| (shared::clock::now_ms() - m * 60_000).max(0).to_string()),
            );
            add("cursor", cursor.clone());
            (Method::Get, format!("/api/v1/admin/jobs?{}", q.join("&")))
        }
        C::Job { id } => (Method::Get, format!("/api/v1/admin/jobs/{}", enc(id))),
        C::Cancel { id } => (
            Method::Post,
            format!("/api/v1/admin/jobs/{}/cancel", enc(id)),
        ),
        C::Requeue { id } => (
            Method::Post,
            format!("/api/v1/admin/jobs/{}/requeue", enc(id)),
        ),
        C::Workers => (Method::Get, "/api/v1/admin/workers".into()),
        C::Drain { name } => (
            Method::Post,
            format!("/api/v1/admin/workers/{}/drain", enc(name)),
        ),
        C::Undrain { name } => (
            Method::Post,
            format!("/api/v1/admin/workers/{}/undrain", enc(name)),
        ),
        C::Queues => (Method::Get, "/api/v1/admin/queues".into()),
        C::Outbox => (Method::Get, "/api/v1/admin/outbox".into()),
        C::Replay => (Method::Post, "/api/v1/admin/outbox/replay".into()),
        C::Licences { tier, limit } => {
            let tier = tier
                .as_deref()
                .map(|t| format!("&tier={}", enc(t)))
                .unwrap_or_default();
            (
                Method::Get,
                format!("/api/v1/admin/licenses?limit={limit}{tier}"),
            )
        }
        C::Accounts { limit } => (Method::Get, format!("/api/v1/admin/accounts?limit={limit}")),
        C::Tier { id, tier } => (
            Method::PostBody(serde_json::json!({ "tier": tier })),
            format!("/api/v1/admin/licenses/{id}/tier"),
        ),
        C::RevokeToken { id } => (Method::Post, format!("/api/v1/admin/tokens/{id}/revoke")),
    }
}

/// Percent-encode everything but unreserved characters (RFC 3986).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_and_filters_become_query_parameters() {
        assert_eq!(urlencode("linux 1/ä"), "linux%201%2F%C3%A4");
        let (_, path) = request(&AdminCommand::Drain {
            name: "mac mini".into(),
        });
        assert_eq!(path, "/api/v1/admin/workers/mac%20mini/drain");
        let (_, path) = request(&AdminCommand::Jobs {
            state: Some("failed,cancelled".into()),
            target: None,
            license: Some(7),
            account: None,
            since_minutes: None,
            limit: 20,
            cursor: None,
        });
        assert_eq!(
            path,
            "/api/v1/admin/jobs?limit=20&state=failed%2Ccancelled&license_id=7"
        );
    }
}

//! The audit trail: one `downloads` row per read that starts (who, what, when, how many bytes),
//! and the bookkeeping when a served body ends.
//!
//! The row is written *before* the response goes out, with the number of bytes the response
//! announces, so a download is on record even if the process dies mid-stream. When the body
//! ends early, [`Completion::interrupted`] corrects `bytes` to what was actually sent.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};
use shared::clock::now_ms;
use sqlx::AnyPool;
use tokio_util::task::TaskTracker;

use crate::tokens::TokenClaim;

/// Longest stored user agent, in characters (the column is `VARCHAR(255)`).
const MAX_USER_AGENT: usize = 255;

/// Who is reading: the client address and the `User-Agent` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// Client IP address (no port): the TCP peer, or behind a trusted proxy the last
    /// `X-Forwarded-For` entry; `None` when neither is known.
    pub addr: Option<String>,
    /// The `User-Agent`, without control characters, at most 255 characters.
    pub user_agent: Option<String>,
}

impl Client {
    /// From the connection's peer address and the request headers.
    pub fn new(peer: Option<SocketAddr>, headers: &HeaderMap, trust_forwarded_for: bool) -> Self {
        let forwarded = trust_forwarded_for
            .then(|| last_forwarded_for(headers))
            .flatten();
        let user_agent = headers.get(header::USER_AGENT).map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT)
                .collect::<String>()
        });
        Self {
            addr: forwarded.or(peer.map(|p| p.ip())).map(|ip| ip.to_string()),
            user_agent: user_agent.filter(|ua| !ua.is_empty()),
        }
    }
}

/// The last `X-Forwarded-For` entry: the one our proxy appended (earlier ones are the client's
/// word).
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// One read to record.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    /// `artifact` (streamed by the hub), `presigned` (redirected to S3) or `tarball`.
    pub kind: &'static str,
    pub job_id: &'a str,
    pub artifact_id: Option<&'a str>,
    pub attempt: Option<i32>,
    pub client: &'a Client,
    /// Bytes the response announces.
    pub bytes: u64,
}

/// Insert the audit row; returns its id.
pub(crate) async fn record(pool: &AnyPool, entry: &Entry<'_>) -> Result<i64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let done = sqlx::query(
        "INSERT INTO downloads \
         (kind, job_id, artifact_id, attempt, client_addr, user_agent, bytes, at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.kind)
    .bind(entry.job_id)
    .bind(entry.artifact_id)
    .bind(entry.attempt)
    .bind(entry.client.addr.as_deref())
    .bind(entry.client.user_agent.as_deref())
    .bind(i64::try_from(entry.bytes).unwrap_or(i64::MAX))
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    let id = shared::db::inserted_id(&mut conn, &done).await?;
    tracing::info!(
        kind = entry.kind,
        job_id = entry.job_id,
        artifact_id = entry.artifact_id,
        client = entry.client.addr.as_deref(),
        bytes = entry.bytes,
        "download started"
    );
    Ok(id)
}

/// What to do when a served body ends: commit or release the token claim, fix the audit row.
#[derive(Debug)]
pub(crate) struct Completion {
    pub kind: &'static str,
    pub pool: AnyPool,
    pub tracker: TaskTracker,
    /// The `downloads` row of this read.
    pub audit_id: i64,
    /// The download token being read with (artifact links only).
    pub claim: Option<TokenClaim>,
}

impl Completion {
    /// The last announced byte is about to be handed over: consume the token first (DEC-30).
    /// `true` when the read may complete; `false` when the token could not be consumed (this
    /// read's claim was taken over after it lapsed, or the database failed), and the body must
    /// end short. `sent` is what went out before the last chunk.
    pub(crate) async fn complete(mut self, sent: u64) -> bool {
        if let Some(claim) = self.claim.take() {
            if !claim.commit().await {
                self.interrupted(sent);
                return false;
            }
        }
        crate::count(self.kind, "completed");
        true
    }

    /// The body ended early (client gone, store failed): record what was sent and make the
    /// token usable again.
    pub(crate) fn interrupted(self, sent: u64) {
        crate::count(self.kind, "interrupted");
        tracing::warn!(kind = self.kind, sent, "download interrupted");
        let Self {
            pool,
            tracker,
            audit_id,
            claim,
            ..
        } = self;
        shared::runtime::spawn_tracked(&tracker, async move {
            let result = sqlx::query("UPDATE downloads SET bytes = ? WHERE id = ?")
                .bind(i64::try_from(sent).unwrap_or(i64::MAX))
                .bind(audit_id)
                .execute(&pool)
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "could not correct an interrupted download's audit row");
            }
            if let Some(claim) = claim {
                claim.release().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn client_keeps_the_ip_and_a_clean_bounded_user_agent() {
        let mut headers = HeaderMap::new();
        let ua = format!("perry/0.5\t{}", "x".repeat(400));
        headers.insert(header::USER_AGENT, HeaderValue::from_str(&ua).expect("ua"));
        let peer: SocketAddr = "10.1.2.3:45678".parse().expect("addr");
        let client = Client::new(Some(peer), &headers, false);
        assert_eq!(client.addr.as_deref(), Some("10.1.2.3"));
        let stored = client.user_agent.expect("ua");
        assert!(stored.starts_with("perry/0.5x"));
        assert_eq!(stored.chars().count(), MAX_USER_AGENT);
        assert_eq!(
            Client::new(None, &HeaderMap::new(), true),
            Client::default()
        );
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let peer: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.9"),
        );
        let addr = |h: &HeaderMap, trust| Client::new(Some(peer), h, trust).addr;
        assert_eq!(addr(&headers, true).as_deref(), Some("203.0.113.9"));
        assert_eq!(addr(&headers, false).as_deref(), Some("10.0.0.2"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(addr(&headers, true).as_deref(), Some("10.0.0.2"));
    }
}

//! `worker_hello`: the secret, the capabilities and concurrency a worker claims, and its row.

use shared::{clock::now_ms, db};

use crate::AppState;

/// Longest kept worker name, in characters (the `workers.name` column).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest kept compiler version, in characters (the `workers.perry_version` column).
pub const MAX_VERSION_CHARS: usize = 64;

/// A worker-supplied text as the hub keeps it (DEC-17): control characters removed, trimmed,
/// cut to `max` characters; `None` when nothing is left.
pub fn clean_text(text: Option<&str>, max: usize) -> Option<String> {
    let kept: String = text?
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(max)
        .collect();
    Some(kept.trim_end().to_owned()).filter(|t| !t.is_empty())
}

/// The name a worker is known by: its own, cleaned, else `worker-<random>`.
pub fn worker_name(name: Option<&str>) -> String {
    clean_text(name, MAX_NAME_CHARS)
        .unwrap_or_else(|| format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
}

/// Capabilities as the hub uses them: lower-case, known targets only, no duplicates.
pub fn normalize_capabilities(caps: Option<Vec<String>>) -> Vec<String> {
    let caps = caps.unwrap_or_else(|| vec!["macos".to_owned()]);
    let mut out: Vec<String> = Vec::new();
    for c in caps {
        let c = c.trim().to_ascii_lowercase();
        if shared::queue::TARGETS.contains(&c.as_str()) && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// `max_concurrent`: absent or < 1 means 1; at most 16.
pub fn clamp_concurrency(v: Option<i64>) -> usize {
    usize::try_from(v.unwrap_or(1).clamp(1, 16)).unwrap_or(1)
}

/// What a worker's secret allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The shared secret (or development mode without one): any capability.
    Any,
    /// An individual secret (`PERRY_HUB_WORKER_SECRETS`): its entry's name and capabilities.
    Only {
        /// The entry's name (for logs).
        secret_name: String,
        /// Capabilities it may claim.
        capabilities: Vec<String>,
    },
}

impl Grant {
    /// The first claimed capability this grant does not allow.
    pub fn denied<'a>(&self, claimed: &'a [String]) -> Option<&'a str> {
        match self {
            Self::Any => None,
            Self::Only { capabilities, .. } => claimed
                .iter()
                .find(|c| !capabilities.contains(c))
                .map(String::as_str),
        }
    }
}

/// What the presented secret allows, or `None` when it matches no secret. Every configured
/// secret is compared, in constant time.
pub(super) fn authorise(ctx: &AppState, presented: Option<&str>) -> Option<Grant> {
    let hub = &ctx.deps.hub;
    let presented = presented.unwrap_or_default();
    let shared = hub.worker_secret.matches(presented);
    let individual = hub.worker_secrets.find(presented);
    if shared {
        return Some(Grant::Any);
    }
    if let Some(entry) = individual {
        return Some(Grant::Only {
            secret_name: entry.name.clone(),
            capabilities: entry.capabilities.clone(),
        });
    }
    // No secret at all is only reachable in development mode (validated at start).
    (hub.worker_secret.is_empty() && hub.worker_secrets.is_empty() && hub.dev_mode)
        .then_some(Grant::Any)
}

pub(super) async fn record_hello(
    ctx: &AppState,
    id: &str,
    name: &str,
    caps: &[String],
    max: usize,
    version: Option<&str>,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workers (id, name, capabilities, max_concurrent, perry_version, dispatcher_id, connected_ms, last_seen_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(name)
    .bind(format!(",{},", caps.join(",")))
    .bind(i64::try_from(max).unwrap_or(1))
    .bind(version)
    .bind(&*ctx.instance_id)
    .bind(now)
    .bind(now)
    .execute(&ctx.deps.pool)
    .await
    .map(|_| ())
}

/// Whether an operator drained the worker called `name` (issue 17).
pub(super) async fn drained(ctx: &AppState, name: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM worker_drains WHERE name = ?")
        .bind(name)
        .fetch_optional(&ctx.deps.pool)
        .await?;
    Ok(found.is_some())
}

pub(super) async fn expected_version(ctx: &AppState) -> String {
    match db::get_setting(&ctx.deps.pool, db::SETTING_EXPECTED_VERSION).await {
        Ok(Some(v)) => v,
        _ => ctx.deps.hub.expected_version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_lowercased_filtered_and_defaulted() {
        assert_eq!(normalize_capabilities(None), vec!["macos"]);
        let caps = normalize_capabilities(Some(vec![
            "Linux".into(),
            "android".into(),
            "bogus".into(),
            "linux".into(),
            "windows-sign".into(),
        ]));
        assert_eq!(caps, vec!["linux", "android", "windows-sign"]);
    }

    #[test]
    fn names_and_versions_are_cleaned_and_bounded() {
        assert_eq!(worker_name(Some(" linux-1 ")), "linux-1");
        assert_eq!(worker_name(Some("a\u{1b}[31mb\nc\u{7}")), "a[31mbc");
        assert_eq!(worker_name(Some(&"é".repeat(300))).chars().count(), 255);
        assert!(worker_name(Some("\n\t ")).starts_with("worker-"));
        assert!(worker_name(None).starts_with("worker-"));
        let long = "9".repeat(100);
        assert_eq!(
            clean_text(Some(&long), MAX_VERSION_CHARS).map(|v| v.len()),
            Some(64)
        );
        assert_eq!(clean_text(Some(""), MAX_VERSION_CHARS), None);
    }

    #[test]
    fn an_individual_grant_denies_capabilities_outside_it() {
        let grant = Grant::Only {
            secret_name: "linux-1".into(),
            capabilities: vec!["linux".into(), "android".into()],
        };
        let claim = |caps: &[&str]| caps.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        assert_eq!(grant.denied(&claim(&["linux", "android"])), None);
        assert_eq!(
            grant.denied(&claim(&["linux", "ios-sign"])),
            Some("ios-sign")
        );
        assert_eq!(Grant::Any.denied(&claim(&["windows-sign"])), None);
    }

    #[test]
    fn concurrency_is_clamped() {
        assert_eq!(clamp_concurrency(None), 1);
        assert_eq!(clamp_concurrency(Some(0)), 1);
        assert_eq!(clamp_concurrency(Some(-5)), 1);
        assert_eq!(clamp_concurrency(Some(4)), 4);
        assert_eq!(clamp_concurrency(Some(1000)), 16);
    }
}

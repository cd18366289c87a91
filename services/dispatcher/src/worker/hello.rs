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

pub(super) fn authorised(ctx: &AppState, presented: Option<&str>) -> bool {
    let secret = &ctx.deps.hub.worker_secret;
    if secret.is_empty() {
        // Only reachable in development mode (validated at start).
        return ctx.deps.hub.dev_mode;
    }
    presented.is_some_and(|p| secret.matches(p))
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
    fn concurrency_is_clamped() {
        assert_eq!(clamp_concurrency(None), 1);
        assert_eq!(clamp_concurrency(Some(0)), 1);
        assert_eq!(clamp_concurrency(Some(-5)), 1);
        assert_eq!(clamp_concurrency(Some(4)), 4);
        assert_eq!(clamp_concurrency(Some(1000)), 16);
    }
}

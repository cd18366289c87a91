//! Licences (§3.2, §3.3): free device-bound registration, throttled per client address, per
//! device and in all (D7, DEC-17), and key verification. Keys are returned once and stored only
//! as hashes.

use std::net::{IpAddr, Ipv6Addr};

use axum::{body::Bytes, extract::State, http::HeaderMap, Json};
use protocol::{RegisterRequest, RegisterResponse, Tier, VerifyRequest, VerifyResponse};
use sha2::{Digest, Sha256};
use shared::{
    auth,
    clock::now_ms,
    db,
    http::{ApiError, ApiJson, ApiResult, PeerAddr},
};

use crate::{access, body, errors, keyguard::KeyGuard, limits, AppState};

/// The bucket every registration counts in (`PERRY_HUB_REGISTER_LIMIT_GLOBAL`).
const GLOBAL_BUCKET: &str = "register:all";

/// Longest accepted `github_username` / `device_id`.
const MAX_FIELD_LEN: usize = 255;

/// `POST /api/v1/license/register`: a new free, device-bound licence.
pub async fn register_license(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    raw: Bytes,
) -> ApiResult<Json<RegisterResponse>> {
    let request: RegisterRequest = body::optional_json(&raw)?;
    let username = clean_field(request.github_username.as_deref(), "github_username")?;
    let device = clean_field(request.device_id.as_deref(), "device_id")?;
    let settings = &state.settings;
    let addr = client_addr(peer.map(|p| p.ip()), &headers, settings.trust_forwarded_for);
    let mut buckets = vec![
        (
            format!("register:addr:{addr}"),
            settings.register_limit_per_addr,
        ),
        (GLOBAL_BUCKET.to_owned(), settings.register_limit_global),
    ];
    if let Some(device) = &device {
        buckets.push((
            format!(
                "register:device:{}",
                hex::encode(Sha256::digest(device.as_bytes()))
            ),
            settings.register_limit_per_device,
        ));
    }
    let window_ms =
        i64::try_from(settings.register_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Registrations sharing a bucket serialise on its row; losing a lock race is retried.
    let mut tries = 0;
    let (key, license_id) = loop {
        tries += 1;
        match try_register(&state, &buckets, username.as_deref(), window_ms).await {
            Ok(Some(done)) => break done,
            Ok(None) => {
                return Err(errors::rate_limited(
                    "Too many license registrations; try again later",
                ))
            }
            Err(e) if tries < 3 && db::is_deadlock(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(license_id, "free licence registered");
    Ok(Json(RegisterResponse {
        license_key: key,
        tier: Tier::Free,
        platforms: platforms(Tier::Free),
    }))
}

/// In one transaction: lock the buckets, check each against its limit, then create the licence
/// and record the hits. `None` when a bucket is full (nothing is written).
async fn try_register(
    state: &AppState,
    buckets: &[(String, u32)],
    username: Option<&str>,
    window_ms: i64,
) -> Result<Option<(String, u64)>, sqlx::Error> {
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    let now = now_ms();
    let names: Vec<&str> = buckets.iter().map(|(b, _)| b.as_str()).collect();
    limits::lock_buckets(&mut tx, &names, now).await?;
    for (bucket, limit) in buckets {
        if limits::hits_since(&mut tx, bucket, now.saturating_sub(window_ms)).await?
            >= u64::from(*limit)
        {
            tracing::warn!(
                bucket = bucket.split(':').nth(1).unwrap_or_default(),
                "licence registration throttled"
            );
            return Ok(None);
        }
    }
    let (key, hash) = auth::new_license_key("FREE");
    let res = sqlx::query(
        "INSERT INTO licenses (key_hash, key_hash_kind, tier, device_bound, github_username, created_ms) VALUES (?, ?, 'free', TRUE, ?, ?)",
    )
    .bind(&state.hashing.from_sha(&hash)[..])
    .bind(state.hashing.kind())
    .bind(username)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let id = shared::db::inserted_id(&mut tx, &res).await?;
    for bucket in names {
        limits::record_hit(&mut tx, bucket, now).await?;
    }
    tx.commit().await?;
    Ok(Some((key, u64::try_from(id).unwrap_or(0))))
}

/// `POST /api/v1/license/verify`: `{"valid":true,"tier","platforms"}` or the invalid answer.
/// Unknown keys count toward the address's key failures ([`crate::keyguard`]).
pub async fn verify_license(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyResponse>> {
    let addr = client_addr(
        peer.map(|p| p.ip()),
        &headers,
        state.settings.trust_forwarded_for,
    );
    let guard = KeyGuard::new(&state, &addr);
    let mut conn = state.deps.pool.acquire().await?;
    guard.check(&mut conn).await?;
    let Some(license) =
        access::license_by_key(&mut conn, &state.hashing, &request.license_key).await?
    else {
        guard.failed(&mut conn).await?;
        return Ok(Json(VerifyResponse::invalid()));
    };
    let tier = license.tier();
    Ok(Json(VerifyResponse {
        valid: true,
        tier: Some(tier),
        platforms: Some(platforms(tier)),
    }))
}

/// The platforms reported for a tier (A13: reported, not enforced).
pub fn platforms(tier: Tier) -> Vec<String> {
    tier.platforms().into_iter().map(str::to_owned).collect()
}

/// Trim an optional text field; empty counts as absent; over-long or control characters: 400.
fn clean_field(value: Option<&str>, name: &str) -> ApiResult<Option<String>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.len() > MAX_FIELD_LEN || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Invalid {name}: at most {MAX_FIELD_LEN} bytes, no control characters"
        )));
    }
    Ok(Some(v.to_owned()))
}

/// The client address used for throttling: the peer, or behind a trusted proxy the last
/// `X-Forwarded-For` entry (the one the proxy appended). An IPv6 client is known by its /64
/// (one subscriber's allocation; the low bits are free to change), an IPv4-mapped one by its
/// IPv4 address.
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap, trust_forwarded_for: bool) -> String {
    let forwarded = trust_forwarded_for
        .then(|| {
            headers
                .get("x-forwarded-for")?
                .to_str()
                .ok()?
                .rsplit(',')
                .next()?
                .trim()
                .parse::<IpAddr>()
                .ok()
        })
        .flatten();
    match forwarded.or(peer).map(|ip| ip.to_canonical()) {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{prefix}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let peer: Option<IpAddr> = "10.0.0.1".parse().ok();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 5.6.7.8"),
        );
        assert_eq!(client_addr(peer, &h, false), "10.0.0.1");
        assert_eq!(client_addr(peer, &h, true), "5.6.7.8");
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_addr(peer, &h, true), "10.0.0.1");
        assert_eq!(client_addr(None, &HeaderMap::new(), false), "unknown");
    }

    #[test]
    fn ipv6_clients_are_known_by_their_64() {
        let at = |ip: &str| client_addr(ip.parse().ok(), &HeaderMap::new(), false);
        assert_eq!(at("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(at("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_eq!(at("2001:db8:1:3::1"), "2001:db8:1:3::/64");
        assert_eq!(at("::ffff:1.2.3.4"), "1.2.3.4");
    }

    #[test]
    fn optional_fields_are_trimmed_and_bounded() {
        assert_eq!(clean_field(None, "x").unwrap(), None);
        assert_eq!(clean_field(Some("  "), "x").unwrap(), None);
        assert_eq!(
            clean_field(Some(" octo "), "x").unwrap().as_deref(),
            Some("octo")
        );
        assert!(clean_field(Some("a\u{0}b"), "x").is_err());
        assert!(clean_field(Some(&"a".repeat(256)), "x").is_err());
    }

    #[test]
    fn platforms_follow_the_tier() {
        assert_eq!(platforms(Tier::Free), vec!["macos"]);
        assert_eq!(platforms(Tier::Pro).len(), 5);
    }
}

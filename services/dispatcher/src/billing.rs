//! Overage billing (§6): a pro licence past its monthly limit whose account has a Polar
//! customer is billed one event per extra publish, when `POLAR_ACCESS_TOKEN` and
//! `POLAR_METER_PUBLISH` are set. Errors are only logged: billing never affects a build.

use std::time::Duration;

use shared::config::PolarConfig;
use sqlx::AnyConnection;

/// Whether the publish just counted for `license_id` is billable overage; returns the Polar
/// customer id to bill. Runs in the completion transaction.
pub async fn overage_customer(
    conn: &mut AnyConnection,
    license_id: i64,
    period: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String, Option<String>, i32)> = sqlx::query_as(
        "SELECT l.tier, a.polar_customer_id, u.publishes FROM licenses l \
         LEFT JOIN accounts a ON a.id = l.account_id AND a.deleted_ms IS NULL \
         JOIN license_usage u ON u.license_id = l.id AND u.period = ? WHERE l.id = ?",
    )
    .bind(period)
    .bind(license_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(tier, customer, publishes)| {
        let limit = protocol::Tier::Pro.monthly_publish_limit();
        let over = tier == "pro" && u32::try_from(publishes).unwrap_or(0) > limit;
        customer.filter(|c| over && !c.is_empty())
    }))
}

/// Send one overage event in the background (10 s timeout).
pub fn bill(polar: &PolarConfig, customer_id: &str, job_id: &str) {
    if !polar.enabled() {
        return;
    }
    let url = format!("{}/v1/events", polar.api_url.trim_end_matches('/'));
    let token = polar.access_token.clone();
    let body = serde_json::json!({"customer_id": customer_id, "meter_id": polar.meter_publish, "value": 1});
    let job_id = job_id.to_owned();
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(error) => {
                tracing::error!(%error, "cannot build the billing client");
                return;
            }
        };
        match client
            .post(&url)
            .bearer_auth(token.expose())
            .json(&body)
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(job_id, "overage publish billed")
            }
            Ok(resp) => tracing::warn!(job_id, status = %resp.status(), "overage billing refused"),
            Err(error) => {
                tracing::warn!(job_id, error = %error.without_url(), "overage billing failed")
            }
        }
    });
}

//! Licences (by key hash) and their monthly usage. A binding the hub made after an earlier import
//! is not a difference: the original having none means it has no opinion.

use shared::license_hash::LicenseHashing;
use sqlx::AnyPool;

use super::{differs, join, Links, Outcome, Plan, TablePlan, Write};
use crate::{
    map::{self, License},
    source::LegacyData,
    Result,
};

/// The hub's view of a licence.
#[derive(Debug, sqlx::FromRow)]
struct HubLicense {
    id: i64,
    tier: String,
    account_id: Option<String>,
    #[sqlx(try_from = "shared::db::Flag")]
    device_bound: bool,
    bound_project: Option<String>,
    github_username: Option<String>,
}

impl HubLicense {
    fn same_as(&self, l: &License, account_id: Option<&str>) -> bool {
        self.tier == l.tier.as_str()
            && self.account_id.as_deref() == account_id
            && self.device_bound == l.device_bound
            && (l.bound_project.is_none() || self.bound_project == l.bound_project)
            && self.github_username == l.github_username
    }
}

pub(super) async fn plan_licenses(
    data: &LegacyData,
    hub: &AnyPool,
    update: bool,
    now: i64,
    hashing: &LicenseHashing,
    links: &mut Links,
    plan: &mut Plan,
) -> Result<()> {
    let mut table = TablePlan::new("licenses");
    for row in &data.licenses {
        let hash = map::key_hash(row.key.expose());
        let label = hash.map_or_else(|| "empty key".to_owned(), |h| map::fingerprint(&h));
        let checked = map::license(row, now).and_then(|l| {
            if links.licenses.contains_key(&l.key_hash)
                || links.skipped_licenses.contains_key(&l.key_hash)
            {
                return Err("duplicate key (an earlier row has it once trimmed)".to_owned());
            }
            let account_id = account_link(l.legacy_account_id.as_deref(), links)?;
            Ok((l, account_id))
        });
        let (license, account_id) = match checked {
            Ok(ok) => ok,
            Err(reason) => {
                if let Some(h) = hash {
                    links.skipped_licenses.entry(h).or_insert(row.row);
                }
                table.push(row.row, label, Outcome::Skipped(reason), None);
                continue;
            }
        };
        let note = license.platforms_disagree.then(|| {
            format!(
                "platforms disagreed with tier {}; the tier decides",
                license.tier
            )
        });
        let found: Option<HubLicense> = sqlx::query_as(
            "SELECT id, tier, account_id, device_bound, bound_project, github_username \
             FROM licenses WHERE key_hash IN (?, ?) LIMIT 1",
        )
        .bind(&license.key_hash[..])
        .bind(&hashing.from_sha(&license.key_hash)[..])
        .fetch_optional(hub)
        .await?;
        let (outcome, extra) = match found {
            None => {
                links.licenses.insert(license.key_hash, None);
                let write = Write::InsertLicense {
                    license,
                    account_id,
                };
                plan.writes.push(write);
                (Outcome::Imported, None)
            }
            Some(found) => {
                links.licenses.insert(license.key_hash, Some(found.id));
                let (outcome, extra) =
                    differs(update, found.same_as(&license, account_id.as_deref()));
                if outcome == Outcome::Updated {
                    let id = found.id;
                    plan.writes.push(Write::UpdateLicense {
                        id,
                        license,
                        account_id,
                    });
                }
                (outcome, extra)
            }
        };
        table.push(row.row, label, outcome, join(note, extra));
    }
    plan.tables.push(table);
    Ok(())
}

/// The hub account a licence links to, or why it cannot be linked.
fn account_link(legacy: Option<&str>, links: &Links) -> Result<Option<String>, String> {
    let Some(id) = legacy else {
        return Ok(None);
    };
    if let Some(hub_id) = links.accounts.get(id) {
        return Ok(Some(hub_id.clone()));
    }
    Err(match links.skipped_accounts.get(id) {
        Some(reason) => format!("its account {id:?} was skipped ({reason})"),
        None => format!("links to account {id:?}, which the original does not have"),
    })
}

pub(super) async fn plan_usage(
    data: &LegacyData,
    hub: &AnyPool,
    update: bool,
    links: &Links,
    plan: &mut Plan,
) -> Result<()> {
    let mut table = TablePlan::new("license_usage");
    for row in &data.usage {
        let label = match map::key_hash(row.license_key.expose()) {
            Some(h) => format!("{}, period {:?}", map::fingerprint(&h), row.period),
            None => format!("empty key, period {:?}", row.period),
        };
        let usage = match map::usage(row) {
            Ok(u) => u,
            Err(reason) => {
                table.push(row.row, label, Outcome::Skipped(reason), None);
                continue;
            }
        };
        let license_id = match links.licenses.get(&usage.key_hash) {
            Some(id) => *id,
            None => {
                let reason = match links.skipped_licenses.get(&usage.key_hash) {
                    Some(r) => format!("its licence (licenses row {r}) was skipped"),
                    None => "no licence with this key".to_owned(),
                };
                table.push(row.row, label, Outcome::Skipped(reason), None);
                continue;
            }
        };
        let counted: Option<i32> = match license_id {
            Some(id) => {
                sqlx::query_scalar(
                    "SELECT publishes FROM license_usage WHERE license_id = ? AND period = ?",
                )
                .bind(id)
                .bind(&usage.period)
                .fetch_optional(hub)
                .await?
            }
            None => None,
        };
        let (outcome, note) = match counted {
            None => {
                plan.writes.push(Write::InsertUsage(usage));
                (Outcome::Imported, None)
            }
            Some(n) if update && n > usage.publishes => (
                Outcome::Unchanged,
                Some(format!("the hub counts {n}, more than the original; kept")),
            ),
            Some(n) => {
                let (outcome, note) = differs(update, n == usage.publishes);
                if outcome == Outcome::Updated {
                    plan.writes.push(Write::RaiseUsage(usage));
                }
                (outcome, note)
            }
        };
        table.push(row.row, label, outcome, note);
    }
    plan.tables.push(table);
    Ok(())
}

//! Accounts and their API tokens. An account already on the hub is found by id, else by GitHub
//! id (someone who signed in on the hub before the import): the original's licences and token
//! then attach to that hub account.

use std::collections::HashSet;

use shared::config::Secret;
use sqlx::AnyPool;

use super::{differs, Links, Outcome, Plan, TablePlan, Write};
use crate::{
    map::{self, Account},
    source::LegacyData,
    Result,
};

/// The hub's view of an account.
#[derive(Debug, sqlx::FromRow)]
struct HubAccount {
    id: String,
    github_username: String,
    email: Option<String>,
    tier: String,
    #[sqlx(try_from = "shared::db::Flag")]
    has_payment_method: bool,
    polar_customer_id: Option<String>,
    polar_subscription_id: Option<String>,
    deleted_ms: Option<i64>,
}

impl HubAccount {
    fn same_as(&self, a: &Account) -> bool {
        self.github_username == a.github_username
            && self.email == a.email
            && self.tier == a.tier.as_str()
            && self.has_payment_method == a.has_payment_method
            && self.polar_customer_id == a.polar_customer_id
            && self.polar_subscription_id == a.polar_subscription_id
    }
}

const SELECT: &str = "SELECT id, github_username, email, tier, has_payment_method, \
    polar_customer_id, polar_subscription_id, deleted_ms FROM accounts";

pub(super) async fn plan(
    data: &LegacyData,
    hub: &AnyPool,
    update: bool,
    now: i64,
    links: &mut Links,
    plan: &mut Plan,
) -> Result<()> {
    let mut accounts = TablePlan::new("accounts");
    let mut tokens = TablePlan::new("api_tokens");
    let mut github_ids = HashSet::new();
    let mut token_hashes = HashSet::new();
    for row in &data.accounts {
        let label = format!("id {:?}", row.id.trim());
        let mapped = map::account(row, now).and_then(|a| {
            if github_ids.insert(a.github_id.clone()) {
                Ok(a)
            } else {
                Err("duplicate github_id (an earlier row has it)".into())
            }
        });
        let account = match mapped {
            Ok(a) => a,
            Err(reason) => {
                skip_token(row.api_token.as_ref(), &label, row.row, &mut tokens);
                links
                    .skipped_accounts
                    .insert(row.id.clone(), reason.clone());
                accounts.push(row.row, label, Outcome::Skipped(reason), None);
                continue;
            }
        };
        let (hub_id, outcome, note) = match find(hub, &account).await? {
            None => {
                plan.writes.push(Write::InsertAccount(account.clone()));
                (account.id.clone(), Outcome::Imported, None)
            }
            Some(found) if found.deleted_ms.is_some() => {
                let reason = "the hub's account with this id or github_id was deleted".to_owned();
                skip_token(row.api_token.as_ref(), &label, row.row, &mut tokens);
                links
                    .skipped_accounts
                    .insert(row.id.clone(), reason.clone());
                accounts.push(row.row, label, Outcome::Skipped(reason), None);
                continue;
            }
            Some(found) => {
                let (outcome, mut note) = differs(update, found.same_as(&account));
                if outcome == Outcome::Updated {
                    let mut updated = account.clone();
                    updated.id.clone_from(&found.id);
                    plan.writes.push(Write::UpdateAccount(updated));
                }
                if found.id != account.id {
                    let matched = format!("matched by github_id to hub account {}", found.id);
                    note = super::join(Some(matched), note);
                }
                (found.id, outcome, note)
            }
        };
        links.accounts.insert(row.id.clone(), hub_id.clone());
        accounts.push(row.row, label.clone(), outcome, note);
        if let Some(hash) = account.token_hash {
            let label = format!("{}, account {label}", map::fingerprint(&hash));
            let outcome = if !token_hashes.insert(hash) {
                Outcome::Skipped("duplicate token (an earlier account has it)".into())
            } else {
                token_outcome(hub, &hash, &hub_id).await?
            };
            if outcome == Outcome::Imported {
                plan.writes.push(Write::InsertToken {
                    account_id: hub_id,
                    token_hash: hash,
                    created_ms: account.created_ms,
                });
            }
            tokens.push(row.row, label, outcome, None);
        }
    }
    plan.tables.push(accounts);
    plan.tables.push(tokens);
    Ok(())
}

/// The hub's account with this id, else with this GitHub id.
async fn find(hub: &AnyPool, account: &Account) -> Result<Option<HubAccount>> {
    let by_id = sqlx::query_as(&format!("{SELECT} WHERE id = ?"))
        .bind(&account.id)
        .fetch_optional(hub)
        .await?;
    if by_id.is_some() {
        return Ok(by_id);
    }
    Ok(sqlx::query_as(&format!("{SELECT} WHERE github_id = ?"))
        .bind(&account.github_id)
        .fetch_optional(hub)
        .await?)
}

/// Import a token unless the hub has it: for this account (unchanged) or another (skipped).
async fn token_outcome(hub: &AnyPool, hash: &[u8; 32], account_id: &str) -> Result<Outcome> {
    let owner: Option<String> =
        sqlx::query_scalar("SELECT account_id FROM api_tokens WHERE token_hash = ?")
            .bind(&hash[..])
            .fetch_optional(hub)
            .await?;
    Ok(match owner {
        None => Outcome::Imported,
        Some(owner) if owner == account_id => Outcome::Unchanged,
        Some(_) => Outcome::Skipped("duplicate token (another hub account has it)".into()),
    })
}

/// The token of a skipped account is skipped too.
fn skip_token(token: Option<&Secret>, account: &str, row: usize, tokens: &mut TablePlan) {
    if let Some(hash) = token.and_then(|t| map::key_hash(t.expose())) {
        let label = format!("{}, account {account}", map::fingerprint(&hash));
        let reason = Outcome::Skipped("its account was skipped".into());
        tokens.push(row, label, reason, None);
    }
}

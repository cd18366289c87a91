//! Deciding, row by row, what the import does given what the hub already holds: import,
//! leave unchanged (also when the hub's row differs, unless `--update`), update, or skip with a
//! reason. Only reads the hub; the writes are carried out by [`crate::write`].
//!
//! Tables are planned in dependency order (accounts and their tokens, licences, usage, builds),
//! so a row whose parent was skipped is skipped too, naming why.

mod accounts;
mod builds;
mod licenses;

use std::collections::HashMap;

use shared::{clock::now_ms, license_hash::LicenseHashing};
use sqlx::AnyPool;

use crate::{
    map::{Account, License, Usage},
    source::LegacyData,
    Result,
};

pub use builds::Job;

/// What happens to one source row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Created in the hub.
    Imported,
    /// Already in the hub (identical, or different and left alone).
    Unchanged,
    /// Overwritten in the hub (`--update`).
    Updated,
    /// Not imported, with the reason.
    Skipped(String),
}

/// One source row's outcome, named without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOutcome {
    /// 1-based position in the source table.
    pub row: usize,
    /// A non-secret name (an id, or a hash prefix of a key or token).
    pub label: String,
    /// What happens.
    pub outcome: Outcome,
    /// Something worth knowing that is not a skip (e.g. platforms that disagreed with the tier).
    pub note: Option<String>,
}

/// The outcomes of one hub table.
#[derive(Debug, Clone, Default)]
pub struct TablePlan {
    /// Hub table name.
    pub name: &'static str,
    /// One entry per source row that maps to this table.
    pub rows: Vec<RowOutcome>,
}

impl TablePlan {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: usize, label: String, outcome: Outcome, note: Option<String>) {
        self.rows.push(RowOutcome {
            row,
            label,
            outcome,
            note,
        });
    }
}

/// One change to the hub.
#[derive(Debug, Clone)]
pub enum Write {
    /// A new account.
    InsertAccount(Account),
    /// Overwrite an account's profile, tier and billing fields (`id` is the hub's).
    UpdateAccount(Account),
    /// A new API token for a hub account.
    InsertToken {
        account_id: String,
        token_hash: [u8; 32],
        created_ms: i64,
    },
    /// A new licence linked to a hub account id, if any.
    InsertLicense {
        license: License,
        account_id: Option<String>,
    },
    /// Overwrite a licence (a binding already made on the hub is kept when the original has none).
    UpdateLicense {
        id: i64,
        license: License,
        account_id: Option<String>,
    },
    /// A month of usage for the licence with this key hash.
    InsertUsage(Usage),
    /// Raise a month's count to the original's (a count never goes down).
    RaiseUsage(Usage),
    /// A finished job.
    InsertJob(Job),
}

/// The plan: outcomes per table and the writes that carry them out.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// accounts, api_tokens, licenses, license_usage, and jobs when history was asked for.
    pub tables: Vec<TablePlan>,
    /// Writes in dependency order.
    pub writes: Vec<Write>,
}

/// What earlier tables decided, for the rows that depend on them.
#[derive(Debug, Default)]
struct Links {
    /// Original account id → hub account id, for accounts not skipped.
    accounts: HashMap<String, String>,
    /// Skip reasons of original accounts.
    skipped_accounts: HashMap<String, String>,
    /// Key hash → hub licence id (`None` until the licence is inserted), for licences not skipped.
    licenses: HashMap<[u8; 32], Option<i64>>,
    /// Key hash → row of a skipped licence.
    skipped_licenses: HashMap<[u8; 32], usize>,
}

/// Plan the import of `data` into the hub at `hub`.
pub async fn build(
    data: &LegacyData,
    hub: &AnyPool,
    update: bool,
    hashing: &LicenseHashing,
) -> Result<Plan> {
    let now = now_ms();
    let mut plan = Plan::default();
    let mut links = Links::default();
    accounts::plan(data, hub, update, now, &mut links, &mut plan).await?;
    licenses::plan_licenses(data, hub, update, now, hashing, &mut links, &mut plan).await?;
    licenses::plan_usage(data, hub, update, &links, &mut plan).await?;
    if let Some(rows) = &data.builds {
        builds::plan(rows, hub, &links, now, &mut plan).await?;
    }
    Ok(plan)
}

/// `note` unless the row is left alone while it differs from the hub's, which is noted instead.
fn differs(update: bool, same: bool) -> (Outcome, Option<String>) {
    match (same, update) {
        (true, _) => (Outcome::Unchanged, None),
        (false, true) => (Outcome::Updated, None),
        (false, false) => (
            Outcome::Unchanged,
            Some("differs from the hub's row; left alone (use --update to overwrite)".into()),
        ),
    }
}

/// Join two optional notes.
fn join(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

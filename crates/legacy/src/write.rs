//! Carrying out a plan in one transaction: either everything is written or nothing is. Licences
//! created in the same run are found again by their key hash. No queued work is ever created:
//! imported jobs are terminal and nothing is put in the outbox.

use shared::license_hash::LicenseHashing;
use sqlx::{AnyConnection, AnyPool};

use crate::{
    map::{Account, Usage},
    plan::{Job, Write},
    Error, Result,
};

/// Apply `writes` in order, in one transaction.
pub async fn apply(hub: &AnyPool, writes: &[Write], hashing: &LicenseHashing) -> Result<()> {
    let mut tx = shared::db::begin(hub).await?;
    for write in writes {
        one(&mut tx, write, hashing).await.map_err(|e| match e {
            sqlx::Error::Database(ref d) if d.is_unique_violation() => Error::Conflict(e),
            other => Error::Target(other),
        })?;
    }
    tx.commit().await?;
    tracing::info!(writes = writes.len(), "legacy import written");
    Ok(())
}

async fn one(
    conn: &mut AnyConnection,
    write: &Write,
    hashing: &LicenseHashing,
) -> Result<(), sqlx::Error> {
    match write {
        Write::InsertAccount(a) => insert_account(conn, a).await,
        Write::UpdateAccount(a) => update_account(conn, a).await,
        Write::InsertToken {
            account_id,
            token_hash,
            created_ms,
        } => sqlx::query(
            "INSERT INTO api_tokens (account_id, token_hash, created_ms) VALUES (?, ?, ?)",
        )
        .bind(account_id)
        .bind(&token_hash[..])
        .bind(created_ms)
        .execute(conn)
        .await
        .map(drop),
        Write::InsertLicense {
            license: l,
            account_id,
        } => sqlx::query(
            "INSERT INTO licenses (key_hash, key_hash_kind, tier, account_id, device_bound, \
             bound_project, github_username, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&hashing.from_sha(&l.key_hash)[..])
        .bind(hashing.kind())
        .bind(l.tier.as_str())
        .bind(account_id)
        .bind(l.device_bound)
        .bind(&l.bound_project)
        .bind(&l.github_username)
        .bind(l.created_ms)
        .execute(conn)
        .await
        .map(drop),
        Write::UpdateLicense {
            id,
            license: l,
            account_id,
        } => sqlx::query(
            "UPDATE licenses SET tier = ?, account_id = ?, device_bound = ?, \
             bound_project = COALESCE(?, bound_project), github_username = ? WHERE id = ?",
        )
        .bind(l.tier.as_str())
        .bind(account_id)
        .bind(l.device_bound)
        .bind(&l.bound_project)
        .bind(&l.github_username)
        .bind(id)
        .execute(conn)
        .await
        .map(drop),
        Write::InsertUsage(u) => insert_usage(conn, u, hashing).await,
        Write::RaiseUsage(u) => raise_usage(conn, u, hashing).await,
        Write::InsertJob(job) => insert_job(conn, job, hashing).await,
    }
}

async fn insert_account(conn: &mut AnyConnection, a: &Account) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO accounts (id, github_id, github_username, email, tier, has_payment_method, \
         polar_customer_id, polar_subscription_id, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&a.id)
    .bind(&a.github_id)
    .bind(&a.github_username)
    .bind(&a.email)
    .bind(a.tier.as_str())
    .bind(a.has_payment_method)
    .bind(&a.polar_customer_id)
    .bind(&a.polar_subscription_id)
    .bind(a.created_ms)
    .execute(conn)
    .await
    .map(drop)
}

async fn update_account(conn: &mut AnyConnection, a: &Account) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET github_username = ?, email = ?, tier = ?, has_payment_method = ?, \
         polar_customer_id = ?, polar_subscription_id = ? WHERE id = ?",
    )
    .bind(&a.github_username)
    .bind(&a.email)
    .bind(a.tier.as_str())
    .bind(a.has_payment_method)
    .bind(&a.polar_customer_id)
    .bind(&a.polar_subscription_id)
    .bind(&a.id)
    .execute(&mut *conn)
    .await?;
    // Platforms and limits follow the tier; the hub keeps linked licences in step (D28).
    sqlx::query("UPDATE licenses SET tier = ? WHERE account_id = ?")
        .bind(a.tier.as_str())
        .bind(&a.id)
        .execute(conn)
        .await
        .map(drop)
}

/// A month of usage for a licence found by key hash (an error when it matched nothing).
async fn insert_usage(
    conn: &mut AnyConnection,
    u: &Usage,
    hashing: &LicenseHashing,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO license_usage (license_id, period, publishes) \
         SELECT id, ?, ? FROM licenses WHERE key_hash = ?",
    )
    .bind(&u.period)
    .bind(u.publishes)
    .bind(&hashing.from_sha(&u.key_hash)[..])
    .execute(conn)
    .await?;
    one_row(done.rows_affected())
}

/// Raise a month's count to the original's; a count never goes down.
async fn raise_usage(
    conn: &mut AnyConnection,
    u: &Usage,
    hashing: &LicenseHashing,
) -> Result<(), sqlx::Error> {
    sqlx::query(&shared::db::sql(
        shared::db::Dialect::of(conn),
        "UPDATE license_usage SET publishes = GREATEST(publishes, ?) \
         WHERE period = ? AND license_id = (SELECT id FROM licenses WHERE key_hash = ?)",
    ))
    .bind(u.publishes)
    .bind(&u.period)
    .bind(&hashing.from_sha(&u.key_hash)[..])
    .execute(conn)
    .await
    .map(drop)
}

fn one_row(affected: u64) -> Result<(), sqlx::Error> {
    match affected {
        0 => Err(sqlx::Error::RowNotFound),
        _ => Ok(()),
    }
}

async fn insert_job(
    conn: &mut AnyConnection,
    j: &Job,
    hashing: &LicenseHashing,
) -> Result<(), sqlx::Error> {
    let key_hash = hashing.from_sha(&j.key_hash);
    let finished = job::transition::FinishedJob {
        id: &j.id,
        license_key_hash: &key_hash,
        target: &j.target,
        state: j.state,
        priority: j.priority,
        manifest: &j.manifest,
        attempt: j.attempt,
        worker_name: j.worker_name.as_deref(),
        error_message: j.error_message.as_deref(),
        times: (j.enqueued_ms, j.started_ms, j.finished_ms),
    };
    one_row(job::transition::record_finished(conn, &finished).await?)
}

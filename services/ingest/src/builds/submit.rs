//! Accepting a build: the pre-store gate (checks 4–7, idempotent replays) and the one
//! transaction that creates the job.
//!
//! Under the licence's row lock (so concurrent submissions of one licence see each other) the
//! transaction repeats the replay lookup and checks 6–8, then binds a device licence's project,
//! records the rate hit, inserts the job `queued` with its sealed credentials and announces it
//! through the outbox. A Bearer submission from an account without a licence creates its
//! (not device-bound) licence here, and syncs the licence's tier with the account's.

use job::{
    transition::{self, NewJob},
    Priority,
};
use protocol::{BuildResponse, Tier};
use shared::license_hash::LicenseHashing;
use shared::{
    auth,
    clock::{self, now_ms},
    http::ApiResult,
    metrics,
};
use sqlx::AnyConnection;

use super::{Intake, Parsed, Tarball};
use crate::{
    access::{LicenseRow, Principal, LICENSE_COLUMNS},
    errors, limits,
    manifest::BuildManifest,
};

/// The WebSocket URL the CLI derives its socket from (A1: relative, on the public origin).
pub const WS_URL: &str = "/ws";

/// The answer for a job.
pub fn answer(job_id: String, position: u64) -> BuildResponse {
    BuildResponse {
        job_id,
        ws_url: WS_URL.to_owned(),
        position,
    }
}

/// Checks 4–7 before storing anything (records nothing). `Some` is an idempotent replay.
pub async fn gate(
    intake: &Intake<'_>,
    principal: &Principal,
    manifest: &BuildManifest,
) -> ApiResult<Option<BuildResponse>> {
    let Some(license) = principal.license() else {
        return Ok(None);
    };
    let mut conn = intake.state.deps.pool.acquire().await?;
    if let Some(key) = intake.idempotency_key {
        if let Some(answer) = replay(&mut conn, license.id, key).await? {
            return Ok(Some(answer));
        }
    }
    let self_hosted = intake.state.deps.hub.self_hosted;
    limits::admit(
        &mut conn,
        license,
        principal.tier(),
        &manifest.project,
        self_hosted,
    )
    .await?;
    Ok(None)
}

/// How often the job's transaction runs before a lost lock race is answered with 503.
const LOCK_RACE_TRIES: u32 = 4;

/// Create the job (or answer a replay, or refuse with checks 6–8).
///
/// Submissions of one licence serialise on its row and share the rate buckets' rows, so under
/// load InnoDB may pick the transaction as a deadlock victim: it is rolled back whole and run
/// again, after a short random pause, rather than answered with an error.
pub async fn accept(intake: &Intake<'_>, parsed: Parsed) -> ApiResult<BuildResponse> {
    let state = intake.state;
    let put = match &parsed.tarball {
        Tarball::Stored(put) => put,
        Tarball::OverCap => {
            if let Some(answer) = gate(intake, &parsed.principal, &parsed.manifest).await? {
                return Ok(answer);
            }
            return Err(errors::too_large(
                "Tarball",
                state.settings.tarball_cap(parsed.principal.tier()),
            ));
        }
    };
    let mut tries = 0;
    loop {
        tries += 1;
        match create(intake, &parsed, put).await {
            Err(e) if e.lock_conflict && tries < LOCK_RACE_TRIES => {
                tracing::debug!(
                    job_id = intake.job_id,
                    tries,
                    "submission lost a lock race; running it again"
                );
                let pause_ms = 5 * u64::from(tries) + u64::from(rand::random::<u8>() % 20);
                tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
            }
            done => return done,
        }
    }
}

/// One run of the job's transaction.
async fn create(
    intake: &Intake<'_>,
    parsed: &Parsed,
    put: &blob::PutResult,
) -> ApiResult<BuildResponse> {
    let state = intake.state;
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    let (license, tier) = lock_license(&mut tx, &state.hashing, &parsed.principal).await?;
    if let Some(key) = intake.idempotency_key {
        if let Some(answer) = replay(&mut tx, license.id, key).await? {
            return Ok(answer);
        }
    }
    let manifest = &parsed.manifest;
    limits::admit(
        &mut tx,
        &license,
        tier,
        &manifest.project,
        state.deps.hub.self_hosted,
    )
    .await?;
    let cap = state.settings.tarball_cap(tier);
    if put.size > cap {
        return Err(errors::too_large("Tarball", cap));
    }
    let now = now_ms();
    // The row is locked: a licence bound already (or not device-bound) needs no write.
    if license.device_bound && license.account_id.is_none() && license.bound_project.is_none() {
        sqlx::query(
            "UPDATE licenses SET bound_project = ? WHERE id = ? AND device_bound = TRUE AND account_id IS NULL AND bound_project IS NULL",
        )
        .bind(&manifest.project)
        .bind(license.id)
        .execute(&mut *tx)
        .await?;
    }
    if !state.deps.hub.self_hosted {
        // A self-hosted hub has no hourly limit (`limits::admit`): nothing would read the hit.
        limits::record_hit(&mut tx, &limits::build_bucket(license.id), now).await?;
    }
    let sealed = match &parsed.credentials {
        Some(plain) => Some(
            state
                .cipher
                .seal(plain, intake.job_id.as_bytes())
                .map_err(|e| shared::http::ApiError::internal(&e))?,
        ),
        None => None,
    };
    let priority = Priority(tier.priority());
    let size = i64::try_from(put.size).unwrap_or(i64::MAX);
    let sha256 = put.sha256_hex();
    let new = NewJob {
        id: intake.job_id,
        license_id: license.id,
        project: &manifest.project,
        target: &manifest.target,
        priority,
        manifest: &manifest.text,
        credentials_enc: sealed,
        input: (intake.tarball.key(), size, &sha256),
        idempotency_key: intake.idempotency_key,
        now_ms: now,
    };
    match transition::submit(&mut tx, &new).await {
        Ok(()) => {}
        Err(shared::queue::Error::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            // A concurrent retry with the same Idempotency-Key won the race: answer its job.
            tx.rollback().await?;
            let mut conn = state.deps.pool.acquire().await?;
            let winner = match intake.idempotency_key {
                Some(key) => replay(&mut conn, license.id, key).await?,
                None => None,
            };
            return winner.ok_or_else(|| shared::http::ApiError::internal(&e));
        }
        Err(e) => return Err(e.into()),
    }
    let position =
        job::queue_position(&mut tx, new.target, new.id, new.priority, new.now_ms).await?;
    tx.commit().await?;
    state.deps.notify_outbox();
    metrics::get()
        .bytes_in
        .get_or_create(&metrics::label("kind", "tarball"))
        .inc_by(put.size);
    tracing::info!(
        job_id = intake.job_id,
        license_id = license.id,
        target = %manifest.target,
        size = put.size,
        position,
        "build accepted"
    );
    Ok(answer(intake.job_id.to_owned(), position))
}

/// The job a licence created with this idempotency key, if any.
async fn replay(
    conn: &mut AnyConnection,
    license_id: i64,
    key: &str,
) -> Result<Option<BuildResponse>, sqlx::Error> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE license_id = ? AND idempotency_key = ?")
            .bind(license_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(job) = (match id {
        Some(id) => job::load(conn, &id).await?,
        None => None,
    }) else {
        return Ok(None);
    };
    let position = job::position(conn, &job).await?;
    tracing::info!(job_id = %job.id, license_id, "idempotent build retry answered with the first job");
    Ok(Some(answer(job.id, position)))
}

/// Lock the submitting licence for the transaction; on the Bearer path, find or create the
/// account's licence and sync its tier. Returns the licence and the tier that applies.
async fn lock_license(
    tx: &mut AnyConnection,
    hashing: &LicenseHashing,
    principal: &Principal,
) -> ApiResult<(LicenseRow, Tier)> {
    let dialect = shared::db::Dialect::of(tx);
    let by_id = format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = ? FOR UPDATE");
    let by_id = shared::db::sql(dialect, &by_id);
    match principal {
        Principal::Key(license) => {
            let row: LicenseRow = sqlx::query_as(&by_id)
                .bind(license.id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(errors::license_invalid)?;
            let tier = row.tier();
            Ok((row, tier))
        }
        Principal::Account { account, .. } => {
            let tier: Option<String> = sqlx::query_scalar(&shared::db::sql(
                dialect,
                "SELECT tier FROM accounts WHERE id = ? AND deleted_ms IS NULL FOR UPDATE",
            ))
            .bind(&account.id)
            .fetch_optional(&mut *tx)
            .await?;
            let tier = Tier::parse(&tier.ok_or_else(errors::auth_invalid)?).unwrap_or_default();
            let oldest = format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE account_id = ? ORDER BY id LIMIT 1 FOR UPDATE");
            let oldest = shared::db::sql(dialect, &oldest);
            let existing: Option<LicenseRow> = sqlx::query_as(&oldest)
                .bind(&account.id)
                .fetch_optional(&mut *tx)
                .await?;
            let mut license = match existing {
                Some(l) => l,
                None => {
                    create_account_license(tx, hashing, &account.id, &account.github_username, tier)
                        .await?
                }
            };
            if license.tier() != tier {
                sqlx::query("UPDATE licenses SET tier = ? WHERE id = ?")
                    .bind(tier.as_str())
                    .bind(license.id)
                    .execute(&mut *tx)
                    .await?;
                license.tier = tier.as_str().to_owned();
            }
            Ok((license, tier))
        }
    }
}

/// An account's first licence: not device-bound; its key is never shown (the account uses its
/// API token).
async fn create_account_license(
    tx: &mut AnyConnection,
    hashing: &LicenseHashing,
    account_id: &str,
    username: &str,
    tier: Tier,
) -> ApiResult<LicenseRow> {
    let prefix = if tier == Tier::Pro { "PRO" } else { "FREE" };
    let (_key, hash) = auth::new_license_key(prefix);
    let res = sqlx::query(
        "INSERT INTO licenses (key_hash, key_hash_kind, tier, account_id, device_bound, github_username, created_ms) VALUES (?, ?, ?, ?, FALSE, ?, ?)",
    )
    .bind(&hashing.from_sha(&hash)[..])
    .bind(hashing.kind())
    .bind(tier.as_str())
    .bind(account_id)
    .bind(username)
    .bind(clock::now_ms())
    .execute(&mut *tx)
    .await?;
    let id = shared::db::inserted_id(tx, &res).await?;
    tracing::info!(
        license_id = id,
        account_id,
        "licence created for an account"
    );
    Ok(LicenseRow {
        id,
        tier: tier.as_str().to_owned(),
        account_id: Some(account_id.to_owned()),
        device_bound: false,
        bound_project: None,
    })
}

-- The schema of the embedded single-box database: the same tables, columns and keys as the
-- MySQL migrations in ../migrations add up to, in SQLite's types. Booleans are 0/1 integers,
-- as they are in MySQL's SMALLINT columns; key hashes are 32-byte blobs.

CREATE TABLE accounts (
    id                     TEXT    NOT NULL PRIMARY KEY,
    github_id              TEXT    NOT NULL UNIQUE,
    github_username        TEXT    NOT NULL,
    email                  TEXT    NULL,
    tier                   TEXT    NOT NULL DEFAULT 'free',
    has_payment_method     INTEGER NOT NULL DEFAULT 0,
    polar_customer_id      TEXT    NULL,
    polar_subscription_id  TEXT    NULL,
    created_ms             INTEGER NOT NULL,
    deleted_ms             INTEGER NULL
);

CREATE TABLE api_tokens (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT    NOT NULL REFERENCES accounts (id),
    token_hash  BLOB    NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER NULL
);
CREATE INDEX ix_api_tokens_account ON api_tokens (account_id);

CREATE TABLE licenses (
    id               INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    key_hash         BLOB    NOT NULL UNIQUE,
    tier             TEXT    NOT NULL,
    account_id       TEXT    NULL REFERENCES accounts (id),
    device_bound     INTEGER NOT NULL DEFAULT 1,
    bound_project    TEXT    NULL,
    github_username  TEXT    NULL,
    created_ms       INTEGER NOT NULL,
    key_hash_kind    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ix_licenses_account ON licenses (account_id, id);

CREATE TABLE license_usage (
    license_id  INTEGER NOT NULL REFERENCES licenses (id),
    period      TEXT    NOT NULL,
    publishes   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (license_id, period)
);

CREATE TABLE rate_events (
    id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    bucket  TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX ix_rate_events_bucket ON rate_events (bucket, at_ms);
CREATE INDEX ix_rate_events_at ON rate_events (at_ms);

CREATE TABLE rate_buckets (
    bucket      TEXT    NOT NULL PRIMARY KEY,
    touched_ms  INTEGER NOT NULL
);
CREATE INDEX ix_rate_buckets_touched ON rate_buckets (touched_ms);

CREATE TABLE jobs (
    id                 TEXT    NOT NULL PRIMARY KEY,
    license_id         INTEGER NOT NULL REFERENCES licenses (id),
    project            TEXT    NOT NULL,
    original_target    TEXT    NOT NULL,
    target             TEXT    NOT NULL,
    stage              INTEGER NOT NULL DEFAULT 1,
    state              TEXT    NOT NULL,
    priority           INTEGER NOT NULL,
    manifest           TEXT    NOT NULL,
    credentials_enc    BLOB    NULL,
    input_key          TEXT    NULL,
    input_size         INTEGER NULL,
    input_sha256       TEXT    NULL,
    attempt            INTEGER NOT NULL DEFAULT 0,
    retries            INTEGER NOT NULL DEFAULT 0,
    token_hash         BLOB    NULL,
    worker_id          TEXT    NULL,
    worker_name        TEXT    NULL,
    dispatcher_id      TEXT    NULL,
    lease_expires_ms   INTEGER NULL,
    cancel_requested   INTEGER NOT NULL DEFAULT 0,
    error_reported     INTEGER NOT NULL DEFAULT 0,
    failure_kind       TEXT    NULL,
    error_message      TEXT    NULL,
    needs_finishing    TEXT    NULL,
    usage_counted      INTEGER NOT NULL DEFAULT 0,
    idempotency_key    TEXT    NULL,
    event_seq          INTEGER NOT NULL DEFAULT 0,
    enqueued_ms        INTEGER NOT NULL,
    queued_ms          INTEGER NULL,
    created_ms         INTEGER NOT NULL,
    assigned_ms        INTEGER NULL,
    started_ms         INTEGER NULL,
    finished_ms        INTEGER NULL,
    sealed_credentials INTEGER NULL,
    UNIQUE (license_id, idempotency_key)
);
CREATE INDEX ix_jobs_queue ON jobs (state, target, priority, enqueued_ms);
CREATE INDEX ix_jobs_lease ON jobs (state, lease_expires_ms);
CREATE INDEX ix_jobs_license ON jobs (license_id, state);
CREATE INDEX ix_jobs_finished ON jobs (finished_ms);
CREATE INDEX ix_jobs_token ON jobs (token_hash);
CREATE INDEX ix_jobs_input_key ON jobs (input_key);
CREATE INDEX ix_jobs_created ON jobs (created_ms);

CREATE TABLE job_events (
    job_id      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE INDEX ix_job_events_created ON job_events (created_ms);
CREATE INDEX ix_job_events_kind ON job_events (job_id, kind, seq);

CREATE TABLE job_attempts (
    job_id         TEXT    NOT NULL,
    attempt        INTEGER NOT NULL,
    stage          INTEGER NOT NULL,
    target         TEXT    NOT NULL,
    worker_id      TEXT    NOT NULL,
    worker_name    TEXT    NOT NULL,
    dispatcher_id  TEXT    NOT NULL,
    assigned_ms    INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE artifacts (
    id          TEXT    NOT NULL PRIMARY KEY,
    job_id      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    blob_key    TEXT    NOT NULL,
    hidden      INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX ix_artifacts_job ON artifacts (job_id);
CREATE INDEX ix_artifacts_expires ON artifacts (expires_ms);

CREATE TABLE download_tokens (
    token_hash      BLOB    NOT NULL PRIMARY KEY,
    artifact_id     TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    used_ms         INTEGER NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claim_until_ms  INTEGER NULL
);
CREATE INDEX ix_download_tokens_expires ON download_tokens (expires_ms);
CREATE INDEX ix_download_tokens_artifact ON download_tokens (artifact_id);

CREATE TABLE downloads (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    job_id       TEXT    NOT NULL,
    artifact_id  TEXT    NULL,
    attempt      INTEGER NULL,
    client_addr  TEXT    NULL,
    user_agent   TEXT    NULL,
    bytes        INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL
);
CREATE INDEX ix_downloads_job ON downloads (job_id);
CREATE INDEX ix_downloads_at ON downloads (at_ms);

CREATE TABLE workers (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL,
    capabilities     TEXT    NOT NULL,
    max_concurrent   INTEGER NOT NULL,
    active           INTEGER NOT NULL DEFAULT 0,
    perry_version    TEXT    NULL,
    dispatcher_id    TEXT    NOT NULL,
    updating         INTEGER NOT NULL DEFAULT 0,
    update_pending   INTEGER NOT NULL DEFAULT 0,
    connected_ms     INTEGER NOT NULL,
    last_seen_ms     INTEGER NOT NULL,
    disconnected_ms  INTEGER NULL
);
CREATE INDEX ix_workers_connected ON workers (disconnected_ms, last_seen_ms);
CREATE INDEX ix_workers_name ON workers (name);

CREATE TABLE worker_drains (
    name          TEXT    NOT NULL PRIMARY KEY,
    requested_ms  INTEGER NOT NULL
);

CREATE TABLE dispatchers (
    id            TEXT    NOT NULL PRIMARY KEY,
    started_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    reattach_ms   INTEGER NULL
);
CREATE INDEX ix_dispatchers_seen ON dispatchers (last_seen_ms);

CREATE TABLE settings (
    name        TEXT    NOT NULL PRIMARY KEY,
    value       TEXT    NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE vm_state (
    name            TEXT    NOT NULL PRIMARY KEY,
    state           TEXT    NOT NULL,
    last_start_ms   INTEGER NULL,
    first_start_ms  INTEGER NULL,
    start_attempts  INTEGER NOT NULL DEFAULT 0,
    last_stop_ms    INTEGER NULL,
    last_work_ms    INTEGER NULL,
    last_error      TEXT    NULL,
    updated_ms      INTEGER NOT NULL
);

CREATE TABLE outbox (
    id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    exchange       TEXT    NOT NULL,
    routing_key    TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 0,
    created_ms     INTEGER NOT NULL,
    sent_ms        INTEGER NULL,
    not_before_ms  INTEGER NULL
);
CREATE INDEX ix_outbox_pending ON outbox (sent_ms, id);

CREATE TABLE sweep_locks (
    name        TEXT    NOT NULL PRIMARY KEY,
    last_run_ms INTEGER NOT NULL DEFAULT 0
);
INSERT INTO sweep_locks (name, last_run_ms) VALUES
    ('reaper', 0), ('retention', 0), ('vm', 0), ('outbox', 0), ('wait_timeout', 0);

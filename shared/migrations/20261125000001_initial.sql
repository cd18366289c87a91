-- Perry Hub schema. MySQL 8 / MariaDB 10.6+. Times are epoch milliseconds (BIGINT).
-- Secrets (license keys, API tokens, job tokens, download tokens) are stored as SHA-256 hashes.

CREATE TABLE accounts (
    id                     CHAR(36)     NOT NULL PRIMARY KEY,
    github_id              VARCHAR(64)  NOT NULL,
    github_username        VARCHAR(255) NOT NULL,
    email                  VARCHAR(320) NULL,
    tier                   VARCHAR(8)   NOT NULL DEFAULT 'free',
    has_payment_method     BOOLEAN      NOT NULL DEFAULT FALSE,
    polar_customer_id      VARCHAR(255) NULL,
    polar_subscription_id  VARCHAR(255) NULL,
    created_ms             BIGINT       NOT NULL,
    deleted_ms             BIGINT       NULL,
    UNIQUE KEY uq_accounts_github_id (github_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE api_tokens (
    id          BIGINT     NOT NULL AUTO_INCREMENT PRIMARY KEY,
    account_id  CHAR(36)   NOT NULL,
    token_hash  BINARY(32) NOT NULL,
    created_ms  BIGINT     NOT NULL,
    revoked_ms  BIGINT     NULL,
    UNIQUE KEY uq_api_tokens_hash (token_hash),
    KEY ix_api_tokens_account (account_id),
    CONSTRAINT fk_api_tokens_account FOREIGN KEY (account_id) REFERENCES accounts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE licenses (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    key_hash         BINARY(32)   NOT NULL,
    tier             VARCHAR(8)   NOT NULL,
    account_id       CHAR(36)     NULL,
    device_bound     BOOLEAN      NOT NULL DEFAULT TRUE,
    bound_project    VARCHAR(255) NULL,
    github_username  VARCHAR(255) NULL,
    created_ms       BIGINT       NOT NULL,
    UNIQUE KEY uq_licenses_key_hash (key_hash),
    KEY ix_licenses_account (account_id, id),
    CONSTRAINT fk_licenses_account FOREIGN KEY (account_id) REFERENCES accounts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Completed publishes per license and UTC month.
CREATE TABLE license_usage (
    license_id  BIGINT  NOT NULL,
    period      CHAR(7) NOT NULL,
    publishes   INT     NOT NULL DEFAULT 0,
    PRIMARY KEY (license_id, period),
    CONSTRAINT fk_usage_license FOREIGN KEY (license_id) REFERENCES licenses (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Rolling-window rate limiting: one row per accepted hit, per bucket
-- (e.g. "build:<license_id>", "register:addr:<ip>").
CREATE TABLE rate_events (
    id      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    bucket  VARCHAR(128) NOT NULL,
    at_ms   BIGINT       NOT NULL,
    KEY ix_rate_events_bucket (bucket, at_ms),
    KEY ix_rate_events_at (at_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row per job. Stage 2 of a two-stage build (e.g. windows -> windows-sign) is the same job
-- requeued with stage = 2, target = '<x>-sign' and the stage-1 bundle as its input.
CREATE TABLE jobs (
    id                 CHAR(36)     NOT NULL PRIMARY KEY,
    license_id         BIGINT       NOT NULL,
    project            VARCHAR(255) NOT NULL,
    original_target    VARCHAR(32)  NOT NULL,
    target             VARCHAR(32)  NOT NULL,
    stage              TINYINT      NOT NULL DEFAULT 1,
    state              VARCHAR(16)  NOT NULL,
    priority           TINYINT      NOT NULL,
    manifest           LONGTEXT     NOT NULL,
    credentials_enc    BLOB         NULL,
    input_key          VARCHAR(255) NULL,
    input_size         BIGINT       NULL,
    input_sha256       CHAR(64)     NULL,
    -- Dispatches of this job so far (all stages); the current attempt's number.
    attempt            INT          NOT NULL DEFAULT 0,
    -- Requeues after a lost worker in the current stage.
    retries            INT          NOT NULL DEFAULT 0,
    token_hash         BINARY(32)   NULL,
    worker_id          CHAR(36)     NULL,
    worker_name        VARCHAR(255) NULL,
    dispatcher_id      VARCHAR(64)  NULL,
    lease_expires_ms   BIGINT       NULL,
    cancel_requested   BOOLEAN      NOT NULL DEFAULT FALSE,
    error_reported     BOOLEAN      NOT NULL DEFAULT FALSE,
    failure_kind       VARCHAR(16)  NULL,
    error_message      TEXT         NULL,
    needs_finishing    VARCHAR(16)  NULL,
    usage_counted      BOOLEAN      NOT NULL DEFAULT FALSE,
    idempotency_key    VARCHAR(255) NULL,
    event_seq          BIGINT       NOT NULL DEFAULT 0,
    enqueued_ms        BIGINT       NOT NULL,
    created_ms         BIGINT       NOT NULL,
    assigned_ms        BIGINT       NULL,
    started_ms         BIGINT       NULL,
    finished_ms        BIGINT       NULL,
    UNIQUE KEY uq_jobs_idempotency (license_id, idempotency_key),
    KEY ix_jobs_queue (state, target, priority, enqueued_ms),
    KEY ix_jobs_lease (state, lease_expires_ms),
    KEY ix_jobs_license (license_id, state),
    KEY ix_jobs_finished (finished_ms),
    CONSTRAINT fk_jobs_license FOREIGN KEY (license_id) REFERENCES licenses (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Every event of a job, in order, for replay to late subscribers.
CREATE TABLE job_events (
    job_id      CHAR(36)    NOT NULL,
    seq         BIGINT      NOT NULL,
    kind        VARCHAR(32) NOT NULL,
    payload     LONGTEXT    NOT NULL,
    created_ms  BIGINT      NOT NULL,
    PRIMARY KEY (job_id, seq),
    KEY ix_job_events_created (created_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE artifacts (
    id          CHAR(36)     NOT NULL PRIMARY KEY,
    job_id      CHAR(36)     NOT NULL,
    attempt     INT          NOT NULL,
    name        VARCHAR(255) NOT NULL,
    target      VARCHAR(32)  NOT NULL,
    size        BIGINT       NOT NULL,
    sha256      CHAR(64)     NOT NULL,
    blob_key    VARCHAR(255) NOT NULL,
    hidden      BOOLEAN      NOT NULL DEFAULT FALSE,
    created_ms  BIGINT       NOT NULL,
    expires_ms  BIGINT       NOT NULL,
    KEY ix_artifacts_job (job_id),
    KEY ix_artifacts_expires (expires_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE download_tokens (
    token_hash   BINARY(32) NOT NULL PRIMARY KEY,
    artifact_id  CHAR(36)   NOT NULL,
    created_ms   BIGINT     NOT NULL,
    expires_ms   BIGINT     NOT NULL,
    used_ms      BIGINT     NULL,
    KEY ix_download_tokens_expires (expires_ms),
    KEY ix_download_tokens_artifact (artifact_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Audit trail of every byte read: artifact downloads and worker tarball fetches.
CREATE TABLE downloads (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind         VARCHAR(16)  NOT NULL,
    job_id       CHAR(36)     NOT NULL,
    artifact_id  CHAR(36)     NULL,
    attempt      INT          NULL,
    client_addr  VARCHAR(64)  NULL,
    user_agent   VARCHAR(255) NULL,
    bytes        BIGINT       NOT NULL,
    at_ms        BIGINT       NOT NULL,
    KEY ix_downloads_job (job_id),
    KEY ix_downloads_at (at_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Worker presence: one row per worker connection.
CREATE TABLE workers (
    id               CHAR(36)     NOT NULL PRIMARY KEY,
    name             VARCHAR(255) NOT NULL,
    capabilities     VARCHAR(512) NOT NULL,
    max_concurrent   INT          NOT NULL,
    active           INT          NOT NULL DEFAULT 0,
    perry_version    VARCHAR(64)  NULL,
    dispatcher_id    VARCHAR(64)  NOT NULL,
    updating         BOOLEAN      NOT NULL DEFAULT FALSE,
    update_pending   BOOLEAN      NOT NULL DEFAULT FALSE,
    connected_ms     BIGINT       NOT NULL,
    last_seen_ms     BIGINT       NOT NULL,
    disconnected_ms  BIGINT       NULL,
    KEY ix_workers_connected (disconnected_ms, last_seen_ms),
    KEY ix_workers_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE settings (
    name        VARCHAR(64) NOT NULL PRIMARY KEY,
    value       TEXT        NOT NULL,
    updated_ms  BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Power state of on-demand VMs (the Windows signing VM).
CREATE TABLE vm_state (
    name          VARCHAR(128) NOT NULL PRIMARY KEY,
    state         VARCHAR(16)  NOT NULL,
    last_start_ms BIGINT       NULL,
    last_work_ms  BIGINT       NULL,
    last_error    TEXT         NULL,
    updated_ms    BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Messages written in the same transaction as the state change they announce; a relay
-- publishes them to RabbitMQ with publisher confirms and stamps sent_ms.
CREATE TABLE outbox (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    exchange     VARCHAR(32)  NOT NULL,
    routing_key  VARCHAR(255) NOT NULL,
    payload      LONGTEXT     NOT NULL,
    priority     TINYINT      NOT NULL DEFAULT 0,
    created_ms   BIGINT       NOT NULL,
    sent_ms      BIGINT       NULL,
    KEY ix_outbox_pending (sent_ms, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Named locks for periodic sweeps (SELECT ... FOR UPDATE on the row serialises replicas).
CREATE TABLE sweep_locks (
    name        VARCHAR(64) NOT NULL PRIMARY KEY,
    last_run_ms BIGINT      NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

INSERT INTO sweep_locks (name, last_run_ms) VALUES
    ('reaper', 0), ('retention', 0), ('vm', 0), ('outbox', 0), ('wait_timeout', 0);

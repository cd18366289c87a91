-- Operators (issue 17): drained workers, one row per dispatch of a job, and whether a job was
-- submitted with sealed signing credentials (NULL: not known, for jobs older than this).

CREATE TABLE worker_drains (
    name          VARCHAR(255) NOT NULL PRIMARY KEY,
    requested_ms  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE job_attempts (
    job_id         CHAR(36)     NOT NULL,
    attempt        INT          NOT NULL,
    stage          TINYINT      NOT NULL,
    target         VARCHAR(32)  NOT NULL,
    worker_id      CHAR(36)     NOT NULL,
    worker_name    VARCHAR(255) NOT NULL,
    dispatcher_id  VARCHAR(64)  NOT NULL,
    assigned_ms    BIGINT       NOT NULL,
    PRIMARY KEY (job_id, attempt)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

ALTER TABLE jobs ADD COLUMN sealed_credentials BOOLEAN NULL;
ALTER TABLE jobs ADD KEY ix_jobs_created (created_ms);

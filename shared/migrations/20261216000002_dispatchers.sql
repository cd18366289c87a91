-- Each running dispatcher's heartbeat. A worker connection whose dispatcher stopped beating
-- (killed, or cut off) is gone, so its worker can re-attach its jobs on another dispatcher at
-- once instead of after the silence window.
CREATE TABLE dispatchers (
    id            VARCHAR(64) NOT NULL PRIMARY KEY,
    started_ms    BIGINT      NOT NULL,
    last_seen_ms  BIGINT      NOT NULL,
    KEY ix_dispatchers_seen (last_seen_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

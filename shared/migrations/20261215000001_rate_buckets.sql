-- Issue 15 (DEC-17): one row per rate bucket, locked by every admission of the bucket so that
-- concurrent requests count and record their hits one after the other (no count-then-insert
-- race). Created on first use; retention deletes the rows of idle buckets.
CREATE TABLE rate_buckets (
    bucket      VARCHAR(128) NOT NULL PRIMARY KEY,
    touched_ms  BIGINT       NOT NULL,
    KEY ix_rate_buckets_touched (touched_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Issue 15 (DEC-17): idempotency keys compare exactly. Under the table's case- and
-- accent-insensitive collation `retry-a` and `RETRY-A` were one key, so a second submission
-- was answered with the first one's job. Keys are visible ASCII (checked at submission); the
-- column is never read back as text, so a binary collation is safe here (unlike DEC-6's
-- general case).
ALTER TABLE jobs MODIFY idempotency_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL;

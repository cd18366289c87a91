-- Issue 12 item 6 (DEC-30): a download claim that is never completed lapses. `used_ms` is when
-- the current claim was taken; `claim_until_ms` is when it lapses unless the reading process
-- renews it, and NULL once a complete read has consumed the link for good (rows claimed before
-- this column existed read as consumed, which they are).
ALTER TABLE download_tokens ADD COLUMN claim_until_ms BIGINT NULL;

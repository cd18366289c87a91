-- Issue 15 item 8 (DEC-26): licence keys stored with a keyed hash. 0: bare SHA-256 of the key
-- (before the pepper, or written by the legacy import); 1: HMAC-SHA256(pepper, SHA-256(key)).
-- Bare rows are converted at start and on lookup once PERRY_HUB_LICENSE_PEPPER is set.
ALTER TABLE licenses ADD COLUMN key_hash_kind TINYINT NOT NULL DEFAULT 0;

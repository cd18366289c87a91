-- Ingest (issue 4).
-- Sealed signing credentials can exceed BLOB's 64 KiB: certificates, keystores and provisioning
-- profiles travel base64-encoded in them (the credentials part is capped at 8 MiB).
ALTER TABLE jobs MODIFY credentials_enc MEDIUMBLOB NULL;
-- An artifact upload naming an unknown job looks its token up by hash (404 for a genuine job
-- token, 403 otherwise, PROTOCOL.md §3.9).
ALTER TABLE jobs ADD KEY ix_jobs_token (token_hash);

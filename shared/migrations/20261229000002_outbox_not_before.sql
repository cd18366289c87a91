-- A message that must not be published before a time: a build whose uploads never reached the
-- hub is queued again after a pause, so a short outage of ingest does not use up its attempts.
ALTER TABLE outbox ADD COLUMN not_before_ms BIGINT NULL;

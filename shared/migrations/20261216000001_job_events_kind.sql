-- Replay to a late subscriber starts at the newest log lines it gets, found through this index
-- instead of reading and skipping the older ones.
ALTER TABLE job_events ADD KEY ix_job_events_kind (job_id, kind, seq);

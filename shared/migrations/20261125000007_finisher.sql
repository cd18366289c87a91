-- Finisher (issue 7).
-- jobs.queued_ms: when the job last entered `queued` (stage 2, or a requeue after a lost
-- worker); wait timeouts (A8, A14) measure from here, while enqueued_ms keeps the job's place.
ALTER TABLE jobs ADD COLUMN queued_ms BIGINT NULL AFTER enqueued_ms;
-- Retention asks "is this blob still the input of an active job?" for every candidate.
ALTER TABLE jobs ADD KEY ix_jobs_input_key (input_key);

-- The VM's current wake cycle (A14): the first start call of the cycle, how many start calls
-- it made, and the last deallocate call.
ALTER TABLE vm_state
    ADD COLUMN first_start_ms BIGINT NULL AFTER last_start_ms,
    ADD COLUMN start_attempts INT NOT NULL DEFAULT 0 AFTER first_start_ms,
    ADD COLUMN last_stop_ms BIGINT NULL AFTER start_attempts;

-- Each dispatcher's re-attach window, so that any replica's reaper knows how long the workers of
-- a dispatcher that stopped beating may take to come back before their jobs are requeued.
ALTER TABLE dispatchers ADD COLUMN reattach_ms BIGINT NULL;

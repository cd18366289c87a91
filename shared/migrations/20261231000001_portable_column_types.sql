-- Column types every SQL backend of the hub reads alike: booleans and small numbers become
-- SMALLINT (0/1 for booleans). The values are unchanged.
ALTER TABLE accounts MODIFY has_payment_method SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE licenses
    MODIFY device_bound SMALLINT NOT NULL DEFAULT 1,
    MODIFY key_hash_kind SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE jobs
    MODIFY stage SMALLINT NOT NULL DEFAULT 1,
    MODIFY priority SMALLINT NOT NULL,
    MODIFY cancel_requested SMALLINT NOT NULL DEFAULT 0,
    MODIFY error_reported SMALLINT NOT NULL DEFAULT 0,
    MODIFY usage_counted SMALLINT NOT NULL DEFAULT 0,
    MODIFY sealed_credentials SMALLINT NULL;
ALTER TABLE artifacts MODIFY hidden SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE workers
    MODIFY updating SMALLINT NOT NULL DEFAULT 0,
    MODIFY update_pending SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE outbox MODIFY priority SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE job_attempts MODIFY stage SMALLINT NOT NULL;

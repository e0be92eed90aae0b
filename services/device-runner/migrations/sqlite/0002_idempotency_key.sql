-- The caller's key of an enqueue (the scheduler sends its ledger key): a second enqueue with
-- the same key returns the job the first one created and creates nothing.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- General schedules: tags for listings, and the `buffered` state of an occurrence waiting for
-- its schedule's run in progress to end (overlap `buffer_one`, backfills).
ALTER TABLE schedules_execution ADD COLUMN tags JSONB NOT NULL DEFAULT '[]';
ALTER TABLE schedules_batched_notifications ADD COLUMN tags JSONB NOT NULL DEFAULT '[]';
ALTER TABLE schedules_weekly_notifications ADD COLUMN tags JSONB NOT NULL DEFAULT '[]';

ALTER TABLE schedule_runs DROP CONSTRAINT schedule_runs_status_check;
ALTER TABLE schedule_runs ADD CONSTRAINT schedule_runs_status_check
    CHECK (status IN ('pending', 'buffered', 'dispatched', 'failed', 'skipped', 'coalesced'));

-- Each occurrence keeps the policy it was claimed under (jitter, retries), as it keeps its
-- target, so a claimed run is dispatched as planned even if its schedule changes meanwhile.
ALTER TABLE schedule_runs ADD COLUMN policy JSONB;

-- The runs in progress or waiting, per schedule: what the overlap policy looks at.
CREATE INDEX schedule_runs_active ON schedule_runs (schedule_id, scheduled_time)
    WHERE status IN ('pending', 'buffered');
-- Retention deletes by age.
-- BRIN: tiny and cheap to keep up on an append-mostly ledger, and enough to find old rows.
CREATE INDEX schedule_runs_finished ON schedule_runs USING brin (finished_at);

-- General schedules: tags for listings, and the `buffered` state of an occurrence waiting for
-- its schedule's run in progress to end (overlap `buffer_one`, backfills). SQLite cannot
-- change a CHECK constraint in place, so the ledger is rebuilt.
ALTER TABLE schedules_execution ADD COLUMN tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags));
ALTER TABLE schedules_batched_notifications ADD COLUMN tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags));
ALTER TABLE schedules_weekly_notifications ADD COLUMN tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags));

CREATE TABLE schedule_runs_new (
    schedule_id    TEXT NOT NULL,
    scheduled_time INTEGER NOT NULL,
    jobstore       TEXT NOT NULL,
    owner          TEXT NOT NULL,
    target         TEXT NOT NULL CHECK (json_valid(target)),
    status         TEXT NOT NULL
        CHECK (status IN ('pending', 'buffered', 'dispatched', 'failed', 'skipped', 'coalesced')),
    detail         TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    claimed_at     INTEGER NOT NULL,
    lease_until    INTEGER,
    finished_at    INTEGER,
    -- The policy the occurrence was claimed under (jitter, retries), as it keeps its target.
    policy         TEXT CHECK (policy IS NULL OR json_valid(policy)),
    PRIMARY KEY (schedule_id, scheduled_time)
);
INSERT INTO schedule_runs_new SELECT schedule_id, scheduled_time, jobstore, owner, target, status,
    detail, attempts, claimed_at, lease_until, finished_at, NULL FROM schedule_runs;
DROP TABLE schedule_runs;
ALTER TABLE schedule_runs_new RENAME TO schedule_runs;
CREATE INDEX schedule_runs_pending ON schedule_runs (jobstore, lease_until) WHERE status = 'pending';
CREATE INDEX schedule_runs_active ON schedule_runs (schedule_id, scheduled_time)
    WHERE status IN ('pending', 'buffered');
CREATE INDEX schedule_runs_finished ON schedule_runs (finished_at) WHERE finished_at IS NOT NULL;

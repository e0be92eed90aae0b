-- Schedules: one table per jobstore, trigger/target/policy as JSON (never opaque blobs).
CREATE TABLE schedules_execution (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    trigger     JSONB NOT NULL,
    target      JSONB NOT NULL,
    policy      JSONB NOT NULL,
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    next_run_at TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- Insertion order, so listings are oldest first even within one second.
    seq         BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX schedules_execution_due ON schedules_execution (next_run_at) WHERE NOT paused;
CREATE INDEX schedules_execution_owner ON schedules_execution (owner, seq);

CREATE TABLE schedules_batched_notifications (LIKE schedules_execution INCLUDING ALL);
CREATE TABLE schedules_weekly_notifications (LIKE schedules_execution INCLUDING ALL);

-- The run ledger: one row per occurrence, unique on (schedule_id, scheduled_time).
CREATE TABLE schedule_runs (
    schedule_id    TEXT NOT NULL,
    scheduled_time TIMESTAMPTZ NOT NULL,
    jobstore       TEXT NOT NULL,
    owner          TEXT NOT NULL,
    target         JSONB NOT NULL,
    status         TEXT NOT NULL
        CHECK (status IN ('pending', 'dispatched', 'failed', 'skipped', 'coalesced')),
    detail         TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    claimed_at     TIMESTAMPTZ NOT NULL,
    lease_until    TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ,
    PRIMARY KEY (schedule_id, scheduled_time)
);
CREATE INDEX schedule_runs_pending ON schedule_runs (jobstore, lease_until) WHERE status = 'pending';

-- Schedules: one table per jobstore, trigger/target/policy as JSON text. Instants are
-- milliseconds since the Unix epoch (UTC), so they order correctly as integers. `seq` keeps
-- the order of insertion for listings; its unique index makes max(seq) a single lookup.
CREATE TABLE schedules_execution (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    trigger     TEXT NOT NULL CHECK (json_valid(trigger)),
    target      TEXT NOT NULL CHECK (json_valid(target)),
    policy      TEXT NOT NULL CHECK (json_valid(policy)),
    paused      INTEGER NOT NULL DEFAULT 0,
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    seq         INTEGER NOT NULL
);
CREATE INDEX schedules_execution_due ON schedules_execution (next_run_at) WHERE paused = 0;
CREATE UNIQUE INDEX schedules_execution_seq ON schedules_execution (seq);
CREATE INDEX schedules_execution_owner ON schedules_execution (owner, seq);

CREATE TABLE schedules_batched_notifications (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    trigger     TEXT NOT NULL CHECK (json_valid(trigger)),
    target      TEXT NOT NULL CHECK (json_valid(target)),
    policy      TEXT NOT NULL CHECK (json_valid(policy)),
    paused      INTEGER NOT NULL DEFAULT 0,
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    seq         INTEGER NOT NULL
);
CREATE INDEX schedules_batched_notifications_due ON schedules_batched_notifications (next_run_at) WHERE paused = 0;
CREATE UNIQUE INDEX schedules_batched_notifications_seq ON schedules_batched_notifications (seq);
CREATE INDEX schedules_batched_notifications_owner ON schedules_batched_notifications (owner, seq);

CREATE TABLE schedules_weekly_notifications (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    trigger     TEXT NOT NULL CHECK (json_valid(trigger)),
    target      TEXT NOT NULL CHECK (json_valid(target)),
    policy      TEXT NOT NULL CHECK (json_valid(policy)),
    paused      INTEGER NOT NULL DEFAULT 0,
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    seq         INTEGER NOT NULL
);
CREATE INDEX schedules_weekly_notifications_due ON schedules_weekly_notifications (next_run_at) WHERE paused = 0;
CREATE UNIQUE INDEX schedules_weekly_notifications_seq ON schedules_weekly_notifications (seq);
CREATE INDEX schedules_weekly_notifications_owner ON schedules_weekly_notifications (owner, seq);

-- The run ledger: one row per occurrence, unique on (schedule_id, scheduled_time).
CREATE TABLE schedule_runs (
    schedule_id    TEXT NOT NULL,
    scheduled_time INTEGER NOT NULL,
    jobstore       TEXT NOT NULL,
    owner          TEXT NOT NULL,
    target         TEXT NOT NULL CHECK (json_valid(target)),
    status         TEXT NOT NULL
        CHECK (status IN ('pending', 'dispatched', 'failed', 'skipped', 'coalesced')),
    detail         TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    claimed_at     INTEGER NOT NULL,
    lease_until    INTEGER,
    finished_at    INTEGER,
    PRIMARY KEY (schedule_id, scheduled_time)
);
CREATE INDEX schedule_runs_pending ON schedule_runs (jobstore, lease_until) WHERE status = 'pending';

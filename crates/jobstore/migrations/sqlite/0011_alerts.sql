-- Alerts: incidents of schedules whose work did not happen (late, failing in a row, missing),
-- one open at most per schedule and kind, and their messages to each configured channel
-- (one when the incident opens, one when it resolves), kept until delivered.
CREATE TABLE alerts (
    id            TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('late', 'failing', 'missing')),
    state         TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
    jobstore      TEXT NOT NULL,
    schedule_id   TEXT NOT NULL,
    schedule_name TEXT NOT NULL,
    owner         TEXT NOT NULL,
    opened_at     INTEGER NOT NULL,
    resolved_at   INTEGER,
    summary       TEXT NOT NULL,
    last_error    TEXT,
    resolution    TEXT
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (jobstore, schedule_id, kind) WHERE state = 'open';
CREATE INDEX alerts_opened ON alerts (opened_at);
CREATE INDEX alerts_schedule ON alerts (schedule_id, opened_at);
CREATE INDEX alerts_owner ON alerts (owner, opened_at);

CREATE TABLE alert_deliveries (
    alert_id     TEXT NOT NULL,
    phase        TEXT NOT NULL CHECK (phase IN ('opened', 'resolved')),
    channel      TEXT NOT NULL,
    due_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    delivered_at INTEGER,
    PRIMARY KEY (alert_id, phase, channel)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (due_at) WHERE delivered_at IS NULL;

-- The schedules that set their own alerts, which the leader evaluates even without defaults.
CREATE INDEX schedules_execution_alerting ON schedules_execution (id)
    WHERE json_extract(policy, '$.alerts') IS NOT NULL;
CREATE INDEX schedules_batched_notifications_alerting ON schedules_batched_notifications (id)
    WHERE json_extract(policy, '$.alerts') IS NOT NULL;
CREATE INDEX schedules_weekly_notifications_alerting ON schedules_weekly_notifications (id)
    WHERE json_extract(policy, '$.alerts') IS NOT NULL;

-- Whether planning a schedule's fire looks at its runs in progress (its target's runs last
-- until the target answers, and its overlap policy is not `allow_all`). Such a schedule is
-- claimed only once due; any other may be claimed ahead of its time (`engine.lookahead`).
-- Written by the store from the schedule on every insert and replace; computed here once
-- for the rows that exist.
ALTER TABLE schedules_execution ADD COLUMN checks_overlap BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE schedules_batched_notifications ADD COLUMN checks_overlap BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE schedules_weekly_notifications ADD COLUMN checks_overlap BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE schedules_execution SET checks_overlap = TRUE
    WHERE target->>'type' IN ('rpc', 'http') AND coalesce(policy->>'overlap', 'skip') <> 'allow_all';
UPDATE schedules_batched_notifications SET checks_overlap = TRUE
    WHERE target->>'type' IN ('rpc', 'http') AND coalesce(policy->>'overlap', 'skip') <> 'allow_all';
UPDATE schedules_weekly_notifications SET checks_overlap = TRUE
    WHERE target->>'type' IN ('rpc', 'http') AND coalesce(policy->>'overlap', 'skip') <> 'allow_all';

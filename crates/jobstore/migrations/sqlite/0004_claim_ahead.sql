-- Whether planning a schedule's fire looks at its runs in progress (its target's runs last
-- until the target answers, and its overlap policy is not `allow_all`). Such a schedule is
-- claimed only once due; any other may be claimed ahead of its time (`engine.lookahead`).
-- Written by the store from the schedule on every insert and replace; computed here once
-- for the rows that exist.
ALTER TABLE schedules_execution ADD COLUMN checks_overlap INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules_batched_notifications ADD COLUMN checks_overlap INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules_weekly_notifications ADD COLUMN checks_overlap INTEGER NOT NULL DEFAULT 0;

UPDATE schedules_execution SET checks_overlap = 1
    WHERE json_extract(target, '$.type') IN ('rpc', 'http') AND coalesce(json_extract(policy, '$.overlap'), 'skip') <> 'allow_all';
UPDATE schedules_batched_notifications SET checks_overlap = 1
    WHERE json_extract(target, '$.type') IN ('rpc', 'http') AND coalesce(json_extract(policy, '$.overlap'), 'skip') <> 'allow_all';
UPDATE schedules_weekly_notifications SET checks_overlap = 1
    WHERE json_extract(target, '$.type') IN ('rpc', 'http') AND coalesce(json_extract(policy, '$.overlap'), 'skip') <> 'allow_all';

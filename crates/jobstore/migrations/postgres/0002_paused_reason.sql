-- Why a schedule is paused: the error that parked it when the engine could not plan or
-- dispatch it, or the reason an operator gave.
ALTER TABLE schedules_execution ADD COLUMN paused_reason TEXT;
ALTER TABLE schedules_batched_notifications ADD COLUMN paused_reason TEXT;
ALTER TABLE schedules_weekly_notifications ADD COLUMN paused_reason TEXT;

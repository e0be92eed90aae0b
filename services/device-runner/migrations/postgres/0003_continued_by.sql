-- The job that carries on a job stopped and queued again from its checkpoint (after a
-- preemption or a restart), so that whoever follows the first one can follow it on.
ALTER TABLE jobs ADD COLUMN continued_by TEXT;

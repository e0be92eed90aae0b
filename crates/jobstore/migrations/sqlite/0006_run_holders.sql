-- Who holds a pending run: the replica that claimed it or took it over (NULL for a run that no
-- engine has taken yet: a run by hand, a backfilled or a promoted one). `recovered` marks a run
-- taken over from another holder: it is being delivered again, and an occurrence of its
-- schedule that meets only such runs waits for them to end instead of being skipped.
ALTER TABLE schedule_runs ADD COLUMN claimed_by TEXT;
ALTER TABLE schedule_runs ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0;

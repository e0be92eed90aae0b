-- Where an occurrence of a device job placed by tags went (`runner/serial#moves`), written
-- with the placed target before the job is queued, so a redelivery goes to the same phone.
-- NULL for every other occurrence.
ALTER TABLE schedule_runs ADD COLUMN placement TEXT;

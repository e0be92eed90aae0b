-- Jobs from enqueue to archive: pending (the queues), running, then finished (the run history).
-- Instants are milliseconds since the Unix epoch (UTC); JSON is stored as text.
CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    device            TEXT NOT NULL,
    job_type          TEXT NOT NULL,
    params            TEXT NOT NULL CHECK (json_valid(params)),
    priority          INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),
    max_duration_secs INTEGER NOT NULL,
    source            TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                          'timeout', 'killed', 'cancelled', 'preempted', 'device_lost', 'interrupted')),
    enqueued_at       INTEGER NOT NULL,
    started_at        INTEGER,
    ended_at          INTEGER,
    pid               INTEGER,
    pgid              INTEGER,
    proc_start_ticks  INTEGER,
    boot_id           TEXT,
    exit_code         INTEGER,
    signal            INTEGER,
    error             TEXT,
    log_path          TEXT,
    preempted_by      TEXT,
    requeued_from     TEXT,
    checkpoint        TEXT CHECK (checkpoint IS NULL OR json_valid(checkpoint)),
    results           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(results)),
    progress_percent  INTEGER,
    progress_message  TEXT
);
CREATE INDEX jobs_queue ON jobs (device, priority, seq) WHERE status = 'pending';
CREATE INDEX jobs_running ON jobs (device) WHERE status = 'running';
CREATE INDEX jobs_history ON jobs (ended_at, seq) WHERE ended_at IS NOT NULL;
CREATE INDEX jobs_started ON jobs (started_at) WHERE started_at IS NOT NULL;

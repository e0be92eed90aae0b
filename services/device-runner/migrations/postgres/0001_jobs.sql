-- Jobs from enqueue to archive: pending (the queues), running, then finished (the run history).
-- Instants are milliseconds since the Unix epoch (UTC), as in the SQLite store.
CREATE TABLE jobs (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    device            TEXT NOT NULL,
    job_type          TEXT NOT NULL,
    params            JSONB NOT NULL,
    priority          BIGINT NOT NULL CHECK (priority BETWEEN 1 AND 5),
    max_duration_secs BIGINT NOT NULL,
    source            TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                          'timeout', 'killed', 'cancelled', 'preempted', 'device_lost', 'interrupted')),
    enqueued_at       BIGINT NOT NULL,
    started_at        BIGINT,
    ended_at          BIGINT,
    pid               BIGINT,
    pgid              BIGINT,
    proc_start_ticks  BIGINT,
    boot_id           TEXT,
    exit_code         BIGINT,
    signal            BIGINT,
    error             TEXT,
    log_path          TEXT,
    preempted_by      TEXT,
    requeued_from     TEXT,
    checkpoint        JSONB,
    results           JSONB NOT NULL DEFAULT '[]',
    progress_percent  BIGINT,
    progress_message  TEXT
);
CREATE INDEX jobs_queue ON jobs (device, priority, seq) WHERE status = 'pending';
CREATE INDEX jobs_running ON jobs (device) WHERE status = 'running';
CREATE INDEX jobs_history ON jobs (ended_at, seq) WHERE ended_at IS NOT NULL;
CREATE INDEX jobs_started ON jobs (started_at) WHERE started_at IS NOT NULL;

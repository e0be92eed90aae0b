-- Why a pending job waits although its turn has come: its phone is outside a health gate or
-- quarantined. Cleared when it starts.
ALTER TABLE jobs ADD COLUMN waiting TEXT;
-- What the runner keeps of a phone across restarts: its quarantine (none while
-- quarantined_at is null), and when it was last released, from which failures in a row are
-- counted again.
CREATE TABLE devices (
    serial            TEXT PRIMARY KEY,
    quarantined_at    BIGINT,
    quarantine_reason TEXT,
    quarantined_by    TEXT,
    released_at       BIGINT
);
-- A phone's history: quarantines, releases, reboots and what came of them.
CREATE TABLE device_events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial  TEXT NOT NULL,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX device_events_serial ON device_events (serial, seq);
CREATE INDEX jobs_device_ended ON jobs (device, ended_at) WHERE ended_at IS NOT NULL;

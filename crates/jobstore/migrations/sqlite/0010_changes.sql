-- The audit log: every change of a schedule or watch, with when, who (the client's name, or
-- `engine`, `config`, `import` for the product itself), through which route, and what
-- changed (`{"field": {"before": …, "after": …}}`). Kept as long as the ledger's finished runs.
CREATE TABLE schedule_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    jobstore    TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    owner       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    route       TEXT NOT NULL,
    action      TEXT NOT NULL,
    changes     TEXT NOT NULL
);
CREATE INDEX schedule_changes_schedule ON schedule_changes (schedule_id, seq);
CREATE INDEX schedule_changes_owner ON schedule_changes (owner, seq);
CREATE INDEX schedule_changes_at ON schedule_changes (jobstore, at);

-- Watches, an agent's monitoring jobs. The watch itself is a JSON document (`body`); the
-- columns beside it are what listings filter on and what senders claim. Its attempts are the
-- occurrences of the `schedules_execution` row with the same id, whose ledger rows are the
-- attempts' history. `delivery_due` is set while a completion waits to be sent.
CREATE TABLE watches (
    id                   TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT NOT NULL,
    workflow_id          TEXT,
    status               TEXT NOT NULL
        CHECK (status IN ('active', 'completed', 'failed', 'cancelled')),
    body                 TEXT NOT NULL CHECK (json_valid(body)),
    delivery_due         INTEGER,
    delivery_lease_until INTEGER
);
CREATE INDEX watches_user ON watches (user_id, id);
CREATE INDEX watches_status ON watches (status, id);
CREATE INDEX watches_workflow ON watches (workflow_id) WHERE workflow_id IS NOT NULL;
CREATE INDEX watches_delivery ON watches (delivery_due) WHERE delivery_due IS NOT NULL;

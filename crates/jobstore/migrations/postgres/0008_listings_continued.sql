-- Listings answered from an index, continued (issue 25): a workflow's watches newest first
-- (`list_watches {workflow_id}` reads them in id order), and AutoGPT's listing of a graph's
-- schedules (`get_graph_execution_schedules {graph_id}`), which live in the `execution` store.
DROP INDEX watches_workflow;
CREATE INDEX watches_workflow_id ON watches (workflow_id, id) WHERE workflow_id IS NOT NULL;
CREATE INDEX schedules_execution_graph_id ON schedules_execution ((target->>'graph_id'), id)
    WHERE target->>'graph_id' IS NOT NULL;
